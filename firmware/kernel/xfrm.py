"""The daemon's hands on the kernel's IPsec tables (XFRM), over netlink.

Python negotiates; the kernel carries every data packet. For each CHILD_SA the daemon
hands over a ChildRecord and this module installs two ESP SAs (in and out, tunnel
mode) and the out/in/fwd policies whose templates point at them by reqid.

Ownership: every reqid ikebox uses lies in OWNED_REQIDS (0x1CE00000-0x1CEFFFFF).
strongSwan and `ip xfrm` users count reqids up from 1, so that range is ours alone;
flush_owned() and list_owned() go by it and leave every other state and policy
alone. Marks would tag entries too, but a mark on a policy or SA also changes which
packets match it, so they are not used.

Sockets: pyroute2's synchronous NetlinkSocket drives its own asyncio loop with
run_until_complete(), which raises inside the daemon's running loop. So requests go
over a plain blocking netlink socket (made by pyroute2's netns helper, so a test can
open it inside a namespace), with pyroute2's message classes and parser on top.
A request takes a few milliseconds; the daemon may call these methods from its loop.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import itertools
import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from firmware.kernel.records import ChildRecord, EspKeys

log = logging.getLogger("ikebox.kernel")

OWNED_REQIDS = range(0x1CE00000, 0x1CF00000)
POLICY_PRIORITY_BASE = 2000  # minus the selector prefix lengths: specific rules first

SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_EXT_ACK = 11
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1

_nl = None  # firmware.kernel.xfrm_netlink, imported with pyroute2 by the first Xfrm()


class KernelError(Exception):
    """The kernel refused a change; the message says why in plain words."""


@dataclass(frozen=True)
class ExpireEvent:
    """A soft (rekey now) or hard (SA is gone) lifetime expiry of one of our SAs."""

    reqid: int
    spi: int
    hard: bool


@dataclass(frozen=True)
class MappingEvent:
    """ESP for one of our inbound SAs arrived, authenticated, from a new outer address
    or port: the peer's NAT changed its mapping (or the peer moved)."""

    reqid: int
    spi: int
    address: str
    port: int


def _load_netlink():
    global _nl
    if _nl is None:
        from firmware.kernel import xfrm_netlink

        _nl = xfrm_netlink
    return _nl


class _NetlinkError(Exception):
    def __init__(self, code: int, text: str):
        super().__init__(code, text)
        self.code = code
        self.text = text


class _Channel:
    """One blocking NETLINK_XFRM socket for requests and their answers."""

    def __init__(self, netns: str | None, groups: tuple[int, ...] = ()):
        from pyroute2.netns import create_socket

        self.sock = create_socket(
            netns=netns,
            family=socket.AF_NETLINK,
            socket_type=socket.SOCK_RAW,
            proto=_nl.NETLINK_XFRM,
        )
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        self.sock.bind((0, 0))
        for group in groups:
            self.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
        self.marshal = _nl.MarshalXfrm()
        self._seq = itertools.count(1)

    def close(self) -> None:
        self.sock.close()

    def request(self, msg, msg_type: int, flags: int) -> list:
        """Send one request; return the decoded answers (a dump's entries, or nothing
        for an ACKed change). Raises _NetlinkError with the kernel's errno."""
        seq = next(self._seq)
        msg["header"]["type"] = msg_type
        msg["header"]["flags"] = flags
        msg["header"]["sequence_number"] = seq
        msg["header"]["pid"] = 0
        msg.encode()
        self.sock.send(msg.data)
        answers = []
        while True:
            data = self.sock.recv(1 << 20)
            offset = 0
            finished = False
            while offset + 16 <= len(data):
                length, mtype, mflags, mseq = struct.unpack_from("IHHI", data, offset)
                if length < 16:
                    break
                chunk = data[offset : offset + length]
                offset += (length + 3) & ~3
                if mseq != seq:
                    continue
                if mtype == NLMSG_ERROR:
                    code = -struct.unpack_from("i", chunk, 16)[0]
                    if code:
                        raise _NetlinkError(code, _extack_text(chunk, mflags))
                    finished = True
                elif mtype == NLMSG_DONE:
                    finished = True
                else:
                    answers.extend(self.marshal.parse(chunk))
                    if not mflags & NLM_F_MULTI and not flags & NLM_F_ACK:
                        finished = True
            if finished:
                return answers


