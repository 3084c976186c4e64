"""CREATE_CHILD_SA (RFC 7296 §1.3): rekeying a CHILD_SA, rekeying the IKE SA, and
further children.

A child rekey installs the new SA pair before answering; the client then deletes the
old pair with an INFORMATIONAL. An IKE rekey moves the session (user, lease,
children) onto the new IKE SA, so the client's DELETE of the old one ends nothing.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import TYPE_CHECKING

from .. import crypto
from ..constants import Dh, Notify, Protocol, TransformType
from ..ike_sa import IkeSa, State
from ..keys import IkeKeys
from ..message import (
    KePayload, Message, NoncePayload, NotifyPayload, Payload, SaPayload, TsPayload,
)
from ..proposals import PROFILES, NoProposalChosen, choose
from ..responder import ExchangeError
from .ike_auth import child_payloads, describe_child, negotiate_child

if TYPE_CHECKING:
    from ..responder import Responder

EXCHANGE = "CREATE_CHILD_SA"
NONCE_SIZE = 32
MAX_CHILDREN = 8  # a remote-access client needs one, two while it rekeys
OLD_SA_GRACE = 60.0  # how long a rekeyed IKE SA waits for the client's DELETE


def handle(r: Responder, ike_sa: IkeSa, message: Message) -> list[Payload] | None:
    sa = message.first(SaPayload)
    nonce = message.first(NoncePayload)
    if sa is None or nonce is None:
        raise ExchangeError(Notify.INVALID_SYNTAX, "CREATE_CHILD_SA without SA or nonce",
                            fatal=False)
    if sa.proposals and sa.proposals[0].protocol == Protocol.IKE:
        return _rekey_ike_sa(r, ike_sa, message, sa, nonce)
    return _new_child(r, ike_sa, message, sa, nonce)


def _new_child(r: Responder, ike_sa: IkeSa, message: Message, sa: SaPayload,
               nonce: NoncePayload) -> list[Payload] | None:
    msg_id = message.header.msg_id
    rekey = next((n for n in message.get(NotifyPayload) if n.type == Notify.REKEY_SA), None)
    old = None
    if rekey is not None:
        old = next((c for c in ike_sa.children if c.spi_out == rekey.spi), None)
        if old is None:
            raise ExchangeError(Notify.CHILD_SA_NOT_FOUND, f"the client rekeys CHILD_SA "
                                f"{rekey.spi.hex()}, which this box does not have",
                                fatal=False)
    if message.first(TsPayload) is None:
        raise ExchangeError(Notify.INVALID_SYNTAX, "CREATE_CHILD_SA without TSi/TSr",
                            fatal=False)
    if len(ike_sa.children) >= MAX_CHILDREN:
        raise ExchangeError(Notify.NO_ADDITIONAL_SAS, f"the client already has "
                            f"{len(ike_sa.children)} CHILD_SAs; no more are allowed",
                            fatal=False)

    # Perfect forward secrecy: a KE payload brings a fresh Diffie-Hellman exchange.
    ke = message.first(KePayload)
    nonce_r = r.random(NONCE_SIZE)
    ke_reply: list[Payload] = []
    shared = b""
    if ke is not None:
        shared, public = _pfs(r, ike_sa, sa, ke)
        ke_reply = [KePayload(ke.group, public)]

    child = negotiate_child(r, ike_sa, message, sa, (nonce.data, nonce_r), shared,
                            reqid=old.reqid if old else None)
    if ke is not None:
        # PFS: the group belongs to the child's proposal, in the answer and in rekeys.
        child.chosen = dataclasses.replace(child.chosen, dh=ke.group)
    if ke is None and any(t.type == TransformType.DH and t.id != Dh.NONE
                          for p in sa.proposals for t in p.transforms
                          if p.num == child.chosen.proposal_num):
        raise ExchangeError(Notify.INVALID_SYNTAX, "the client proposed PFS but sent no KE",
                            fatal=False)
    ike_sa.children.append(child)
    what = f"rekeying {old.spi_in.hex()}" if old else "a new CHILD_SA"
    r.trace(ike_sa, msg_id, EXCHANGE, "child", f"{what}: {describe_child(child)}; "
            f"installing it in the kernel")

    def finish(error: str | None) -> list[Payload]:
        if error is not None:
            ike_sa.children.remove(child)
            r.fail(ike_sa, "kernel", "CHILD_SA install", error)
            r.trace(ike_sa, msg_id, EXCHANGE, "child-failed", f"the kernel refused the "
                    f"CHILD_SA: {error}")
            return [NotifyPayload(Notify.NO_PROPOSAL_CHOSEN)]
        sa_reply, ts_i, ts_r = child_payloads(child)
        return [sa_reply, NoncePayload(nonce_r), *ke_reply, ts_i, ts_r]

    r.await_install(ike_sa, message.header, msg_id, child, finish)
    return None


def _pfs(r: Responder, ike_sa: IkeSa, sa: SaPayload, ke: KePayload) -> tuple[bytes, bytes]:
    acceptable = PROFILES[r.policy.profile][0].dh
    offered = [t.id for p in sa.proposals for t in p.transforms if t.type == TransformType.DH]
    if ke.group not in acceptable or ke.group not in offered:
        common = [g for g in acceptable if g in offered]
        if not common:
            raise ExchangeError(Notify.NO_PROPOSAL_CHOSEN, "no PFS group in common",
                                klass="proposal", fatal=False)
        raise ExchangeError(Notify.INVALID_KE_PAYLOAD, f"PFS with {Dh.name_of(ke.group)}; "
                            f"asking for {Dh.name_of(common[0])}", fatal=False,
                            data=struct.pack("!H", common[0]))
    group = crypto.get_dh_group(ke.group)
    private = group.generate()
    try:
        return private.exchange(ke.data), private.public
    except crypto.InvalidPublicKey:
        raise ExchangeError(Notify.INVALID_SYNTAX, "invalid PFS public value",
                            fatal=False) from None


def _rekey_ike_sa(r: Responder, ike_sa: IkeSa, message: Message, sa: SaPayload,
                  nonce: NoncePayload) -> list[Payload]:
    ke = message.first(KePayload)
    if ke is None:
        raise ExchangeError(Notify.INVALID_SYNTAX, "IKE SA rekey without KE", fatal=False)
    if ike_sa.pending is not None and ike_sa.pending.purpose in ("rekey-child",
                                                                 "delete-child"):
        # §2.25.2: not while the box's own CHILD_SA rekey is under way on this IKE SA.
        raise ExchangeError(Notify.TEMPORARY_FAILURE, "IKE SA rekey while the box "
                            "rekeys a CHILD_SA; the client will try again", fatal=False)
    suite = PROFILES[r.policy.profile][0]
    try:
        chosen = choose(sa.proposals, suite, Protocol.IKE, ke.group)
    except NoProposalChosen as exc:
        raise ExchangeError(Notify.NO_PROPOSAL_CHOSEN, f"IKE rekey: {exc}",
                            klass="proposal", fatal=False) from None
    if chosen.dh != ke.group:
        raise ExchangeError(Notify.INVALID_KE_PAYLOAD, "IKE rekey with another group",
                            fatal=False, data=struct.pack("!H", chosen.dh))
    if len(chosen.peer_spi) != 8:
        raise ExchangeError(Notify.INVALID_SYNTAX, "IKE rekey proposal SPI is not 8 bytes",
                            fatal=False)
    group = crypto.get_dh_group(chosen.dh)  # type: ignore[arg-type]
    private = group.generate()
    try:
        shared = private.exchange(ke.data)
    except crypto.InvalidPublicKey:
        raise ExchangeError(Notify.INVALID_SYNTAX, "invalid rekey public value",
                            fatal=False) from None

    assert ike_sa.keys is not None
    spi_r = r.random(8)
    while spi_r in r.sas or spi_r == bytes(8):
        spi_r = r.random(8)
    nonce_r = r.random(NONCE_SIZE)
    new_keys = _rekeyed_keys(ike_sa.keys, chosen, shared, nonce.data, nonce_r,
                             chosen.peer_spi, spi_r)
    new = dataclasses.replace(
        ike_sa, spi_i=chosen.peer_spi, spi_r=spi_r, chosen=chosen, keys=new_keys,
        nonce_i=nonce.data, nonce_r=nonce_r, next_msg_id=0, our_msg_id=0,
        last_response=None, pending=None, reassembly=None,
        children=list(ike_sa.children), install_waiter=None)
    r.sas[spi_r] = new
    # The old IKE SA hands everything over; its DELETE must not end the session.
    ike_sa.children = []
    ike_sa.lease = None
    ike_sa.established = None
    ike_sa.state = State.DELETING
    ike_sa.close_reason = "rekeyed"
    ike_sa.deadline = r.now + OLD_SA_GRACE
    r.trace(new, message.header.msg_id, EXCHANGE, "rekey-ike",
            f"IKE SA rekeyed to {new.name} with {chosen.describe()}")
    return [SaPayload((chosen.reply_proposal(Protocol.IKE, spi_r),)),
            NoncePayload(nonce_r), KePayload(chosen.dh, private.public)]  # type: ignore


def _rekeyed_keys(old: IkeKeys, chosen, shared: bytes, nonce_i: bytes, nonce_r: bytes,
                  spi_i: bytes, spi_r: bytes) -> IkeKeys:
    """§2.18: SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)."""
    from ..keys import derive_keys_from_skeyseed
    prf = crypto.get_prf(chosen.prf)
    skeyseed = old.prf(old.sk_d, shared + nonce_i + nonce_r)
    return derive_keys_from_skeyseed(prf, chosen, skeyseed, nonce_i, nonce_r, spi_i, spi_r)
