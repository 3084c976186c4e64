"""The XFRM layer against this host's kernel, inside a namespace of our own.

This kernel has XFRM but no ESP, so policies really install here while every SA add
is refused: exactly what the rollback has to survive. The ESP data path itself is
proven in the VM tier (tests/vm).
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import uuid

import pytest

from firmware.kernel.records import ChildRecord, EspKeys
from firmware.kernel.xfrm import OWNED_REQIDS, KernelError, Xfrm

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")

GCM_KEY = bytes(range(20))  # 16-byte key + 4-byte salt
CBC_KEY = bytes(range(16))
HMAC_KEY = bytes(range(100, 132))


def gcm(spi: int) -> EspKeys:
    return EspKeys(spi=spi, enc_alg="rfc4106(gcm(aes))", enc_key=GCM_KEY, icv_bits=128)


def cbc(spi: int) -> EspKeys:
    return EspKeys(
        spi=spi,
        enc_alg="cbc(aes)",
        enc_key=CBC_KEY,
        auth_alg="hmac(sha256)",
        auth_key=HMAC_KEY,
        auth_trunc_bits=128,
    )


def record(keys=cbc, reqid=OWNED_REQIDS.start + 1, **kw) -> ChildRecord:
    base = dict(
        reqid=reqid,
        local="10.77.0.1",
        remote="10.77.0.2",
        inbound=keys(0xC1000001),
        outbound=keys(0xC2000001),
        local_ts=("192.168.50.0/24",),
        remote_ts=("10.99.0.5/32",),
    )
    base.update(kw)
    return ChildRecord(**base)


@pytest.fixture
def netns():
    name = f"ikbxk-u{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=True)


def ip_xfrm(ns: str, what: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", ns, "ip", "xfrm", what],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def test_struct_sizes_match_the_kernel_abi():
    from firmware.kernel import xfrm_netlink as nl

    assert nl.struct_size(nl.USERSA_INFO) == 224
    assert nl.struct_size(nl.USERPOLICY_INFO) == 168
    assert nl.struct_size(nl.USER_TMPL) == 64
    assert nl.struct_size(nl.ENCAP_TMPL) == 24
    assert nl.struct_size(nl.USERSA_ID) == 24
    assert nl.struct_size(nl.USERPOLICY_ID) == 64


def test_sa_message_layout_and_decode_drops_keys():
    from firmware.kernel import xfrm
    from firmware.kernel import xfrm_netlink as nl

    xfrm._load_netlink()  # what Xfrm() does first; no socket needed here
    rec = record(keys=gcm, encap=(4500, 4501), esn=True)
    msg = Xfrm._sa_message(rec, rec.outbound, rec.local, rec.remote, (4500, 4501))
    msg["header"]["type"] = nl.XFRM_MSG_NEWSA
    msg.encode()
    data = bytes(msg.data)
    # nlmsghdr(16) + xfrm_usersa_info: sel(56) then xfrm_id: daddr(16), spi (network order)
    assert data[16 + 56 : 16 + 60] == socket.inet_aton("10.77.0.2")
    assert struct.unpack_from(">I", data, 16 + 56 + 16)[0] == 0xC2000001
    assert data[16 + 56 + 20] == nl.IPPROTO_ESP
    # reqid sits after sel, id, saddr, lft, curlft, stats and seq: 56+24+16+64+32+12+4
    assert struct.unpack_from("I", data, 16 + 208)[0] == rec.reqid
    assert GCM_KEY in data  # the key does go to the kernel...
    decoded = nl.xfrm_usersa_info(data)
    decoded.decode()
    assert decoded["id_spi"] == 0xC2000001
    assert decoded["flags"] & nl.XFRM_STATE_ESN
    aead = decoded.get_attr("XFRMA_ALG_AEAD")
    assert aead["alg_icv_len"] == 128 and aead["alg_key_len"] == 160
    encap = decoded.get_attr("XFRMA_ENCAP")
    assert (encap["encap_sport"], encap["encap_dport"]) == (4500, 4501)
    assert decoded.get_attr("XFRMA_REPLAY_ESN_VAL")["replay_window"] == 128
    # ...but nothing decoded from the kernel holds it (or any byte of it)
    assert "alg_key" not in aead
    assert GCM_KEY[:4].hex() not in repr(decoded)


def test_policies_install_and_are_removed(netns):
    x = Xfrm(netns=netns)
    rec = record(local_ts=("192.168.50.0/24", "192.168.60.0/24"))
    x.install_policies(rec)
    shown = ip_xfrm(netns, "policy")
    for direction in ("out", "in", "fwd"):
        assert shown.count(f"dir {direction} ") == 2
    assert shown.count(f"reqid {rec.reqid} mode tunnel") == 6
    assert "src 192.168.50.0/24 dst 10.99.0.5/32" in shown
    assert "tmpl src 10.77.0.1 dst 10.77.0.2" in shown  # out goes box -> peer
    assert "tmpl src 10.77.0.2 dst 10.77.0.1" in shown
    x.delete_child(rec)
    assert ip_xfrm(netns, "policy").strip() == ""
    x.delete_child(rec)  # idempotent


def test_sa_refused_without_esp_leaves_nothing(netns):
    x = Xfrm(netns=netns)
    rec = record(keys=cbc)
    with pytest.raises(KernelError) as exc:
        x.install_child(rec)
    assert "no ESP support (CONFIG_INET_ESP" in str(exc.value)
    assert ip_xfrm(netns, "state").strip() == ""
    assert ip_xfrm(netns, "policy").strip() == ""


def test_missing_aead_algorithm_is_named_and_leaves_nothing(netns):
    # This host kernel has no gcm(aes) at all; the guest tier checks an unknown
    # algorithm on a kernel that has ESP.
    x = Xfrm(netns=netns)
    with pytest.raises(KernelError) as exc:
        x.install_child(record(keys=gcm, encap=(4500, 4500)))
    assert "lacks the ESP algorithm rfc4106(gcm(aes))" in str(exc.value)
    assert ip_xfrm(netns, "state").strip() == ""
    assert ip_xfrm(netns, "policy").strip() == ""


def test_conflicting_policy_rolls_back_what_was_added(netns):
    # Someone else's fwd policy on our selectors: our out and in are added first,
    # then fwd is refused; both must go again and the foreign one must stay.
    subprocess.run(
        "ip netns exec {0} ip xfrm policy add src 10.99.0.5/32 dst 192.168.50.0/24 "
        "dir fwd tmpl src 10.77.0.2 dst 10.77.0.1 proto esp mode tunnel reqid 7".format(
            netns
        ),
        shell=True,
        check=True,
    )
    x = Xfrm(netns=netns)
    with pytest.raises(KernelError) as exc:
        x.install_child(record())
    assert "fwd policy 10.99.0.5/32 -> 192.168.50.0/24 already exists" in str(exc.value)
    shown = ip_xfrm(netns, "policy")
    assert shown.count("dir ") == 1 and "reqid 7 " in shown


def test_flush_owned_removes_only_ours(netns):
    subprocess.run(
        "ip netns exec {0} ip xfrm policy add src 10.1.0.0/24 dst 10.2.0.0/24 "
        "dir out tmpl src 10.0.0.1 dst 10.0.0.2 proto esp mode tunnel reqid 3".format(netns),
        shell=True,
        check=True,
    )
    crashed = Xfrm(netns=netns)
    crashed.install_policies(record())
    crashed.install_policies(
        record(reqid=OWNED_REQIDS.start + 2, remote_ts=("10.99.0.6/32",))
    )
    crashed.close()
    restarted = Xfrm(netns=netns)
    assert restarted.flush_owned() == 6
    shown = ip_xfrm(netns, "policy")
    assert shown.count("dir ") == 1 and "reqid 3 " in shown
    assert restarted.flush_owned() == 0
    assert restarted.list_owned() == []


def test_bad_records_are_refused_before_touching_the_kernel(netns):
    x = Xfrm(netns=netns)
    with pytest.raises(KernelError, match="outside ikebox's range"):
        x.install_child(record(reqid=5))
    with pytest.raises(KernelError, match="without icv_bits"):
        x.install_child(
            record(keys=lambda spi: EspKeys(spi=spi, enc_alg="rfc4106(gcm(aes))", enc_key=b"k"))
        )
    assert ip_xfrm(netns, "policy").strip() == ""


def test_expire_socket_is_pollable_and_empty(netns):
    x = Xfrm(netns=netns)
    assert x.fileno() == x.expire_socket.fileno() > 2
    assert x.read_expires() == []


def test_usable_from_inside_a_running_event_loop(netns):
    # The daemon calls these from its asyncio loop; pyroute2's own sync socket
    # would raise "This event loop is already running" there.
    import asyncio

    async def main():
        x = Xfrm(netns=netns)
        seen = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().add_reader(x.fileno(), seen.set_result, True)
        x.install_policies(record())
        owned = ip_xfrm(netns, "policy").count("dir ")
        x.delete_child(record())
        asyncio.get_running_loop().remove_reader(x.fileno())
        x.close()
        return owned

    assert asyncio.run(main()) == 3
    assert ip_xfrm(netns, "policy").strip() == ""