def _extack_text(chunk: bytes, flags: int) -> str:
    """The kernel's extended-ACK message from an NLMSG_ERROR, or ""."""
    if not flags & NLM_F_ACK_TLVS:
        return ""
    inner_len = 16 if flags & NLM_F_CAPPED else struct.unpack_from("I", chunk, 20)[0]
    offset = 20 + ((inner_len + 3) & ~3)
    while offset + 4 <= len(chunk):
        alen, atype = struct.unpack_from("HH", chunk, offset)
        if alen < 4:
            break
        if atype == NLMSGERR_ATTR_MSG:
            return chunk[offset + 4 : offset + alen].rstrip(b"\0").decode(errors="replace")
        offset += (alen + 3) & ~3
    return ""


def _reason(err: _NetlinkError, what: str, keys: EspKeys | None = None) -> str:
    """Plain words for a refused change."""
    detail = f" (kernel: {err.text})" if err.text else ""
    text = err.text.lower()
    # The kernel attaches the algorithms first (ENOSYS when one is unknown; 6.2+ adds
    # an extack text), then looks up the ESP type (EPROTONOSUPPORT without esp4/esp6).
    if keys is not None and (err.code == errno.ENOSYS or "algorithm" in text):
        algs = " + ".join(a for a in (keys.enc_alg, keys.auth_alg) if a)
        return (
            f"the kernel lacks the ESP algorithm {algs} (its crypto module is not "
            f"built or cannot be loaded){detail}"
        )
    if keys is not None and err.code in (errno.ENOENT, errno.EPROTONOSUPPORT):
        return (
            "the kernel has no ESP support (CONFIG_INET_ESP, module esp4/esp6) or "
            f"cannot load it, so it cannot carry this tunnel's packets{detail}"
        )
    if err.code == errno.EEXIST:
        return (
            f"{what} already exists in the kernel (another tunnel with the same SPI or "
            f"traffic selectors, or a leftover that flush_owned() would clear){detail}"
        )
    if err.code == errno.EPERM:
        return f"not allowed to change {what}: the daemon needs CAP_NET_ADMIN{detail}"
    if err.code == errno.EINVAL:
        return f"the kernel rejected {what} as invalid{detail}"
    return f"the kernel refused {what}: {errno.errorcode.get(err.code, err.code)}{detail}"


def _policy_key(sel: dict, direction: int) -> tuple:
    return (
        sel["sel_saddr"],
        sel["sel_daddr"],
        sel["sel_prefixlen_s"],
        sel["sel_prefixlen_d"],
        sel["sel_family"],
        direction,
    )


