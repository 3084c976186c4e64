"""Debian's strongSwan as the real client against `ikebox daemon`, in namespaces.

Each test builds its own namespaces (client, box and, for NAT-T, a NAT router in
between), starts both daemons by PID and removes everything afterwards. On machines
whose kernel has no ESP the CHILD_SA cannot be installed; the box then says so and
keeps the IKE SA, which these tests check too. The data path itself is tested in the
VM tier.
"""

from __future__ import annotations

import os
import re
import time

import pytest

from tests.harness.ikebox import Box
from tests.harness.netns import Topology
from tests.harness.strongswan import Charon, Conn

pytestmark = pytest.mark.netns

PASSWORD = "alice-Secret-123"
PSK = "a-pre-shared-key-of-some-length"


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")


class Lab:
    """One client, one box, torn down at the end of the test."""

    def __init__(self, tmp: str, nat: bool = False, **box_sections) -> None:
        self.topo = Topology("it", nat=nat)
        box_sections.setdefault("pool", {"ipv4": "198.18.200.0/24",
                                         "dns": ["198.18.200.1"]})
        self.box = Box(self.topo.box, os.path.join(tmp, "box"), identity="ikebox.test",
                       **box_sections)
        self.charon: Charon | None = None

    def start(self) -> None:
        self.box.start()
        self.charon = Charon(self.topo.client, os.path.join(os.path.dirname(self.box.dir),
                                                            "client"),
                             ca_pem=self.box.ca_pem())
        self.charon.start()

    def conn(self, **kw) -> Conn:
        kw.setdefault("remote_addr", self.topo.box_ip)
        kw.setdefault("password", PASSWORD)
        kw.setdefault("remote_ts", f"{self.topo.lan_ip}/32")
        return Conn(**kw)

    def connect(self, conn: Conn) -> str:
        assert self.charon is not None
        self.charon.load(conn)
        out = self.charon.initiate()
        return out.stdout + out.stderr

    def close(self) -> None:
        if self.charon:
            self.charon.stop()
        self.box.stop()
        self.topo.close()

    def explain(self) -> str:
        return (f"--- charon log ---\n{self.charon.log() if self.charon else ''}\n"
                f"--- daemon log ---\n{self.box.log()[-6000:]}")


@pytest.fixture
def lab(tmp_path):
    _require_root()
    labs: list[Lab] = []

    def make(**kw) -> Lab:
        lab = Lab(str(tmp_path), **kw)
        labs.append(lab)
        lab.start()
        return lab
    yield make
    for lab in labs:
        lab.close()


def assert_established_with_pool_address(lab: Lab, user: str = "alice") -> dict:
    assert lab.charon is not None
    assert lab.charon.ike_state() == "ESTABLISHED", lab.explain()
    vips = lab.charon.virtual_ips()
    assert vips and vips[0].startswith("198.18.200."), lab.explain()
    sessions = lab.box.call("show_sessions")
    assert len(sessions) == 1, sessions
    session = sessions[0]
    assert session["user"] == user
    assert session["assigned"] == [vips[0]], (session, vips)
    return session


def test_eap_mschapv2_with_certificate_and_virtual_ip(lab):
    lab = lab()
    lab.box.add_user("alice", PASSWORD)
    out = lab.connect(lab.conn())
    session = assert_established_with_pool_address(lab)
    assert session["auth"] == "mschapv2"
    assert "authentication of 'ikebox.test' with" in lab.charon.log(), out
    # Here the kernel has no ESP: the box must say so, and not claim the CHILD_SA.
    if session["child_state"] != "installed":
        assert session["child_state"].startswith("install-failed:")
        failures = lab.box.call("failures")
        assert failures[0]["class"] == "kernel"
    detail = lab.box.cli("show", "ike-sa", "--detail")
    assert "ESTABLISHED" in detail.stdout and "eap-mschapv2" in detail.stdout, detail
    assert PASSWORD not in lab.box.log()
    trace = " ".join(r["text"] for r in lab.box.call("trace", limit=500))
    assert "sending EAP-Identity request" in trace or "starting EAP" in trace


def test_psk_client(lab):
    lab = lab(ike={"psk_file": ""})
    # A PSK needs a file; write it and restart the box with it.
    psk_path = os.path.join(lab.box.dir, "psk")
    with open(psk_path, "w") as fh:
        fh.write(PSK)
    lab.box.call("config_set", config={"ike": {"psk_file": psk_path}})
    lab.connect(lab.conn(local_auth="psk", local_id="branch-laptop", psk=PSK,
                         remote_auth="pubkey"))
    session = assert_established_with_pool_address(lab, user="branch-laptop")
    assert session["auth"] == "psk"


def test_eap_md5(lab):
    lab = lab()
    lab.box.add_user("alice", PASSWORD, allow_md5=True)
    lab.connect(lab.conn(local_auth="eap-md5"))
    session = assert_established_with_pool_address(lab)
    assert session["auth"] == "md5"


