"""Inside the qemu guest: Debian's strongSwan as the client, `ikebox daemon` as the box,
and the CHILD_SA the daemon negotiated carrying ping in the kernel.

The namespaces, the daemon and charon come from tests/harness (the same as the
interop tier on the host); here the kernel has ESP, so the child must install and
traffic must pass. The client's ping goes from its virtual IP to the box's LAN address.
"""

from __future__ import annotations

import os
import re
import sys
import time

import pytest

from tests.harness.ikebox import Box
from tests.harness.netns import Topology
from tests.harness.strongswan import Charon, Conn

pytestmark = pytest.mark.vm

PASSWORD = "alice-Secret-123"
POOL = "198.18.200.0/24"


class Lab:
    def __init__(self, tmp: str, nat: bool = False, **conn_kw) -> None:
        self.topo = Topology("vm", nat=nat)
        self.tmp = tmp
        self.box = Box(
            self.topo.box,
            os.path.join(tmp, "box"),
            identity="ikebox.test",
            pool={"ipv4": POOL, "dns": []},
        )
        self.charon: Charon | None = None
        self.conn_kw = conn_kw

    def start_box(self) -> None:
        # Python in the guest is slow (crypto ~50x): give the first start time.
        self.box.start(wait=180)

    def connect(self) -> str:
        if self.charon is None:
            self.charon = Charon(
                self.topo.client, os.path.join(self.tmp, "client"), ca_pem=self.box.ca_pem()
            )
            self.charon.start()
            self.conn_kw.setdefault("remote_addr", self.topo.box_ip)
            self.conn_kw.setdefault("password", PASSWORD)
            self.conn_kw.setdefault("remote_ts", f"{self.topo.lan_ip}/32")
            self.charon.load(Conn(**self.conn_kw))
        out = self.charon.initiate(timeout=120)
        assert self.charon.ike_state() == "ESTABLISHED", out.stdout + self.explain()
        return self.charon.virtual_ips()[0]

    def ping(self, vip: str, count: int = 3) -> None:
        out = self.topo.client.run(
            "ping", "-q", "-c", str(count), "-i", "0.2", "-W", "3", "-I", vip,
            self.topo.lan_ip, check=False,
        )
        assert out.returncode == 0, out.stdout + out.stderr + self.explain()

    def box_xfrm(self, what: str, stats: bool = False) -> str:
        cmd = ["ip", "-s", "xfrm", what] if stats else ["ip", "xfrm", what]
        return self.topo.box.run(*cmd).stdout

    def box_spis(self) -> str:
        """The box's SAs without their keys, for assertion messages."""
        text = self.box_xfrm("state")
        return "\n".join(line for line in text.splitlines() if "spi" in line or "src" in line)

    def explain(self) -> str:
        charon = self.charon.log()[-4000:] if self.charon else ""
        return f"\n--- charon ---\n{charon}\n--- daemon ---\n{self.box.log()[-6000:]}"

    def close(self) -> None:
        if self.charon:
            self.charon.stop()
        self.box.stop()
        self.topo.close()


@pytest.fixture
def lab(tmp_path):
    labs: list[Lab] = []

    def make(**kw) -> Lab:
        lab = Lab(str(tmp_path), **kw)
        labs.append(lab)
        lab.start_box()
        lab.box.add_user("alice", PASSWORD)
        return lab

    yield make
    for lab in labs:
        lab.close()


def ip_s_counters(text: str) -> dict[str, tuple[int, int]]:
    """SPI (hex, 8 digits) -> (bytes, packets) from `ip -s xfrm state`."""
    result = {}
    for block in re.split(r"\n(?=src )", text):
        spi = re.search(r"spi 0x([0-9a-f]+)", block)
        cur = re.search(r"lifetime current:\s*\n\s*(\d+)\(bytes\), (\d+)\(packets\)", block)
        if spi and cur:
            result[spi.group(1).zfill(8)] = (int(cur.group(1)), int(cur.group(2)))
    return result


def installed_child(lab: Lab) -> dict:
    children = lab.box.call("show_ipsec_sas")
    assert len(children) == 1, children
    child = children[0]
    assert child["installed"], (child, lab.explain())
    return child


def wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return predicate()


