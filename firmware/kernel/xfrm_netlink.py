"""XFRM netlink messages and attributes, defined on pyroute2's nlmsg/nla classes.

pyroute2 (up to 0.9.7) knows the NETLINK_XFRM family number but has no XFRM state or
policy messages, so they are described here from <linux/xfrm.h>. Kernel structs that
nest (xfrm_selector inside xfrm_usersa_info, ...) are written out flat with explicit
padding, each field prefixed by the struct it came from, so the layout is visible in
one place and the sizes match the kernel's on 64-bit targets (x86_64 and arm64 share
the alignment rules for these structs).

This module imports pyroute2 at the top; firmware.kernel.xfrm imports it only when an
Xfrm object is made, so importing the kernel package stays cheap.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from pyroute2.netlink import NotInitialized, nla, nlmsg
from pyroute2.netlink.marshal import Marshal

NETLINK_XFRM = 6

# Message types (XFRM_MSG_*).
XFRM_MSG_NEWSA = 0x10
XFRM_MSG_DELSA = 0x11
XFRM_MSG_GETSA = 0x12
XFRM_MSG_NEWPOLICY = 0x13
XFRM_MSG_DELPOLICY = 0x14
XFRM_MSG_GETPOLICY = 0x15
XFRM_MSG_ACQUIRE = 0x17
XFRM_MSG_EXPIRE = 0x18
XFRM_MSG_UPDPOLICY = 0x19
XFRM_MSG_UPDSA = 0x1A
XFRM_MSG_POLEXPIRE = 0x1B
XFRM_MSG_MAPPING = 0x26

# Multicast groups: the number for NETLINK_ADD_MEMBERSHIP.
XFRMNLGRP_EXPIRE = 2
XFRMNLGRP_MAPPING = 8

XFRM_POLICY_IN = 0
XFRM_POLICY_OUT = 1
XFRM_POLICY_FWD = 2
XFRM_POLICY_ALLOW = 0
XFRM_MODE_TUNNEL = 1
XFRM_STATE_AF_UNSPEC = 32
XFRM_STATE_ESN = 128
XFRM_INF = (1 << 64) - 1
UDP_ENCAP_ESPINUDP = 2
IPPROTO_ESP = 50
ALL_ALGOS = 0xFFFFFFFF


def _flat(prefix: str, fields: tuple) -> tuple:
    return tuple((f if f == "__pad" else prefix + f, fmt) for f, fmt in fields)


# struct xfrm_selector: 56 bytes.
SELECTOR = (
    ("daddr", "16s"),
    ("saddr", "16s"),
    ("dport", ">H"),
    ("dport_mask", ">H"),
    ("sport", ">H"),
    ("sport_mask", ">H"),
    ("family", "H"),
    ("prefixlen_d", "B"),
    ("prefixlen_s", "B"),
    ("proto", "B"),
    ("__pad", "3x"),
    ("ifindex", "i"),
    ("user", "I"),
)
# struct xfrm_id: 24 bytes.
XFRM_ID = (("daddr", "16s"), ("spi", ">I"), ("proto", "B"), ("__pad", "3x"))
# struct xfrm_lifetime_cfg: 64 bytes.
LIFETIME_CFG = tuple(
    (name, "Q")
    for name in (
        "soft_byte_limit",
        "hard_byte_limit",
        "soft_packet_limit",
        "hard_packet_limit",
        "soft_add_expires_seconds",
        "hard_add_expires_seconds",
        "soft_use_expires_seconds",
        "hard_use_expires_seconds",
    )
)
# struct xfrm_lifetime_cur: 32 bytes.
LIFETIME_CUR = (("bytes", "Q"), ("packets", "Q"), ("add_time", "Q"), ("use_time", "Q"))
# struct xfrm_stats: 12 bytes.
STATS = (("replay_window", "I"), ("replay", "I"), ("integrity_failed", "I"))

USERSA_INFO = (
    _flat("sel_", SELECTOR)
    + _flat("id_", XFRM_ID)
    + (("saddr", "16s"),)
    + _flat("lft_", LIFETIME_CFG)
    + _flat("cur_", LIFETIME_CUR)
    + _flat("stats_", STATS)
    + (
        ("seq", "I"),
        ("reqid", "I"),
        ("family", "H"),
        ("mode", "B"),
        ("replay_window", "B"),
        ("flags", "B"),
        ("__pad", "7x"),
    )
)
USERPOLICY_INFO = (
    _flat("sel_", SELECTOR)
    + _flat("lft_", LIFETIME_CFG)
    + _flat("cur_", LIFETIME_CUR)
    + (
        ("priority", "I"),
        ("index", "I"),
        ("dir", "B"),
        ("action", "B"),
        ("flags", "B"),
        ("share", "B"),
        ("__pad", "4x"),
    )
)
USERSA_ID = (("daddr", "16s"), ("spi", ">I"), ("family", "H"), ("proto", "B"), ("__pad", "x"))
# struct xfrm_user_mapping: 64 bytes. The kernel sends it when ESP-in-UDP that passed
# its integrity and replay checks arrives from another address or port than the SA's.
USER_MAPPING = _flat("id_", USERSA_ID) + (
    ("reqid", "I"),
    ("old_saddr", "16s"),
    ("new_saddr", "16s"),
    ("old_sport", ">H"),
    ("new_sport", ">H"),
)
USERPOLICY_ID = _flat("sel_", SELECTOR) + (("index", "I"), ("dir", "B"), ("__pad", "3x"))
USER_TMPL = (
    _flat("id_", XFRM_ID)
    + (("family", "H"), ("__pad", "2x"), ("saddr", "16s"), ("reqid", "I"))
    + (("mode", "B"), ("share", "B"), ("optional", "B"), ("__pad", "x"))
    + (("aalgos", "I"), ("ealgos", "I"), ("calgos", "I"))
)
ENCAP_TMPL = (
    ("encap_type", "H"),
    ("encap_sport", ">H"),
    ("encap_dport", ">H"),
    ("__pad", "2x"),
    ("encap_oa", "16s"),
)


def struct_size(fields: tuple) -> int:
    """The C size of a flat field list (each field packed on its own, as pyroute2 does)."""
    return sum(struct.calcsize(fmt) for _, fmt in fields)


def _bytes_defaults(fields: tuple) -> dict:
    # pyroute2 packs a missing field as 0, which struct refuses for "16s".
    return {name: b"" for name, fmt in fields if fmt.endswith("s")}


class _VarTail:
    """Attributes that end in a variable-length byte string ("s": an algorithm key,
    a replay bitmap). Decoding stops before it: keys never leave the kernel into a
    dump, a log or `show` output, and an empty tail does not overrun the buffer."""

    def ft_decode(self, offset):
        for name, fmt in self.fields:
            if fmt != "s":
                self[name], offset = self.decode_field(fmt, self.data, offset)
        self.pop("attrs", None)
        if self.get("value") is NotInitialized:
            del self["value"]


class xfrm_algo(_VarTail, nla):
    fields = (("alg_name", "64s"), ("alg_key_len", "I"), ("alg_key", "s"))
    defaults = _bytes_defaults(fields)


class xfrm_algo_auth(_VarTail, nla):
    fields = (
        ("alg_name", "64s"),
        ("alg_key_len", "I"),
        ("alg_trunc_len", "I"),
        ("alg_key", "s"),
    )
    defaults = _bytes_defaults(fields)


class xfrm_algo_aead(_VarTail, nla):
    fields = (
        ("alg_name", "64s"),
        ("alg_key_len", "I"),
        ("alg_icv_len", "I"),
        ("alg_key", "s"),
    )
    defaults = _bytes_defaults(fields)


class xfrm_encap_tmpl(nla):
    fields = ENCAP_TMPL
    defaults = _bytes_defaults(fields)


class xfrm_user_tmpl(nla):
    fields = USER_TMPL
    defaults = _bytes_defaults(fields)


class xfrm_lifetime_cur(nla):
    fields = LIFETIME_CUR


class xfrm_replay_state_esn(_VarTail, nla):
    # bmp is bmp_len 32-bit words; written as one byte string of that size.
    fields = (
        ("bmp_len", "I"),
        ("oseq", "I"),
        ("seq", "I"),
        ("oseq_hi", "I"),
        ("seq_hi", "I"),
        ("replay_window", "I"),
        ("bmp", "s"),
    )
    defaults = {"bmp": b""}


class xfrm_mark(nla):
    fields = (("v", "I"), ("m", "I"))


class _XfrmAttrs:
    """XFRMA_* attributes, shared by SA and policy messages."""

    nla_map = (
        (0, "XFRMA_UNSPEC", "none"),
        (1, "XFRMA_ALG_AUTH", "xfrm_algo"),
        (2, "XFRMA_ALG_CRYPT", "xfrm_algo"),
        (3, "XFRMA_ALG_COMP", "xfrm_algo"),
        (4, "XFRMA_ENCAP", "xfrm_encap_tmpl"),
        (5, "XFRMA_TMPL", "xfrm_user_tmpl"),
        (6, "XFRMA_SA", "hex"),
        (7, "XFRMA_POLICY", "hex"),
        (8, "XFRMA_SEC_CTX", "hex"),
        (9, "XFRMA_LTIME_VAL", "xfrm_lifetime_cur"),
        (10, "XFRMA_REPLAY_VAL", "hex"),
        (11, "XFRMA_REPLAY_THRESH", "uint32"),
        (12, "XFRMA_ETIMER_THRESH", "uint32"),
        (13, "XFRMA_SRCADDR", "hex"),
        (14, "XFRMA_COADDR", "hex"),
        (15, "XFRMA_LASTUSED", "uint64"),
        (16, "XFRMA_POLICY_TYPE", "hex"),
        (17, "XFRMA_MIGRATE", "hex"),
        (18, "XFRMA_ALG_AEAD", "xfrm_algo_aead"),
        (19, "XFRMA_KMADDRESS", "hex"),
        (20, "XFRMA_ALG_AUTH_TRUNC", "xfrm_algo_auth"),
        (21, "XFRMA_MARK", "xfrm_mark"),
        (22, "XFRMA_TFCPAD", "uint32"),
        (23, "XFRMA_REPLAY_ESN_VAL", "xfrm_replay_state_esn"),
        (24, "XFRMA_SA_EXTRA_FLAGS", "uint32"),
        (25, "XFRMA_PROTO", "uint8"),
        (26, "XFRMA_ADDRESS_FILTER", "hex"),
        (27, "XFRMA_PAD", "none"),
    )
    xfrm_algo = xfrm_algo
    xfrm_algo_auth = xfrm_algo_auth
    xfrm_algo_aead = xfrm_algo_aead
    xfrm_encap_tmpl = xfrm_encap_tmpl
    xfrm_user_tmpl = xfrm_user_tmpl
    xfrm_lifetime_cur = xfrm_lifetime_cur
    xfrm_replay_state_esn = xfrm_replay_state_esn
    xfrm_mark = xfrm_mark


class xfrm_usersa_info(_XfrmAttrs, nlmsg):
    fields = USERSA_INFO
    defaults = _bytes_defaults(fields)


class xfrm_userpolicy_info(_XfrmAttrs, nlmsg):
    fields = USERPOLICY_INFO
    defaults = _bytes_defaults(fields)


class xfrm_usersa_id(_XfrmAttrs, nlmsg):
    fields = USERSA_ID
    defaults = _bytes_defaults(fields)


class xfrm_userpolicy_id(_XfrmAttrs, nlmsg):
    fields = USERPOLICY_ID
    defaults = _bytes_defaults(fields)


class xfrm_user_expire(_XfrmAttrs, nlmsg):
    fields = USERSA_INFO + (("hard", "B"), ("__pad", "7x"))
    defaults = _bytes_defaults(fields)


class xfrm_user_mapping(_XfrmAttrs, nlmsg):
    fields = USER_MAPPING
    defaults = _bytes_defaults(fields)


class MarshalXfrm(Marshal):
    msg_map = {
        XFRM_MSG_NEWSA: xfrm_usersa_info,
        XFRM_MSG_UPDSA: xfrm_usersa_info,
        XFRM_MSG_DELSA: xfrm_usersa_id,
        XFRM_MSG_NEWPOLICY: xfrm_userpolicy_info,
        XFRM_MSG_UPDPOLICY: xfrm_userpolicy_info,
        XFRM_MSG_DELPOLICY: xfrm_userpolicy_id,
        XFRM_MSG_EXPIRE: xfrm_user_expire,
        XFRM_MSG_MAPPING: xfrm_user_mapping,
    }


def pack_addr(addr: str) -> tuple[int, bytes]:
    """(address family, 16-byte xfrm_address_t) for an IPv4 or IPv6 address."""
    ip = ipaddress.ip_address(addr)
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    return family, ip.packed.ljust(16, b"\0")


def unpack_addr(family: int, raw: bytes) -> str:
    if family == socket.AF_INET6:
        return str(ipaddress.IPv6Address(raw[:16].ljust(16, b"\0")))
    return str(ipaddress.IPv4Address(raw[:4].ljust(4, b"\0")))


def selector(src_cidr: str, dst_cidr: str) -> dict:
    """sel_* fields for traffic from src_cidr to dst_cidr, any protocol and port."""
    src = ipaddress.ip_network(src_cidr, strict=False)
    dst = ipaddress.ip_network(dst_cidr, strict=False)
    if src.version != dst.version:
        raise ValueError(f"selector {src_cidr} -> {dst_cidr} mixes IPv4 and IPv6")
    family = socket.AF_INET if src.version == 4 else socket.AF_INET6
    return {
        "sel_daddr": dst.network_address.packed.ljust(16, b"\0"),
        "sel_saddr": src.network_address.packed.ljust(16, b"\0"),
        "sel_family": family,
        "sel_prefixlen_d": dst.prefixlen,
        "sel_prefixlen_s": src.prefixlen,
    }


def selector_text(msg) -> tuple[str, str]:
    """(src CIDR, dst CIDR) of a decoded message's selector."""
    family = msg["sel_family"]
    src = unpack_addr(family, msg["sel_saddr"])
    dst = unpack_addr(family, msg["sel_daddr"])
    return f"{src}/{msg['sel_prefixlen_s']}", f"{dst}/{msg['sel_prefixlen_d']}"