class Xfrm:
    """XFRM states and policies owned by ikebox.

    netns: open the sockets in this named network namespace (tests) instead of the
    caller's own.
    """

    def __init__(self, netns: str | None = None):
        _load_netlink()
        self._netns = netns
        self._chan = _Channel(netns)
        # Expiries and NAT mapping changes, on one socket.
        self.expire_socket = _Channel(
            netns, groups=(_nl.XFRMNLGRP_EXPIRE, _nl.XFRMNLGRP_MAPPING)
        ).sock
        self.expire_socket.setblocking(False)
        self._expire_marshal = _nl.MarshalXfrm()
        # Policies are shared by the children of one reqid (a rekeyed child keeps its
        # reqid and selectors): count users so the last delete_child removes them.
        # key -> (reqid, inbound SPIs of the children using the policy)
        self._policy_users: dict[tuple, tuple[int, set[int]]] = {}

    def close(self) -> None:
        self._chan.close()
        self.expire_socket.close()

    def fileno(self) -> int:
        """The expire socket's descriptor, for loop.add_reader()."""
        return self.expire_socket.fileno()

    # ---- install / delete ------------------------------------------------------

    def install_child(self, rec: ChildRecord) -> None:
        """Install the out/in/fwd policies and both SAs of a CHILD_SA.

        All or nothing: on any refusal, what this call added is removed again and
        KernelError says why. Policies go first: until the SAs follow a few
        milliseconds later, matching packets are held back as for any new tunnel,
        and a refused SA (the common failure: no ESP or no algorithm) then also
        exercises the rollback of the policies.
        """
        _check_record(rec)
        undo: list = []
        try:
            self._add_policies(rec, undo)
            self._add_sas(rec, undo)
        except BaseException:
            self._undo(undo)
            raise
        log.info(
            "installed child reqid=0x%x spi_in=0x%08x spi_out=0x%08x %s",
            rec.reqid,
            rec.inbound.spi,
            rec.outbound.spi,
            rec.outbound.enc_alg,
        )

    def install_policies(self, rec: ChildRecord) -> None:
        """Only the policies of a child (all or nothing); install_child does this and
        the SAs. Useful alone where the kernel has XFRM but no ESP."""
        _check_record(rec)
        undo: list = []
        try:
            self._add_policies(rec, undo)
        except BaseException:
            self._undo(undo)
            raise

    def _add_sas(self, rec: ChildRecord, undo: list) -> None:
        for keys, src, dst, encap in self._sa_directions(rec):
            try:
                self._new_sa(self._sa_message(rec, keys, src, dst, encap))
            except _NetlinkError as err:
                raise KernelError(_reason(err, f"SA 0x{keys.spi:08x}", keys)) from None
            undo.append(("sa", dst, keys.spi))

    def _new_sa(self, msg) -> None:
        self._chan.request(
            msg, _nl.XFRM_MSG_NEWSA, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        )

    def _add_policies(self, rec: ChildRecord, undo: list) -> None:
        for sel, direction, tmpl_src, tmpl_dst in self._policies(rec):
            key = _policy_key(sel, direction)
            users = self._policy_users.get(key)
            if users is not None and users[0] == rec.reqid:
                users[1].add(rec.inbound.spi)
                undo.append(("share", key, rec.inbound.spi))
                continue
            msg = self._policy_message(rec, sel, direction, tmpl_src, tmpl_dst)
            try:
                self._chan.request(
                    msg,
                    _nl.XFRM_MSG_NEWPOLICY,
                    NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                )
            except _NetlinkError as err:
                src, dst = _nl.selector_text(sel)
                what = f"the {_DIR_NAMES[direction]} policy {src} -> {dst}"
                raise KernelError(_reason(err, what)) from None
            self._policy_users[key] = (rec.reqid, {rec.inbound.spi})
            undo.append(("policy", key, sel, direction))

    def delete_child(self, rec: ChildRecord) -> None:
        """Remove a child's SAs, and its policies unless another child of the same
        reqid still uses them. Entries already gone are fine."""
        for keys, _src, dst, _encap in self._sa_directions(rec):
            self._delete_sa(dst, keys.spi)
        for sel, direction, _s, _d in self._policies(rec):
            key = _policy_key(sel, direction)
            users = self._policy_users.get(key)
            if users is not None:
                users[1].discard(rec.inbound.spi)
                if users[1]:
                    continue
                del self._policy_users[key]
            self._delete_policy(sel, direction)
        log.info("deleted child reqid=0x%x spi_in=0x%08x", rec.reqid, rec.inbound.spi)

    def move_child(self, old: ChildRecord, new: ChildRecord) -> None:
        """Point a child's SAs and policies at the peer's new outer address or port
        (its NAT changed the mapping, or it moved), keeping SPIs, keys and sequence
        numbers. All or nothing: on a refusal, what moved is moved back and
        KernelError says why.

        A port change, the common NAT rebinding, updates both SAs in place, so their
        counters and replay state stay exact. An address is part of the outbound SA's
        identity, and the kernel cannot add or remove UDP encapsulation in place, so
        those changes replace both SAs: the new ones carry on the sequence numbers
        read just before (the peer would drop a restarted outbound sequence as
        replays) and treat the whole inbound window below them as seen. Packets that
        cross the swap itself, a few microseconds, may be lost, or on the way in
        accepted once more; the byte counters start again.
        """
        _check_record(new)
        same_ends = (old.local, old.remote) == (new.local, new.remote)
        undo: list[Callable[[], None]] = []
        pairs = list(zip(self._sa_directions(old), self._sa_directions(new), strict=True))
        try:
            if same_ends and (old.encap is None) == (new.encap is None):
                for was, now in pairs:
                    self._update_sa(new, *now)
                    undo.append(functools.partial(self._update_sa, old, *was))
            else:
                # An address, or UDP encapsulation coming or going (MOBIKE onto or off
                # a NATed path): the kernel cannot change those in place.
                for was, now in pairs:
                    self._replace_sa(old, was, new, now)
                    undo.append(functools.partial(self._replace_sa, new, now, old, was))
                if not same_ends:
                    # Registered first, so a partial policy update is undone too.
                    undo.append(functools.partial(self._update_policies, old))
                    self._update_policies(new)
        except KernelError:
            for step in reversed(undo):
                try:
                    step()
                except KernelError as err:
                    log.error("moving child reqid=0x%x back failed: %s", new.reqid, err)
            raise
        log.info(
            "moved child reqid=0x%x spi_in=0x%08x to peer %s%s",
            new.reqid,
            new.inbound.spi,
            new.remote,
            f" port {new.encap[1]}" if new.encap else "",
        )

    def _update_sa(self, rec: ChildRecord, keys: EspKeys, src: str, dst: str, encap) -> None:
        msg = self._sa_message(rec, keys, src, dst, encap)
        try:
            self._chan.request(msg, _nl.XFRM_MSG_UPDSA, NLM_F_REQUEST | NLM_F_ACK)
        except _NetlinkError as err:
            raise KernelError(_reason(err, f"updating SA 0x{keys.spi:08x}", keys)) from None

    def _replace_sa(self, frm: ChildRecord, was: tuple, to: ChildRecord, now: tuple) -> None:
        """One SA from where `frm` has it to where `to` wants it, its sequence numbers
        carried over; put back as it was if the kernel refuses the new one."""
        keys, old_src, old_dst, old_encap = was
        _k, src, dst, encap = now
        sa = self._get_sa(old_dst, keys.spi)
        if sa is None:
            raise KernelError(
                f"SA 0x{keys.spi:08x} is no longer in the kernel (deleted, or its "
                "hard lifetime expired): nothing to move"
            )
        replay = sa.get_attr("XFRMA_REPLAY_ESN_VAL")
        # The new SA takes over the old one's clock: a client that moves often must
        # still reach its rekey.
        spent = max(0, int(time.time()) - int(sa["cur_add_time"] or 0))
        to, frm = _lifetimes_left(to, spent), _lifetimes_left(frm, spent)
        self._delete_sa(old_dst, keys.spi)
        try:
            self._new_sa(self._sa_message(to, keys, src, dst, encap, replay))
        except _NetlinkError as err:
            back = self._sa_message(frm, keys, old_src, old_dst, old_encap, replay)
            try:
                self._new_sa(back)
            except _NetlinkError as again:
                log.error("SA 0x%08x could not be restored: %s", keys.spi,
                          _reason(again, "restoring it", keys))
            raise KernelError(_reason(err, f"moving SA 0x{keys.spi:08x}", keys)) from None

    def _update_policies(self, rec: ChildRecord) -> None:
        for sel, direction, tmpl_src, tmpl_dst in self._policies(rec):
            msg = self._policy_message(rec, sel, direction, tmpl_src, tmpl_dst)
            try:
                self._chan.request(msg, _nl.XFRM_MSG_UPDPOLICY, NLM_F_REQUEST | NLM_F_ACK)
            except _NetlinkError as err:
                src, dst = _nl.selector_text(sel)
                what = f"updating the {_DIR_NAMES[direction]} policy {src} -> {dst}"
                raise KernelError(_reason(err, what)) from None

    def _undo(self, undo: list) -> None:
        for step in reversed(undo):
            try:
                if step[0] == "sa":
                    self._delete_sa(step[1], step[2])
                elif step[0] == "share":
                    self._policy_users[step[1]][1].discard(step[2])
                else:
                    self._policy_users.pop(step[1], None)
                    self._delete_policy(step[2], step[3])
            except KernelError as err:  # keep undoing the rest; say what stayed
                log.error("rollback left an entry behind: %s", err)

    def _delete_sa(self, dst: str, spi: int) -> None:
        family, daddr = _nl.pack_addr(dst)
        msg = _nl.xfrm_usersa_id()
        msg.update(daddr=daddr, spi=spi, family=family, proto=_nl.IPPROTO_ESP)
        try:
            self._chan.request(msg, _nl.XFRM_MSG_DELSA, NLM_F_REQUEST | NLM_F_ACK)
        except _NetlinkError as err:
            if err.code not in (errno.ESRCH, errno.ENOENT):
                raise KernelError(_reason(err, f"deleting SA 0x{spi:08x}")) from None

    def _delete_policy(self, sel: dict, direction: int) -> None:
        msg = _nl.xfrm_userpolicy_id()
        msg.update(sel)
        msg["dir"] = direction
        try:
            self._chan.request(msg, _nl.XFRM_MSG_DELPOLICY, NLM_F_REQUEST | NLM_F_ACK)
        except _NetlinkError as err:
            if err.code not in (errno.ESRCH, errno.ENOENT):
                src, dst = _nl.selector_text(sel)
                what = f"deleting the {_DIR_NAMES[direction]} policy {src} -> {dst}"
                raise KernelError(_reason(err, what)) from None

    # ---- message building --------------------------------------------------------

    @staticmethod
    def _sa_directions(rec: ChildRecord):
        """(keys, outer src, outer dst, (encap sport, dport) or None) per SA."""
        inbound_encap = outbound_encap = None
        if rec.encap:
            box_port, peer_port = rec.encap
            inbound_encap = (peer_port, box_port)
            outbound_encap = (box_port, peer_port)
        return (
            (rec.inbound, rec.remote, rec.local, inbound_encap),
            (rec.outbound, rec.local, rec.remote, outbound_encap),
        )

    @staticmethod
    def _sa_message(rec: ChildRecord, keys: EspKeys, src: str, dst: str, encap, replay=None):
        """replay: the XFRMA_REPLAY_ESN_VAL of an SA this one replaces (its sequence
        numbers carry on and its whole window counts as seen)."""
        family, daddr = _nl.pack_addr(dst)
        _, saddr = _nl.pack_addr(src)
        msg = _nl.xfrm_usersa_info()
        msg.update(
            id_daddr=daddr,
            id_spi=keys.spi,
            id_proto=_nl.IPPROTO_ESP,
            saddr=saddr,
            family=family,
            mode=_nl.XFRM_MODE_TUNNEL,
            reqid=rec.reqid,
            lft_soft_byte_limit=_nl.XFRM_INF,
            lft_hard_byte_limit=_nl.XFRM_INF,
            lft_soft_packet_limit=_nl.XFRM_INF,
            lft_hard_packet_limit=_nl.XFRM_INF,
            lft_soft_add_expires_seconds=rec.soft_lifetime_s,
            lft_hard_add_expires_seconds=rec.hard_lifetime_s,
            # The window lives in the ESN attribute below; the kernel then wants 0 here.
            replay_window=0,
            # AF_UNSPEC: one SA carries inner IPv4 and IPv6 (dual-stack pools) and an
            # inner family other than the outer one; otherwise the kernel would fix the
            # inner family to the outer and drop the rest.
            flags=_nl.XFRM_STATE_AF_UNSPEC | (_nl.XFRM_STATE_ESN if rec.esn else 0),
        )
        attrs = []
        if keys.auth_alg is None:
            attrs.append(
                (
                    "XFRMA_ALG_AEAD",
                    {
                        "alg_name": keys.enc_alg.encode(),
                        "alg_key_len": len(keys.enc_key) * 8,
                        "alg_icv_len": keys.icv_bits,
                        "alg_key": keys.enc_key,
                    },
                )
            )
        else:
            attrs.append(
                (
                    "XFRMA_ALG_CRYPT",
                    {
                        "alg_name": keys.enc_alg.encode(),
                        "alg_key_len": len(keys.enc_key) * 8,
                        "alg_key": keys.enc_key,
                    },
                )
            )
            attrs.append(
                (
                    "XFRMA_ALG_AUTH_TRUNC",
                    {
                        "alg_name": keys.auth_alg.encode(),
                        "alg_key_len": len(keys.auth_key) * 8,
                        "alg_trunc_len": keys.auth_trunc_bits,
                        "alg_key": keys.auth_key,
                    },
                )
            )
        # The ESN attribute carries windows wider than the legacy 32-packet one, so it
        # is used with and without ESN (strongSwan does the same).
        window = max(rec.replay_window, 0)
        words = (window + 31) // 32
        esn = {"bmp_len": words, "replay_window": window, "bmp": b"\0" * (words * 4)}
        if replay is not None:
            esn.update({k: replay[k] for k in ("oseq", "seq", "oseq_hi", "seq_hi")})
            esn["bmp"] = b"\xff" * (words * 4)
        attrs.append(("XFRMA_REPLAY_ESN_VAL", esn))
        if encap is not None:
            attrs.append(
                (
                    "XFRMA_ENCAP",
                    {
                        "encap_type": _nl.UDP_ENCAP_ESPINUDP,
                        "encap_sport": encap[0],
                        "encap_dport": encap[1],
                        "encap_oa": b"",
                    },
                )
            )
        msg["attrs"] = attrs
        return msg

    @staticmethod
    def _policies(rec: ChildRecord):
        """(selector fields, direction, template src, template dst) per policy."""
        for local_ts in rec.local_ts:
            for remote_ts in rec.remote_ts:
                if (
                    ipaddress.ip_network(local_ts, strict=False).version
                    != ipaddress.ip_network(remote_ts, strict=False).version
                ):
                    continue  # an IPv4 LAN and an IPv6 client address never meet
                out = _nl.selector(local_ts, remote_ts)
                inward = _nl.selector(remote_ts, local_ts)
                yield out, _nl.XFRM_POLICY_OUT, rec.local, rec.remote
                yield inward, _nl.XFRM_POLICY_IN, rec.remote, rec.local
                yield inward, _nl.XFRM_POLICY_FWD, rec.remote, rec.local

    @staticmethod
    def _policy_message(rec: ChildRecord, sel: dict, direction: int, tmpl_src, tmpl_dst):
        family, daddr = _nl.pack_addr(tmpl_dst)
        _, saddr = _nl.pack_addr(tmpl_src)
        msg = _nl.xfrm_userpolicy_info()
        msg.update(sel)
        msg.update(
            lft_soft_byte_limit=_nl.XFRM_INF,
            lft_hard_byte_limit=_nl.XFRM_INF,
            lft_soft_packet_limit=_nl.XFRM_INF,
            lft_hard_packet_limit=_nl.XFRM_INF,
            priority=POLICY_PRIORITY_BASE - sel["sel_prefixlen_s"] - sel["sel_prefixlen_d"],
            dir=direction,
            action=_nl.XFRM_POLICY_ALLOW,
        )
        msg["attrs"] = [
            (
                "XFRMA_TMPL",
                {
                    "id_daddr": daddr,
                    "id_proto": _nl.IPPROTO_ESP,
                    "family": family,
                    "saddr": saddr,
                    "reqid": rec.reqid,
                    "mode": _nl.XFRM_MODE_TUNNEL,
                    "aalgos": _nl.ALL_ALGOS,
                    "ealgos": _nl.ALL_ALGOS,
                    "calgos": _nl.ALL_ALGOS,
                },
            )
        ]
        return msg

    # ---- reading back ------------------------------------------------------------

    def _get_sa(self, dst: str, spi: int):
        family, daddr = _nl.pack_addr(dst)
        msg = _nl.xfrm_usersa_id()
        msg.update(daddr=daddr, spi=spi, family=family, proto=_nl.IPPROTO_ESP)
        try:
            answers = self._chan.request(msg, _nl.XFRM_MSG_GETSA, NLM_F_REQUEST)
        except _NetlinkError as err:
            if err.code in (errno.ESRCH, errno.ENOENT):
                return None
            raise KernelError(_reason(err, f"reading SA 0x{spi:08x}")) from None
        return answers[0] if answers else None

    def child_counters(self, rec: ChildRecord) -> dict:
        """Traffic and error counters of a child's two SAs, as the kernel keeps them.

        Raises KernelError if either SA is gone (expired hard or deleted)."""
        now = time.time()
        sa_in = self._get_sa(rec.local, rec.inbound.spi)
        sa_out = self._get_sa(rec.remote, rec.outbound.spi)
        if sa_in is None or sa_out is None:
            raise KernelError(
                f"child reqid 0x{rec.reqid:x} has no SA in the kernel any more "
                "(deleted, or its hard lifetime expired)"
            )
        return {
            "bytes_in": sa_in["cur_bytes"],
            "packets_in": sa_in["cur_packets"],
            "bytes_out": sa_out["cur_bytes"],
            "packets_out": sa_out["cur_packets"],
            "replay_failures_in": sa_in["stats_replay"],
            "integrity_failures_in": sa_in["stats_integrity_failed"],
            "add_time": sa_in["cur_add_time"],
            "soft_remaining_s": _remaining(sa_in, "soft", now),
            "hard_remaining_s": _remaining(sa_in, "hard", now),
        }

    def _dump(self, msg_type: int, msg) -> list:
        try:
            return self._chan.request(msg, msg_type, NLM_F_REQUEST | NLM_F_DUMP)
        except _NetlinkError as err:
            raise KernelError(_reason(err, "the XFRM tables (dump)")) from None

    def _owned_states(self) -> list:
        return [
            m
            for m in self._dump(_nl.XFRM_MSG_GETSA, _nl.xfrm_usersa_id())
            if m["reqid"] in OWNED_REQIDS
        ]

    def _owned_policies(self) -> list:
        owned = []
        for m in self._dump(_nl.XFRM_MSG_GETPOLICY, _nl.xfrm_userpolicy_id()):
            tmpl = m.get_attr("XFRMA_TMPL")
            if tmpl is not None and tmpl["reqid"] in OWNED_REQIDS:
                owned.append(m)
        return owned

    def list_owned(self) -> list[dict]:
        """Our SAs with their selectors, transforms, encapsulation, counters and
        lifetimes, for `ikebox show ipsec-sa`. Never a key."""
        now = time.time()
        selectors: dict[int, list] = {}
        for pol in self._owned_policies():
            if pol["dir"] == _nl.XFRM_POLICY_OUT:
                src, dst = _nl.selector_text(pol)
                selectors.setdefault(pol.get_attr("XFRMA_TMPL")["reqid"], []).append(
                    {"local_ts": src, "remote_ts": dst}
                )
        result = []
        for sa in self._owned_states():
            entry = {
                "reqid": sa["reqid"],
                "spi": f"0x{sa['id_spi']:08x}",
                "src": _nl.unpack_addr(sa["family"], sa["saddr"]),
                "dst": _nl.unpack_addr(sa["family"], sa["id_daddr"]),
                "mode": "tunnel" if sa["mode"] == _nl.XFRM_MODE_TUNNEL else sa["mode"],
                "esn": bool(sa["flags"] & _nl.XFRM_STATE_ESN),
                "selectors": selectors.get(sa["reqid"], []),
                "bytes": sa["cur_bytes"],
                "packets": sa["cur_packets"],
                "replay_failures": sa["stats_replay"],
                "integrity_failures": sa["stats_integrity_failed"],
                "add_time": sa["cur_add_time"],
                "soft_remaining_s": _remaining(sa, "soft", now),
                "hard_remaining_s": _remaining(sa, "hard", now),
                "encap": None,
            }
            aead = sa.get_attr("XFRMA_ALG_AEAD")
            if aead is not None:
                entry["enc"] = _alg_name(aead)
                entry["icv_bits"] = aead["alg_icv_len"]
                entry["enc_key_bits"] = aead["alg_key_len"]
            crypt = sa.get_attr("XFRMA_ALG_CRYPT")
            if crypt is not None:
                entry["enc"] = _alg_name(crypt)
                entry["enc_key_bits"] = crypt["alg_key_len"]
            auth = sa.get_attr("XFRMA_ALG_AUTH_TRUNC")
            if auth is not None:
                entry["auth"] = _alg_name(auth)
                entry["auth_trunc_bits"] = auth["alg_trunc_len"]
            esn = sa.get_attr("XFRMA_REPLAY_ESN_VAL")
            if esn is not None:
                entry["replay_window"] = esn["replay_window"]
            encap = sa.get_attr("XFRMA_ENCAP")
            if encap is not None:
                entry["encap"] = {
                    "type": "espinudp",
                    "sport": encap["encap_sport"],
                    "dport": encap["encap_dport"],
                }
            result.append(entry)
        return result

    def flush_owned(self) -> int:
        """Remove every SA and policy in our reqid range (what a crashed daemon left
        behind). Returns how many entries went."""
        removed = 0
        for pol in self._owned_policies():
            sel = {k: pol[k] for k in pol if k.startswith("sel_")}
            self._delete_policy(sel, pol["dir"])
            removed += 1
        for sa in self._owned_states():
            self._delete_sa(_nl.unpack_addr(sa["family"], sa["id_daddr"]), sa["id_spi"])
            removed += 1
        self._policy_users.clear()
        if removed:
            log.info("flushed %d leftover XFRM entries in ikebox's reqid range", removed)
        return removed

    # ---- expiry events -----------------------------------------------------------

    def read_expires(self) -> list[ExpireEvent]:
        """Drain the event socket; only the expiries (read_events has all)."""
        return [e for e in self.read_events() if isinstance(e, ExpireEvent)]

    def read_events(self) -> list[ExpireEvent | MappingEvent]:
        """Drain the event socket (non-blocking): our SAs' expiries and NAT mapping
        changes, oldest first."""
        events: list[ExpireEvent | MappingEvent] = []
        while True:
            try:
                data = self.expire_socket.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return events
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                # The socket buffer overran: some events are lost and cannot be named.
                # Lifetimes are backed by the kernel's own hard expiry, and a lost
                # mapping change is reported again by the peer's next packet.
                log.warning("kernel XFRM events were lost (netlink buffer overrun)")
                continue
            for msg in self._expire_marshal.parse(data):
                kind = msg["header"]["type"]
                if msg["reqid"] not in OWNED_REQIDS:
                    continue
                if kind == _nl.XFRM_MSG_EXPIRE:
                    events.append(ExpireEvent(msg["reqid"], msg["id_spi"], bool(msg["hard"])))
                elif kind == _nl.XFRM_MSG_MAPPING:
                    address = _nl.unpack_addr(msg["id_family"], msg["new_saddr"])
                    events.append(
                        MappingEvent(msg["reqid"], msg["id_spi"], address, msg["new_sport"])
                    )