def assert_counters_agree_and_grow(lab: Lab, vip: str) -> dict:
    lab.ping(vip, 3)
    child = installed_child(lab)
    k = child["kernel"]
    assert k["packets_in"] == 3 and k["packets_out"] == 3, child
    shown = ip_s_counters(lab.box_xfrm("state", stats=True))
    assert shown[child["spi_in"]] == (k["bytes_in"], k["packets_in"])
    assert shown[child["spi_out"]] == (k["bytes_out"], k["packets_out"])
    lab.ping(vip, 2)
    again = installed_child(lab)["kernel"]
    assert again["packets_in"] == 5 and again["bytes_in"] > k["bytes_in"]
    sessions = lab.box.call("show_sessions")
    assert sessions[0]["packets_in"] == 5 and sessions[0]["packets_out"] == 5
    return child


def test_eap_mschapv2_client_pings_the_lan_through_kernel_esp(lab):
    lab = lab()
    vip = lab.connect()
    assert vip.startswith("198.18.200.")
    child = assert_counters_agree_and_grow(lab, vip)
    assert child["encap"] is None
    assert " espinudp " not in lab.box_xfrm("state")
    assert PASSWORD not in lab.box.log()


def test_forced_udp_encapsulation_passes_traffic(lab):
    lab = lab(encap=True)
    vip = lab.connect()
    child = assert_counters_agree_and_grow(lab, vip)
    assert child["encap"], child
    assert "encap type espinudp sport 4500" in lab.box_xfrm("state") or (
        "encap type espinudp" in lab.box_xfrm("state")
    )


def test_client_disconnect_leaves_no_kernel_state(lab):
    lab = lab()
    vip = lab.connect()
    lab.ping(vip, 1)
    assert lab.charon.terminate().returncode == 0
    gone = wait_for(lambda: lab.box_xfrm("state").strip() == "", 10)
    assert gone, lab.box_spis() + lab.explain()
    assert lab.box_xfrm("policy").strip() == ""
    assert lab.box.call("show_ipsec_sas") == []


def test_kill_9_and_restart_leave_no_stale_state_and_the_client_reconnects(lab):
    lab = lab()
    vip = lab.connect()
    lab.ping(vip, 1)
    lab.box.kill()  # SIGKILL: no chance to clean up
    assert "proto esp" in lab.box_xfrm("state")  # what a crashed daemon leaves
    lab.box.start(wait=180)
    # The restarted daemon flushed its predecessor's SAs and policies at start.
    assert lab.box_xfrm("state").strip() == ""
    assert lab.box_xfrm("policy").strip() == ""
    # The client still holds its old IKE SA; drop it locally and dial again.
    lab.charon.swanctl("--terminate", "--ike", "box", "--force", "--timeout", "5", timeout=30)
    new_vip = lab.connect()
    lab.ping(new_vip, 2)
    assert installed_child(lab)["kernel"]["packets_in"] == 2


def test_nat_rebinding_moves_the_kernel_sas_and_traffic_keeps_flowing(lab):
    """The client's NAT forgets its mapping and makes a new one on another port (a
    timeout, a NAT reboot). The box's kernel sees authenticated ESP from the new port
    and reports it; the daemon moves the IKE SA and both ESP SAs there, so the replies
    reach the client again without it reconnecting."""
    lab = lab(nat=True)
    vip = lab.connect()
    lab.ping(vip, 3)
    before = lab.box.call("show_ike_sas")[0]["remote"]

    # New mappings from now on come from 40000-40999 (the first one kept the client's
    # own port 4500), and the NAT forgets the mappings it has, as after a reboot.
    nat = lab.topo.nat
    inside = lab.topo.client_ip.rsplit(".", 1)[0] + ".0/24"
    nat.run("nft", "delete", "table", "ip", "ikbxnat")
    nat.run("nft", "-f", "-", input=(
        "table ip ikbxnat {\n chain post {\n"
        "  type nat hook postrouting priority 100;\n"
        f"  ip saddr {inside} ip protocol udp masquerade to :40000-40999\n }}\n}}\n"))
    nat.run(sys.executable, "-c", "from pyroute2 import Conntrack; Conntrack().flush()")

    # The first echo requests open the new mapping; replies follow once the box moved.
    out = lab.topo.client.run("ping", "-q", "-c", "8", "-i", "0.5", "-W", "3", "-I", vip,
                              lab.topo.lan_ip, check=False)
    assert out.returncode == 0, out.stdout + out.stderr + lab.explain()
    after = lab.box.call("show_ike_sas")[0]["remote"]
    port = int(after.rsplit(":", 1)[1])
    assert 40000 <= port <= 40999 and after != before, (before, after, lab.explain())
    state = lab.box_xfrm("state")
    assert f"sport {port}" in state and f"dport {port}" in state, lab.box_spis() + state
    assert "moved child" in lab.box.log() or "moved from" in lab.box.log(), lab.explain()
    # Still one child, installed, and the kernel holds exactly its two SAs.
    child = installed_child(lab)
    assert lab.box_xfrm("state").count("proto esp") == 2, lab.box_spis()
    assert child["kernel"]["packets_in"] >= 3