def test_wrong_password_is_refused(lab):
    lab = lab()
    lab.box.add_user("alice", "the-real-password")
    out = lab.connect(lab.conn(password="a-wrong-password"))
    assert lab.charon.ike_state() is None, out
    log = lab.charon.log()
    assert re.search(r"AUTHENTICATION_FAILED|EAP-MS-CHAPv2 failed|EAP_FAILURE", log), log
    deadline = time.time() + 20
    failures = []
    while time.time() < deadline:
        failures = lab.box.call("failures")
        if failures:
            break
        time.sleep(0.5)
    assert failures and failures[0]["class"] == "auth", lab.explain()
    assert "wrong password" in failures[0]["reason"] or "failed" in failures[0]["reason"]
    assert lab.box.call("show_sessions") == []
    assert lab.box.call("status")["pool"]["in_use"] == 0
    assert "a-wrong-password" not in lab.box.log()


def test_forced_udp_encapsulation(lab):
    lab = lab()
    lab.box.add_user("alice", PASSWORD)
    lab.connect(lab.conn(encap=True))
    session = assert_established_with_pool_address(lab)
    assert session["natt"] is True
    assert session["remote"].endswith(":4500")
    sas = lab.box.call("show_ike_sas", detail=True)
    assert sas[0]["local"].endswith(":4500")


def test_real_nat_between_client_and_box(lab):
    lab = lab(nat=True)
    lab.box.add_user("alice", PASSWORD)
    lab.connect(lab.conn())
    session = assert_established_with_pool_address(lab)
    assert session["natt"] is True
    assert session["remote"].startswith(lab.topo.public_client_ip + ":")


def test_proposal_mismatch_is_explained(lab):
    lab = lab()
    lab.box.add_user("alice", PASSWORD)
    out = lab.connect(lab.conn(proposals="aes128-sha1-modp1024"))
    assert lab.charon.ike_state() is None, out
    assert "NO_PROPOSAL_CHOSEN" in lab.charon.log()
    failure = lab.box.call("failures")[0]
    assert failure["class"] == "proposal"
    assert "MODP_1024" in failure["reason"] and "legacy-windows" in failure["reason"]


def test_ke_for_a_group_we_do_not_prefer(lab):
    lab = lab()
    lab.box.add_user("alice", PASSWORD)
    # strongSwan sends its KE for the first group it lists (MODP_1024, refused by the
    # secure profile); ECP_256 is in the same proposal, so the box answers
    # INVALID_KE_PAYLOAD naming ECP_256 and the client retries with it.
    lab.connect(lab.conn(proposals="aes256gcm16-prfsha256-modp1024-ecp256"))
    log = lab.charon.log()
    assert "peer didn't accept DH group MODP_1024, it requested ECP_256" in log, log
    assert_established_with_pool_address(lab)
    trace = " ".join(r["text"] for r in lab.box.call("trace", limit=500))
    assert "asking it to use ECP_256" in trace


def test_client_disconnect_frees_the_address(lab):
    lab = lab()
    lab.box.add_user("alice", PASSWORD)
    lab.connect(lab.conn())
    assert_established_with_pool_address(lab)
    lab.charon.terminate()
    deadline = time.time() + 10
    while lab.box.call("show_sessions") and time.time() < deadline:
        time.sleep(0.2)
    assert lab.box.call("show_sessions") == []
    assert lab.box.call("status")["pool"]["in_use"] == 0


def test_operator_disconnect_reaches_the_client(lab):
    lab = lab()
    lab.box.add_user("alice", PASSWORD)
    lab.connect(lab.conn())
    session = assert_established_with_pool_address(lab)
    out = lab.box.cli("disconnect", session["id"])
    assert out.returncode == 0, out.stderr
    deadline = time.time() + 10
    while lab.charon.ike_state() and time.time() < deadline:
        time.sleep(0.2)
    assert lab.charon.ike_state() is None, lab.explain()


def test_ike_over_ipv6_with_both_address_families(lab):
    lab = lab(ike={"addresses": ["0.0.0.0", "::"]},
              pool={"ipv4": "198.18.200.0/24", "ipv6": "2001:db8:ffff::/112",
                    "dns": ["198.18.200.1", "2001:db8:ffff::1"]})
    lab.box.add_user("alice", PASSWORD)
    lab.connect(lab.conn(remote_addr=lab.topo.box_ip6, vips="0.0.0.0,::",
                         remote_ts=f"{lab.topo.lan_ip}/32"))
    assert lab.charon.ike_state() == "ESTABLISHED", lab.explain()
    vips = lab.charon.virtual_ips()
    assert any(v.startswith("198.18.200.") for v in vips), vips
    assert any(v.startswith("2001:db8:ffff::") for v in vips), vips
    session = lab.box.call("show_sessions")[0]
    assert session["remote"].startswith(f"[{lab.topo.client_ip6}]")
    assert sorted(session["assigned"]) == sorted(vips)


