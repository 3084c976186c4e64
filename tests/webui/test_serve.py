"""The process: HTTPS with the box's certificate, plain HTTP that only redirects, and
the self-signed fallback when the daemon's certificate is not readable."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time

from cryptography import x509

from firmware import config as config_mod
from webui import serve

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_self_signed_fallback_when_the_daemons_cert_is_missing(tmp_path):
    cert, key = serve.choose_certificate(None, None, str(tmp_path / "daemon"),
                                         str(tmp_path), "vpn.example.net")
    assert cert == str(tmp_path / "https.pem")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    c = x509.load_pem_x509_certificate(open(cert, "rb").read())
    san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["vpn.example.net", "localhost"]
    # Made once: a second start keeps it.
    assert serve.choose_certificate(None, None, str(tmp_path / "daemon"), str(tmp_path),
                                    "vpn.example.net") == (cert, key)
    assert x509.load_pem_x509_certificate(open(cert, "rb").read()) == c


def test_the_web_certificate_from_the_daemon_is_preferred(daemon, tmp_path):
    cert, key = serve.choose_certificate(None, None, daemon.cfg["box"]["state_dir"],
                                         str(tmp_path), "x")
    web = os.path.join(daemon.cfg["box"]["state_dir"], "web")
    assert (cert, key) == (os.path.join(web, "web.pem"), os.path.join(web, "web.key"))
    # Its own key, not the IKE key; issued by the box's CA for the box's name.
    ike_key = open(daemon.pki.path("server.key"), "rb").read()
    assert open(key, "rb").read() != ike_key
    served = x509.load_pem_x509_certificate(open(cert, "rb").read())
    ca = x509.load_pem_x509_certificate(open(daemon.pki.path("ca.pem"), "rb").read())
    assert served.issuer == ca.subject


def test_https_and_the_redirect_listener(daemon, tmp_path):
    cfg = dict(daemon.cfg, control={"socket": daemon.socket, "group": "ikebox"})
    config_path = str(tmp_path / "ikebox.toml")
    config_mod.save(config_path, cfg)
    https_port, http_port = free_port(), free_port()
    log = open(tmp_path / "webui.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "webui.app", "--config", config_path,
         "--state-dir", str(tmp_path / "webui"), "--listen", f"127.0.0.1:{https_port}",
         "--redirect", f"127.0.0.1:{http_port}"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        ctx = ssl.create_default_context(cafile=daemon.pki.path("ca.pem"))
        ctx.check_hostname = False  # the certificate names the box, not 127.0.0.1
        deadline = time.time() + 20
        while True:
            try:
                conn = http.client.HTTPSConnection("127.0.0.1", https_port, context=ctx,
                                                   timeout=5)
                conn.connect()
                peer_der = conn.sock.getpeercert(binary_form=True)
                conn.request("GET", "/")
                resp = conn.getresponse()
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, \
                    open(tmp_path / "webui.log").read()
                time.sleep(0.2)
        # Served with the daemon's certificate, which the box's CA verified above.
        assert resp.status == 302 and resp.getheader("Location") == "/setup"
        peer = x509.load_der_x509_certificate(peer_der)
        web_pem = os.path.join(daemon.cfg["box"]["state_dir"], "web", "web.pem")
        assert peer == x509.load_pem_x509_certificate(open(web_pem, "rb").read())
        # A client that connects and says nothing must not stall everyone else.
        silent = socket.create_connection(("127.0.0.1", https_port))
        conn = http.client.HTTPSConnection("127.0.0.1", https_port, context=ctx, timeout=5)
        conn.request("GET", "/login")
        assert conn.getresponse().status == 302
        silent.close()

        # A regenerated certificate is served from the next handshake on.
        daemon.cmd_cert_regenerate(["renewed.example"])
        conn = http.client.HTTPSConnection("127.0.0.1", https_port, context=ctx, timeout=5)
        conn.connect()
        renewed = x509.load_der_x509_certificate(conn.sock.getpeercert(binary_form=True))
        conn.close()
        san = renewed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == ["renewed.example"]

        plain = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
        plain.request("GET", "/users?x=1", headers={"Host": "box.example"})
        r = plain.getresponse()
        assert r.status == 301
        assert r.getheader("Location") == f"https://box.example:{https_port}/users?x=1"
        plain.request("POST", "/login", body="password=x",
                      headers={"Host": "box.example", "Content-Length": "10"})
        r = plain.getresponse()
        r.read()
        assert r.status == 301  # never answers a form over plain HTTP
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        log.close()
    assert proc.returncode == 0


def test_the_cli_hands_webui_its_own_options():
    out = subprocess.run([sys.executable, "-m", "firmware.cli", "webui", "--help"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for option in ("--state-dir", "--listen", "--redirect", "--cert", "--key"):
        assert option in out.stdout


def test_bad_listen_address_is_refused(tmp_path):
    out = subprocess.run([sys.executable, "-m", "webui.app", "--config",
                          str(tmp_path / "none.toml"), "--state-dir", str(tmp_path / "w"),
                          "--listen", "nowhere"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "use ADDRESS:PORT" in out.stderr