def test_mobike_client_changes_address_and_its_tunnel_follows(lab):
    """A laptop moves to another network: strongSwan (MOBIKE on, as by default) sends
    UPDATE_SA_ADDRESSES from its new address, the box moves the IKE SA and the kernel
    SAs and policies, and traffic goes on without a new login."""
    lab = lab()
    vip = lab.connect()
    lab.ping(vip, 3)
    ike_before = lab.box.call("show_ike_sas")
    spi_before = installed_child(lab)["spi_in"]
    client, old_ip = lab.topo.client, lab.topo.client_ip
    new_ip = old_ip.rsplit(".", 1)[0] + ".4"
    dev = client.run("ip", "-o", "link", "show", "type", "veth").stdout
    dev = dev.split(":")[1].strip().split("@")[0]
    # Keep the subnet's route when its first address goes (as a DHCP renumbering does).
    client.sysctl(f"net.ipv4.conf.{dev}.promote_secondaries", "1")
    client.run("ip", "addr", "add", f"{new_ip}/24", "dev", dev)
    client.run("ip", "addr", "del", f"{old_ip}/24", "dev", dev)
    client.run("ip", "route", "replace", "default", "via", lab.topo.box_ip)

    assert wait_for(lambda: lab.box.call("show_ike_sas")[0]["remote"].startswith(
        new_ip + ":"), timeout=60), lab.explain()
    lab.ping(vip, 3)
    state = lab.box_xfrm("state")
    assert f"src {lab.topo.box_ip} dst {new_ip}" in state, lab.box_spis()
    assert f"src {new_ip} dst {lab.topo.box_ip}" in state, lab.box_spis()
    assert old_ip not in state, lab.box_spis()
    assert f"dst {new_ip}" in lab.box_xfrm("policy")
    # Moved, not reconnected: the same IKE SA and the same CHILD_SA SPIs.
    ike_after = lab.box.call("show_ike_sas")
    assert len(ike_after) == 1 and ike_after[0]["name"] == ike_before[0]["name"], ike_after
    assert installed_child(lab)["spi_in"] == spi_before
    steps = [t["step"] for t in lab.box.call("trace", limit=200)]
    assert "mobike" in steps, steps
    assert lab.box_xfrm("state").count("proto esp") == 2, lab.box_spis()


def test_the_box_rekeys_a_child_the_client_does_not_and_traffic_goes_on(tmp_path):
    """strongSwan is told never to rekey; the box's kernel lifetime (60 s, the least
    the config allows) runs out, the box rekeys the CHILD_SA itself, installs the new
    pair, deletes the old one, and ping goes on through the new SPIs."""
    lab = Lab(str(tmp_path))
    lab.box = Box(lab.topo.box, os.path.join(str(tmp_path), "box"), identity="ikebox.test",
                  pool={"ipv4": POOL, "dns": []}, ike={"child_rekey_time": 60})
    try:
        lab.start_box()
        lab.box.add_user("alice", PASSWORD)
        vip = lab.connect()
        lab.ping(vip, 2)
        before = installed_child(lab)["spi_in"]
        assert wait_for(lambda: installed_child(lab)["spi_in"] != before, timeout=150), \
            lab.explain()
        lab.ping(vip, 3)
        # The old pair is gone from the kernel on both sides; one child remains.
        assert wait_for(lambda: lab.box_xfrm("state").count("proto esp") == 2, 30), \
            lab.box_spis()
        assert before not in lab.box_xfrm("state")
        sas = lab.charon.list_sas()
        assert sas.count("INSTALLED") == 1, sas
        steps = [t["step"] for t in lab.box.call("trace", limit=300)]
        assert "rekey-child" in steps and "delete-child" in steps, steps
    finally:
        lab.close()
