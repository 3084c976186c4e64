"""HTTPS for the web UI, and a plain-HTTP listener that only redirects to it.

The certificate is the daemon's server certificate when this process may read it (the
clients that trust the box's CA for the VPN then trust this page too); otherwise a
self-signed one made once in the web UI's state directory. A certificate regenerated
through the page is picked up by the next TLS handshake, without a restart.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import signal
import ssl
import threading
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.utils import redirect as redirect_response
from werkzeug.wrappers import Request

log = logging.getLogger("ikebox.webui")


def _readable(*paths: str) -> bool:
    for path in paths:
        try:
            with open(path, "rb") as fh:
                fh.read(1)
        except OSError:
            return False
    return True


def choose_certificate(cert: str | None, key: str | None, daemon_state_dir: str,
                       own_state_dir: str, identity: str) -> tuple[str, str]:
    if cert or key:
        if not (cert and key):
            raise SystemExit("ikebox webui: --cert and --key go together")
        return cert, key
    # The daemon issues the page a certificate of its own from the box's CA (its IKE
    # key stays private to the daemon); the IKE certificate is the fallback for
    # state directories made before that.
    for name_cert, name_key in ((("web", "web.pem"), ("web", "web.key")),
                                (("pki", "server.pem"), ("pki", "server.key"))):
        daemon_cert = os.path.join(daemon_state_dir, *name_cert)
        daemon_key = os.path.join(daemon_state_dir, *name_key)
        if _readable(daemon_cert, daemon_key):
            return daemon_cert, daemon_key
    log.info("the daemon's certificate is not readable here; using the web UI's own")
    own_cert = os.path.join(own_state_dir, "https.pem")
    own_key = os.path.join(own_state_dir, "https.key")
    if not _readable(own_cert, own_key):
        make_self_signed(own_cert, own_key, [identity, "localhost"])
    return own_cert, own_key


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def make_self_signed(cert_path: str, key_path: str, names: list[str]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ikebox {names[0]}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([_san(n) for n in names]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_pem)
    with open(cert_path, "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


class ReloadingTls:
    """A server context that follows the certificate files: the handshake callback
    (called for every ClientHello, with or without SNI) swaps in a context built from
    the files when they changed; a half-written pair keeps the previous one."""

    def __init__(self, cert: str, key: str) -> None:
        self.cert, self.key = cert, key
        self._stamp = self._files()
        self._current = tls_context(cert, key)
        self.context = tls_context(cert, key)
        self.context.sni_callback = self._handshake

    def _files(self) -> tuple[int, ...]:
        try:
            return tuple(os.stat(p).st_mtime_ns for p in (self.cert, self.key))
        except OSError:
            return ()

    def _handshake(self, sslsock: ssl.SSLObject, server_name: str | None,
                   ctx: ssl.SSLContext) -> None:
        stamp = self._files()
        if stamp and stamp != self._stamp:
            try:
                self._current = tls_context(self.cert, self.key)
                self._stamp = stamp
                log.info("HTTPS certificate reloaded from %s", self.cert)
            except (OSError, ssl.SSLError) as exc:
                log.warning("HTTPS certificate %s not reloaded yet: %s", self.cert, exc)
        sslsock.context = self._current


def redirect_app(https_port: int):  # noqa: ANN201 - a WSGI callable
    """Answers every plain-HTTP request with a redirect to the same path over HTTPS."""
    def app(environ: dict[str, Any], start_response):  # noqa: ANN001, ANN202
        req = Request(environ)
        host = req.host.rsplit(":", 1)[0] if not req.host.endswith("]") else req.host
        netloc = host if https_port == 443 else f"{host}:{https_port}"
        target = f"https://{netloc}{req.full_path.rstrip('?')}"
        return redirect_response(target, code=301)(environ, start_response)
    return app


class _Handler(WSGIRequestHandler):
    # A client that stalls, in the TLS handshake or later, gives its thread back.
    timeout = 30


def https_server(app: Any, host: str, port: int, cert: str, key: str) -> Any:
    """Werkzeug's threaded server, with the TLS handshake moved from the accepting
    thread (where werkzeug's own wrapping puts it, so one silent client would stall
    every other) into each connection's thread."""
    server = make_server(host, port, app, threaded=True, request_handler=_Handler)
    ctx = ReloadingTls(cert, key).context
    server.socket = ctx.wrap_socket(server.socket, server_side=True,
                                    do_handshake_on_connect=False)
    server.ssl_context = ctx  # tells werkzeug the scheme is https
    return server


def run(app: Any, https: tuple[str, int], redirect: tuple[str, int] | None,
        cert: str, key: str) -> int:
    servers = [https_server(app, https[0], https[1], cert, key)]
    log.info("web UI on https://%s:%d (certificate %s)", https[0], https[1], cert)
    if redirect is not None:
        servers.append(make_server(redirect[0], redirect[1], redirect_app(https[1]),
                                   threaded=True, request_handler=_Handler))
        log.info("plain HTTP on %s:%d redirects to HTTPS", *redirect)

    def stop(signum: int, frame: object) -> None:
        for server in servers:
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers[1:]]
    for t in threads:
        t.start()
    servers[0].serve_forever()
    for t in threads:
        t.join(5)
    return 0
