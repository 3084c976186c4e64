"""Inside the qemu guest (Debian's stock kernel, which has ESP): our Xfrm installs a
CHILD_SA on both ends of a veth pair and the kernel carries ping through it.

Two namespaces: ikbxk-box (the box; LAN 192.168.50.1 on lo) and ikbxk-cli (a client
with virtual address 10.99.0.5 on lo), joined by veth 10.77.0.1 <-> 10.77.0.2. Each
side gets the mirror image of the same ChildRecord. An nftables counter on the box's
input proves the packets really crossed the wire as ESP (or ESP-in-UDP).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import replace

import pytest

from firmware.kernel.encap import set_espinudp
from firmware.kernel.forwarding import Forwarding
from firmware.kernel.records import ChildRecord, EspKeys
from firmware.kernel.xfrm import OWNED_REQIDS, ExpireEvent, KernelError, Xfrm

pytestmark = pytest.mark.vm

BOX, CLI, LAN = "ikbxk-box", "ikbxk-cli", "ikbxk-lan"
BOX_IP, CLI_IP = "10.77.0.1", "10.77.0.2"
LAN_IP, VIP, LAN_HOST = "192.168.50.1", "10.99.0.5", "192.168.60.2"
BOX_IP6, CLI_IP6, LAN_IP6, VIP6 = "fd77::1", "fd77::2", "fd50::1", "fd99::5"
REQID = OWNED_REQIDS.start + 0x42


def sh(cmd: str) -> str:
    done = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    assert done.returncode == 0, f"{cmd}: {done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def topology():
    for ns in (BOX, CLI, LAN):
        sh(f"ip netns add {ns}; ip -n {ns} link set lo up")
    sh(f"ip link add ikbxk-b netns {BOX} type veth peer name ikbxk-c netns {CLI}")
    sh(f"ip -n {BOX} addr add {BOX_IP}/24 dev ikbxk-b; ip -n {BOX} link set ikbxk-b up")
    sh(f"ip -n {CLI} addr add {CLI_IP}/24 dev ikbxk-c; ip -n {CLI} link set ikbxk-c up")
    sh(f"ip -n {BOX} addr add {LAN_IP}/32 dev lo; ip -n {CLI} addr add {VIP}/32 dev lo")
    sh(f"ip -n {CLI} route add 192.168.50.0/24 via {BOX_IP} src {VIP}")
    sh(f"ip -n {BOX} route add {VIP}/32 via {CLI_IP} src {LAN_IP}")
    # IPv6 beside it: outer fd77::/64 on the veth, inner fd50::1 (LAN) and fd99::5 (VIP).
    sh(f"ip -n {BOX} addr add {BOX_IP6}/64 dev ikbxk-b nodad")
    sh(f"ip -n {CLI} addr add {CLI_IP6}/64 dev ikbxk-c nodad")
    sh(f"ip -n {BOX} addr add {LAN_IP6}/128 dev lo; ip -n {CLI} addr add {VIP6}/128 dev lo")
    sh(f"ip -n {CLI} route add fd50::/64 via {BOX_IP6} src {VIP6}")
    sh(f"ip -n {BOX} route add {VIP6}/128 via {CLI_IP6} src {LAN_IP6}")
    # A LAN host behind the box that knows no route to the client pool (NAT needed).
    sh(f"ip link add ikbxk-l netns {BOX} type veth peer name ikbxk-h netns {LAN}")
    sh(f"ip -n {BOX} addr add 192.168.60.1/24 dev ikbxk-l; ip -n {BOX} link set ikbxk-l up")
    sh(f"ip -n {LAN} addr add {LAN_HOST}/24 dev ikbxk-h; ip -n {LAN} link set ikbxk-h up")
    sh(f"ip -n {CLI} route add 192.168.60.0/24 via {BOX_IP} src {VIP}")
    sh(
        f"ip netns exec {LAN} nft -f - <<'EOF'\n"
        "table inet ikbxk {\n  counter from_box {}\n  counter from_pool {}\n"
        "  chain in {\n    type filter hook input priority 0;\n"
        "    ip saddr 192.168.60.1 icmp type echo-request counter name from_box\n"
        "    ip saddr 10.99.0.0/24 counter name from_pool\n  }\n}\nEOF"
    )
    sh(
        f"ip netns exec {BOX} nft -f - <<'EOF'\n"
        "table inet ikbxk {\n"
        "  counter esp_in {}\n  counter espinudp_in {}\n"
        "  chain in {\n    type filter hook input priority 0;\n"
        "    meta l4proto 50 counter name esp_in\n"
        "    udp dport 4500 counter name espinudp_in\n  }\n}\nEOF"
    )
    sides = {BOX: Xfrm(netns=BOX), CLI: Xfrm(netns=CLI)}
    yield sides
    for x in sides.values():
        x.close()
    for ns in (BOX, CLI, LAN):
        sh(f"ip netns del {ns}")


@pytest.fixture
def sides(topology):
    yield topology
    for x in topology.values():
        x.flush_owned()
        x.read_expires()


def keys(kind: str, spi: int) -> EspKeys:
    if kind == "gcm":
        return EspKeys(spi, "rfc4106(gcm(aes))", os.urandom(20), icv_bits=128)
    if kind == "chacha":
        return EspKeys(spi, "rfc7539esp(chacha20,poly1305)", os.urandom(36), icv_bits=128)
    if kind == "cbc-sha256":
        return EspKeys(spi, "cbc(aes)", os.urandom(16), 0, "hmac(sha256)", os.urandom(32), 128)
    if kind == "cbc-sha1":
        return EspKeys(spi, "cbc(aes)", os.urandom(32), 0, "hmac(sha1)", os.urandom(20), 96)
    if kind == "cbc-sha512":
        return EspKeys(spi, "cbc(aes)", os.urandom(32), 0, "hmac(sha512)", os.urandom(64), 256)
    raise ValueError(kind)


def pair(
    kind: str, encap=None, spi=0xC0DE0001, lan=("192.168.50.0/24",), **kw
) -> tuple[ChildRecord, ChildRecord]:
    """The box's record and the client's mirror image of it."""
    to_box, to_cli = keys(kind, spi), keys(kind, spi + 1)
    box = ChildRecord(
        reqid=REQID,
        local=BOX_IP,
        remote=CLI_IP,
        inbound=to_box,
        outbound=to_cli,
        local_ts=lan,
        remote_ts=(f"{VIP}/32",),
        encap=encap,
        **kw,
    )
    cli = replace(
        box,
        local=CLI_IP,
        remote=BOX_IP,
        inbound=to_cli,
        outbound=to_box,
        local_ts=box.remote_ts,
        remote_ts=box.local_ts,
        encap=(encap[1], encap[0]) if encap else None,
    )
    return box, cli


def ping(count: int = 3) -> None:
    sh(f"ip netns exec {CLI} ping -q -c {count} -i 0.2 -W 2 -I {VIP} {LAN_IP}")


def nft_packets(name: str, ns: str = BOX) -> int:
    out = sh(f"ip netns exec {ns} nft list counter inet ikbxk {name}")
    return int(re.search(r"packets (\d+)", out).group(1))


def ip_s_state(ns: str) -> dict[int, tuple[int, int]]:
    """SPI -> (bytes, packets) as `ip -s xfrm state` shows them."""
    out = sh(f"ip netns exec {ns} ip -s xfrm state")
    result = {}
    for block in re.split(r"\n(?=src )", out):
        spi = re.search(r"spi (0x[0-9a-f]+)", block)
        cur = re.search(r"lifetime current:\s*\n\s*(\d+)\(bytes\), (\d+)\(packets\)", block)
        if spi and cur:
            result[int(spi.group(1), 16)] = (int(cur.group(1)), int(cur.group(2)))
    return result


def encap_sockets(box_port: int, cli_port: int):
    from pyroute2.netns import create_socket
    import socket

    socks = []
    for ns, addr, port in ((BOX, BOX_IP, box_port), (CLI, CLI_IP, cli_port)):
        s = create_socket(netns=ns, family=socket.AF_INET, socket_type=socket.SOCK_DGRAM)
        s.bind((addr, port))
        set_espinudp(s)
        socks.append(s)
    return socks


CASES = [
    ("gcm", None, {"esn": True}),
    ("chacha", None, {}),
    ("cbc-sha256", None, {}),
    ("cbc-sha1", None, {"replay_window": 32}),
    ("cbc-sha512", None, {"replay_window": 0}),
    ("gcm", (4500, 4501), {}),
    ("chacha", (4500, 4501), {"esn": True}),
]


@pytest.mark.parametrize("kind, encap, extra", CASES, ids=lambda v: str(v))
def test_ping_crosses_the_kernel_esp_path(sides, kind, encap, extra):
    box_rec, cli_rec = pair(kind, encap, **extra)
    socks = encap_sockets(*encap) if encap else []
    try:
        esp0, udp0 = nft_packets("esp_in"), nft_packets("espinudp_in")
        sides[BOX].install_child(box_rec)
        sides[CLI].install_child(cli_rec)
        ping(3)
        box = sides[BOX].child_counters(box_rec)
        cli = sides[CLI].child_counters(cli_rec)
        assert box["packets_in"] == 3 and box["packets_out"] == 3
        assert cli["packets_in"] == 3 and cli["packets_out"] == 3
        assert box["bytes_in"] == cli["bytes_out"] > 0
        assert box["integrity_failures_in"] == 0 and box["replay_failures_in"] == 0
        if encap:
            assert nft_packets("espinudp_in") - udp0 >= 3
            assert nft_packets("esp_in") == esp0
        else:
            assert nft_packets("esp_in") - esp0 >= 3
        shown = ip_s_state(BOX)
        assert shown[box_rec.inbound.spi] == (box["bytes_in"], box["packets_in"])
        assert shown[box_rec.outbound.spi] == (box["bytes_out"], box["packets_out"])
        ping(2)
        again = sides[BOX].child_counters(box_rec)
        assert again["packets_in"] == 5 and again["bytes_in"] > box["bytes_in"]
        assert ip_s_state(BOX)[box_rec.inbound.spi] == (again["bytes_in"], 5)

        listed = sides[BOX].list_owned()
        assert {e["spi"] for e in listed} == {"0xc0de0001", "0xc0de0002"}
        entry = next(e for e in listed if e["spi"] == "0xc0de0001")
        assert entry["enc"] == box_rec.inbound.enc_alg
        assert entry["selectors"] == [{"local_ts": "192.168.50.0/24", "remote_ts": f"{VIP}/32"}]
        assert entry["packets"] == 5 and entry["esn"] == box_rec.esn
        if encap:
            assert entry["encap"] == {"type": "espinudp", "sport": 4501, "dport": 4500}
        text = repr(listed)
        for k in (box_rec.inbound, box_rec.outbound):
            assert k.enc_key.hex() not in text and k.enc_key[:8].hex() not in text

        sides[BOX].delete_child(box_rec)
        sides[CLI].delete_child(cli_rec)
        for ns in (BOX, CLI):
            assert sh(f"ip netns exec {ns} ip xfrm state").strip() == ""
            assert sh(f"ip netns exec {ns} ip xfrm policy").strip() == ""
        sides[BOX].delete_child(box_rec)  # idempotent
    finally:
        for s in socks:
            s.close()


def test_flush_owned_removes_a_crashed_daemons_leftovers(sides):
    box_rec, _ = pair("gcm")
    sh(
        f"ip netns exec {BOX} ip xfrm state add src 10.1.0.1 dst 10.1.0.2 proto esp "
        "spi 0x700 mode tunnel reqid 7 aead 'rfc4106(gcm(aes))' "
        "0x0102030405060708090a0b0c0d0e0f1011121314 128"
    )
    sides[BOX].install_child(box_rec)
    restarted = Xfrm(netns=BOX)
    try:
        assert restarted.flush_owned() == 5  # 2 SAs + out/in/fwd
        state = sh(f"ip netns exec {BOX} ip xfrm state")
        assert "spi 0x00000700 reqid 7 " in state and "c0de" not in state
        assert sh(f"ip netns exec {BOX} ip xfrm policy").strip() == ""
    finally:
        restarted.close()
        sh(f"ip netns exec {BOX} ip xfrm state flush")


def test_soft_then_hard_expiry_reach_the_expire_socket(sides):
    box_rec, _ = pair("gcm", soft_lifetime_s=1, hard_lifetime_s=3)
    x = sides[BOX]
    x.read_expires()
    x.install_child(box_rec)
    counters = x.child_counters(box_rec)
    assert 0 <= counters["soft_remaining_s"] <= 1 and 2 <= counters["hard_remaining_s"] <= 3
    events: list[ExpireEvent] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and sum(e.hard for e in events) < 2:
        time.sleep(0.2)
        events += x.read_expires()
    spis = {box_rec.inbound.spi, box_rec.outbound.spi}
    soft = {e.spi for e in events if not e.hard}
    hard = {e.spi for e in events if e.hard}
    assert soft == spis and hard == spis
    assert all(e.reqid == REQID for e in events)
    assert "c0de" not in sh(f"ip netns exec {BOX} ip xfrm state")  # hard expiry removed them


def test_refused_second_sa_rolls_back_the_first_and_the_policies(sides):
    box_rec, _ = pair("cbc-sha256")
    bad = replace(box_rec.outbound, enc_alg="cbc(nosuchcipher)")
    with pytest.raises(KernelError, match=r"lacks the ESP algorithm cbc\(nosuchcipher\)"):
        sides[BOX].install_child(replace(box_rec, outbound=bad))
    assert sh(f"ip netns exec {BOX} ip xfrm state").strip() == ""
    assert sh(f"ip netns exec {BOX} ip xfrm policy").strip() == ""


def test_rekeyed_child_keeps_the_policies_until_the_last_sa_goes(sides):
    old_box, old_cli = pair("gcm", spi=0xC0DE0001)
    new_box, new_cli = pair("gcm", spi=0xC0DE0011)  # same reqid and selectors
    sides[BOX].install_child(old_box)
    sides[CLI].install_child(old_cli)
    ping(1)
    sides[BOX].install_child(new_box)
    sides[CLI].install_child(new_cli)
    sides[BOX].delete_child(old_box)
    sides[CLI].delete_child(old_cli)
    assert sh(f"ip netns exec {BOX} ip xfrm policy").count("dir ") == 3
    ping(2)
    assert sides[BOX].child_counters(new_box)["packets_in"] == 2
    sides[BOX].delete_child(new_box)
    sides[CLI].delete_child(new_cli)
    for ns in (BOX, CLI):
        assert sh(f"ip netns exec {ns} ip xfrm state").strip() == ""
        assert sh(f"ip netns exec {ns} ip xfrm policy").strip() == ""


@pytest.mark.parametrize("nat", [True, False], ids=["nat", "routed"])
def test_pool_traffic_reaches_the_lan_through_forwarding(sides, nat):
    box_rec, cli_rec = pair("chacha", lan=("192.168.50.0/24", "192.168.60.0/24"))
    cli_rec = replace(cli_rec, local_ts=box_rec.remote_ts, remote_ts=box_rec.local_ts)
    fwd = Forwarding("10.99.0.0/24", lan_subnets=("192.168.60.0/24",), nat=nat, netns=BOX)
    sides[BOX].install_child(box_rec)
    sides[CLI].install_child(cli_rec)
    before = nft_packets("from_box", LAN), nft_packets("from_pool", LAN)
    fwd.start()
    try:
        cmd = f"ip netns exec {CLI} ping -q -c 2 -i 0.2 -W 2 -I {VIP} {LAN_HOST}"
        reached = subprocess.run(cmd, shell=True, capture_output=True).returncode == 0
        counters = sides[BOX].child_counters(box_rec)
        if nat:
            # Out of the tunnel, through fwd, masqueraded, and back in through ESP.
            assert reached
            assert nft_packets("from_box", LAN) - before[0] == 2
            assert counters["packets_in"] == 2 and counters["packets_out"] == 2
        else:
            # The LAN host has no route to the pool: requests arrive unNATed, no reply.
            assert not reached
            assert nft_packets("from_pool", LAN) - before[1] == 2
            assert counters["packets_in"] == 2 and counters["packets_out"] == 0
    finally:
        fwd.stop()
    assert "ikebox" not in sh(f"ip netns exec {BOX} nft list tables")


def test_one_sa_carries_ipv4_and_ipv6_inside(sides):
    # A dual-stack client: one child, both families inside, IPv4 outside.
    box_rec, cli_rec = pair("gcm", lan=("192.168.50.0/24", "fd50::/64"))
    box_rec = replace(box_rec, remote_ts=(f"{VIP}/32", f"{VIP6}/128"))
    cli_rec = replace(cli_rec, local_ts=box_rec.remote_ts, remote_ts=box_rec.local_ts)
    sides[BOX].install_child(box_rec)
    sides[CLI].install_child(cli_rec)
    assert sh(f"ip netns exec {BOX} ip xfrm policy").count("dir ") == 6
    ping(2)
    sh(f"ip netns exec {CLI} ping -q -c 2 -i 0.2 -W 2 -I {VIP6} {LAN_IP6}")
    counters = sides[BOX].child_counters(box_rec)
    assert counters["packets_in"] == 4 and counters["packets_out"] == 4


def test_ipv4_inside_ipv6_outside(sides):
    box_rec, cli_rec = pair("chacha")
    box_rec = replace(box_rec, local=BOX_IP6, remote=CLI_IP6)
    cli_rec = replace(cli_rec, local=CLI_IP6, remote=BOX_IP6)
    sides[BOX].install_child(box_rec)
    sides[CLI].install_child(cli_rec)
    assert f"src {CLI_IP6} dst {BOX_IP6}" in sh(f"ip netns exec {BOX} ip xfrm state")
    ping(2)
    counters = sides[BOX].child_counters(box_rec)
    assert counters["packets_in"] == 2 and counters["packets_out"] == 2
    listed = sides[BOX].list_owned()
    assert {(e["src"], e["dst"]) for e in listed} == {(CLI_IP6, BOX_IP6), (BOX_IP6, CLI_IP6)}


def test_moving_a_child_to_a_new_peer_address_keeps_sequence_numbers(sides):
    """The peer's outer address changes. The box replaces its SAs (the outbound SA's
    address is part of its identity) and the traffic goes on: the new SAs carry on
    the sequence numbers, which the other side's replay window would otherwise
    refuse as replays."""
    cli_ip2 = "10.77.0.3"
    sh(f"ip -n {CLI} addr add {cli_ip2}/24 dev ikbxk-c")
    try:
        box_rec, cli_rec = pair("gcm")
        sides[BOX].install_child(box_rec)
        sides[CLI].install_child(cli_rec)
        ping(3)

        sides[BOX].move_child(box_rec, replace(box_rec, remote=cli_ip2))
        sides[CLI].move_child(cli_rec, replace(cli_rec, local=cli_ip2))
        ping(3)

        state = sh(f"ip -n {BOX} xfrm state")
        assert f"src {BOX_IP} dst {cli_ip2}" in state and f"src {cli_ip2} dst {BOX_IP}" in state
        assert CLI_IP not in state.replace(f"{CLI_IP}/", "")
        policies = sh(f"ip -n {BOX} xfrm policy")
        assert f"tmpl src {BOX_IP} dst {cli_ip2}" in policies, policies
        assert f"tmpl src {cli_ip2} dst {BOX_IP}" in policies, policies
        # Sequence numbers went on from 3 (an outbound restart at 1 would be refused by
        # the client's inbound window, which the move marked as seen up to 3).
        esn = sh(f"ip -n {BOX} xfrm state get src {BOX_IP} dst {cli_ip2} proto esp "
                 f"spi 0x{box_rec.outbound.spi:08x}")
        assert "oseq 0x6" in esn, esn
    finally:
        sh(f"ip -n {CLI} addr del {cli_ip2}/24 dev ikbxk-c")


def test_moving_a_child_that_the_kernel_no_longer_has_is_refused(sides):
    box_rec, _cli = pair("gcm")
    with pytest.raises(KernelError, match="no longer in the kernel"):
        sides[BOX].move_child(box_rec, replace(box_rec, remote="10.77.0.9"))


def test_a_refused_move_puts_everything_back(sides):
    """All or nothing: the inbound SA moves, the kernel refuses the outbound one (an SA
    with its address and SPI is already there), and the child is left where it was."""
    box_rec, cli_rec = pair("gcm")
    sides[BOX].install_child(box_rec)
    sides[CLI].install_child(cli_rec)
    ping(2)
    listing = f"ip -n {BOX} xfrm state | grep -E '^src|proto esp' | sort"
    before_states = sh(listing)
    before_policies = sh(f"ip -n {BOX} xfrm policy | grep tmpl")
    spi = f"0x{box_rec.outbound.spi:08x}"
    blocker = (f"src {BOX_IP} dst 10.77.0.9 proto esp spi {spi}")
    sh(f"ip -n {BOX} xfrm state add {blocker} mode tunnel aead 'rfc4106(gcm(aes))' "
       f"0x{'11' * 20} 128")
    try:
        with pytest.raises(KernelError):
            sides[BOX].move_child(box_rec, replace(box_rec, remote="10.77.0.9"))
        sh(f"ip -n {BOX} xfrm state delete {blocker}")
        assert sh(listing) == before_states
        assert sh(f"ip -n {BOX} xfrm policy | grep tmpl") == before_policies
        ping(2)
    finally:
        subprocess.run(f"ip -n {BOX} xfrm state delete {blocker}", shell=True,
                       capture_output=True)