def test_live_debug_trace_shows_payloads_but_no_secrets(lab):
    import signal
    import subprocess
    import sys
    from tests.harness.ikebox import ROOT
    lab = lab()
    lab.box.add_user("alice", PASSWORD)
    env = dict(os.environ, PYTHONPATH=ROOT, IKEBOX_CONTROL=lab.box.socket)
    out_path = os.path.join(lab.box.dir, "debug.out")
    with open(out_path, "w") as out:
        follower = subprocess.Popen([sys.executable, "-m", "firmware.cli", "debug",
                                     "--level", "3", "--history", "0"], stdout=out,
                                    stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        try:
            time.sleep(1.0)
            lab.connect(lab.conn())
            assert_established_with_pool_address(lab)
            time.sleep(0.5)
        finally:
            follower.send_signal(signal.SIGINT)
            follower.wait(10)
    text = open(out_path).read()
    assert "following the trace at level 3" in text
    assert "IKE_SA_INIT" in text and "EAP[Request" in text and "AUTH[" in text, text
    assert "session_up" in text
    assert PASSWORD not in text
    # The MSK-keyed AUTH values and keys never appear: only lengths are shown.
    assert re.search(r"AUTH\[PSK, \d+ bytes\]", text), text


@pytest.mark.parametrize("ike, esp, want_ike, want_esp", [
    ("aes256-sha256-modp2048", "aes256-sha256",
     "AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048", "AES_CBC_256/HMAC_SHA2_256_128"),
    ("chacha20poly1305-prfsha256-x25519", "chacha20poly1305",
     "CHACHA20_POLY1305/PRF_HMAC_SHA2_256/CURVE_25519", "CHACHA20_POLY1305"),
    ("aes128gcm16-prfsha384-ecp384", "aes128gcm16-esn",
     "AES_GCM_16_128/PRF_HMAC_SHA2_384/ECP_384", "AES_GCM_16_128/ESN"),
    ("aes128-sha512-ecp521", "aes128-sha384",
     "AES_CBC_128/HMAC_SHA2_512_256/PRF_HMAC_SHA2_512/ECP_521", "AES_CBC_128/HMAC_SHA2_384_192"),
])
def test_cipher_suites(lab, ike, esp, want_ike, want_esp):
    lab = lab()
    lab.box.add_user("alice", PASSWORD)
    lab.connect(lab.conn(proposals=ike, esp_proposals=esp))
    session = assert_established_with_pool_address(lab)
    assert session["ike_cipher"] == want_ike
    assert session["esp_cipher"] == want_esp


def test_client_rekeys_the_ike_sa_and_the_session_lives_on(lab):
    lab = lab()
    lab.box.add_user("alice", PASSWORD)
    lab.connect(lab.conn(ike_rekey_time="3s"))
    before = assert_established_with_pool_address(lab)
    deadline = time.time() + 20
    while time.time() < deadline and "rekeyed" not in lab.charon.log():
        time.sleep(0.5)
    time.sleep(1)
    assert "rekeyed" in lab.charon.log(), lab.explain()
    assert lab.charon.ike_state() == "ESTABLISHED"
    after = assert_established_with_pool_address(lab)
    assert after["ike_sa"] != before["ike_sa"] and after["assigned"] == before["assigned"]
    assert len(lab.box.call("show_ike_sas")) == 1  # the old one was deleted


def test_eap_identity_round_when_idi_is_an_address(lab):
    # Windows' built-in client and many phones send their address as IDi and tell the
    # user name only inside EAP.
    lab = lab()
    lab.box.add_user("alice", PASSWORD)
    lab.connect(lab.conn(local_id=lab.topo.client_ip, eap_id="alice"))
    session = assert_established_with_pool_address(lab)
    assert session["user"] == "alice"
    trace = " ".join(r["text"] for r in lab.box.call("trace", limit=500))
    assert "sending EAP-Identity request" in trace


def test_bad_config_change_is_refused_and_nothing_changes(lab):
    from firmware.control import ControlError
    lab = lab()
    before = lab.box.call("config_get")
    with open(lab.box.config_path) as fh:
        file_before = fh.read()
    for change, words in [({"pool": {"ipv4": "10.0.0.1/24"}}, "pool.ipv4"),
                          ({"ike": {"psk_file": "/nonexistent/psk"}}, "ike.psk_file"),
                          ({"ike": {"port": 1500}}, "restart")]:
        with pytest.raises(ControlError, match=words.replace(".", r"\.")):
            lab.box.call("config_set", config=change)
    assert lab.box.call("config_get") == before
    with open(lab.box.config_path) as fh:
        assert fh.read() == file_before
    # A good change applies at once and survives in the file.
    lab.box.call("config_set", config={"pool": {"dns": ["198.18.200.53"]}})
    assert lab.box.call("config_get")["pool"]["dns"] == ["198.18.200.53"]
    with open(lab.box.config_path) as fh:
        assert "198.18.200.53" in fh.read()