_DIR_NAMES = {0: "in", 1: "out", 2: "fwd"}


def _alg_name(attr) -> str:
    name = attr["alg_name"]
    if isinstance(name, bytes):
        name = name.split(b"\0", 1)[0].decode()
    return name


def _remaining(sa, kind: str, now: float) -> int | None:
    """Seconds until the soft/hard add-lifetime expires; None when there is none."""
    limit = sa[f"lft_{kind}_add_expires_seconds"]
    if not limit:
        return None
    return max(0, int(sa["cur_add_time"] + limit - now))


def _lifetimes_left(rec: ChildRecord, spent: int) -> ChildRecord:
    if not rec.soft_lifetime_s and not rec.hard_lifetime_s:
        return rec
    return replace(
        rec,
        soft_lifetime_s=max(1, rec.soft_lifetime_s - spent) if rec.soft_lifetime_s else 0,
        hard_lifetime_s=max(2, rec.hard_lifetime_s - spent) if rec.hard_lifetime_s else 0,
    )


def _check_record(rec: ChildRecord) -> None:
    if rec.reqid not in OWNED_REQIDS:
        raise KernelError(
            f"reqid 0x{rec.reqid:x} is outside ikebox's range "
            f"0x{OWNED_REQIDS.start:x}-0x{OWNED_REQIDS.stop - 1:x}"
        )
    for keys in (rec.inbound, rec.outbound):
        if keys.auth_alg is None and not keys.icv_bits:
            raise KernelError(f"SA 0x{keys.spi:08x}: AEAD {keys.enc_alg} without icv_bits")
        if keys.auth_alg is not None and not keys.auth_trunc_bits:
            raise KernelError(f"SA 0x{keys.spi:08x}: {keys.auth_alg} without truncation")
    if not rec.local_ts or not rec.remote_ts:
        raise KernelError("a child needs at least one local and one remote selector")
    if not 0 <= rec.replay_window <= 4096:
        raise KernelError(f"replay window {rec.replay_window} is outside 0-4096")
