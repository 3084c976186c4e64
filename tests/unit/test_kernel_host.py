"""espinudp socket option, CPU detection and forwarding/NAT, against this host."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid

import pytest

from firmware.kernel.cpu import esp_prefers_chacha
from firmware.kernel.encap import SOL_UDP, UDP_ENCAP, set_espinudp
from firmware.kernel.forwarding import Forwarding


def test_set_espinudp_is_read_back_by_the_kernel():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        assert sock.getsockopt(SOL_UDP, UDP_ENCAP) == 0
        set_espinudp(sock)
        assert sock.getsockopt(SOL_UDP, UDP_ENCAP) == 2


@pytest.mark.parametrize(
    "cpuinfo, chacha",
    [
        ("processor\t: 0\nflags\t\t: fpu sse2 aes avx\n", False),  # x86 with AES-NI
        ("processor\t: 0\nflags\t\t: fpu sse2 avx\n", True),
        ("processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 cpuid\n", True),  # Pi 4
        ("processor\t: 0\nFeatures\t: fp asimd aes pmull sha1 sha2 crc32\n", False),
        ("processor\t: 0\n", False),  # no flag line: keep AES-GCM first
    ],
)
def test_esp_prefers_chacha(tmp_path, cpuinfo, chacha):
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    assert esp_prefers_chacha(str(path)) is chacha


def test_esp_prefers_chacha_unreadable(tmp_path):
    assert esp_prefers_chacha(str(tmp_path / "missing")) is False


@pytest.fixture
def netns():
    if os.geteuid() != 0:
        pytest.skip("needs root for namespaces")
    name = f"ikbxk-f{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=True)


def ns_out(ns: str, cmd: str) -> str:
    return subprocess.run(
        f"ip netns exec {ns} {cmd}", shell=True, check=True, capture_output=True, text=True
    ).stdout


def test_nat_table_comes_and_goes(netns):
    fwd = Forwarding("10.99.0.0/24", lan_subnets=("192.168.1.0/24",), netns=netns)
    fwd.start()
    ruleset = ns_out(netns, "nft list table inet ikebox")
    assert "ip saddr 10.99.0.0/24 ip daddr != 10.99.0.0/24" in ruleset
    assert "192.168.1.0/24" in ruleset and "masquerade" in ruleset
    assert ns_out(netns, "sysctl -n net.ipv4.ip_forward").strip() == "1"
    fwd.start()  # a second start replaces the table instead of doubling the rules
    assert ns_out(netns, "nft list table inet ikebox").count("masquerade") == 1
    fwd.stop()
    assert "ikebox" not in ns_out(netns, "nft list tables")
    assert ns_out(netns, "sysctl -n net.ipv4.ip_forward").strip() == "0"


def test_routed_setup_forwards_without_nat(netns):
    fwd = Forwarding("10.99.0.0/24", nat=False, netns=netns)
    fwd.start()
    assert ns_out(netns, "nft list tables").strip() == ""
    assert ns_out(netns, "sysctl -n net.ipv4.ip_forward").strip() == "1"
    fwd.stop()
    assert ns_out(netns, "sysctl -n net.ipv4.ip_forward").strip() == "0"


def test_default_lan_masquerades_everything_but_the_pool():
    rules = Forwarding("10.99.0.0/24", "fd00:99::/112", ("0.0.0.0/0", "10.0.0.0/8")).ruleset()
    assert "ip saddr 10.99.0.0/24 ip daddr != 10.99.0.0/24 masquerade" in rules
    assert "ip6" not in rules  # no IPv6 LAN subnet: IPv6 pool traffic is not NATed
