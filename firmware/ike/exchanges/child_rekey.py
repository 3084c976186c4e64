"""The box rekeys a CHILD_SA itself (RFC 7296 §1.3.3, §2.8) when the kernel reports
that its soft lifetime ran out and the client has not rekeyed it first; clients
usually do, after an hour, and the box's default is four. Here the box is the
initiator of the CREATE_CHILD_SA exchange:

    box    HDR, SK {N(REKEY_SA), SA, Ni, [KEi,] TSi, TSr}  -->
          <--  HDR, SK {SA, Nr, [KEr,] TSi, TSr}           client
    (the new pair goes into the kernel)
    box    HDR, SK {D(old SPI)}                             -->
          <--  HDR, SK {D(its old SPI)}                    client
    (the old pair leaves the kernel)

The proposal is the one the child already uses, with PFS exactly when it had it.
TSi is the box's side here, since the box initiates. At the hard lifetime the kernel
drops the SAs by itself; the box then tells the client with a DELETE.

Known gap: simultaneous rekeys of one child (§2.8.1) are settled simply. The client's
rekey is answered as usual; if the box's own exchange then finds its child already
replaced, the box deletes the SA it had just negotiated instead of comparing nonces.
A client that applies the nonce rule the other way round can lose both new SAs and
reconnect. The four-hour default makes such a collision unlikely.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from .. import crypto
from ..constants import Dh, ExchangeType, Notify, PayloadType, Protocol
from ..ike_sa import ChildSa, IkeSa, PendingRequest
from ..keys import ChildKeys, child_keymat
from ..message import (
    DeletePayload, KePayload, NoncePayload, NotifyPayload, Payload, SaPayload, TsPayload,
)

if TYPE_CHECKING:
    from ..responder import Responder

EXCHANGE = "CREATE_CHILD_SA"
NONCE_SIZE = 32
RETRY_AFTER_S = 30.0


@dataclasses.dataclass
class Rekey:
    child: ChildSa
    spi_in: bytes
    nonce_i: bytes
    dh: Any  # the private DH value when the child uses PFS, else None


def superseded(ike_sa: IkeSa, child: ChildSa) -> bool:
    """A newer child of the same reqid exists: the client rekeyed this one already."""
    return any(c is not child and c.reqid == child.reqid and c.created >= child.created
               for c in ike_sa.children)


def next_due(r: Responder, ike_sa: IkeSa) -> None:
    """Start one waiting box-initiated exchange (the request slot is free)."""
    if ike_sa.deletes_due:
        spis = tuple(ike_sa.deletes_due)
        ike_sa.deletes_due.clear()
        r.send_request(ike_sa, ExchangeType.INFORMATIONAL, [DeletePayload(Protocol.ESP, spis)],
                       "delete-child")
        return
    for child in ike_sa.children:
        if child.delete_due:
            child.delete_due = False
            _send_delete(r, ike_sa, child)
            return
    for child in ike_sa.children:
        if child.rekey_due and child.installed and r.now >= child.rekey_retry_at:
            child.rekey_due = False
            if not superseded(ike_sa, child):
                start(r, ike_sa, child)
                return


def start(r: Responder, ike_sa: IkeSa, child: ChildSa) -> None:
    spi_in = r.new_spi_in()
    nonce_i = r.random(NONCE_SIZE)
    payloads: list[Payload] = [
        NotifyPayload(Notify.REKEY_SA, b"", Protocol.ESP, child.spi_in),
        SaPayload((child.chosen.reply_proposal(Protocol.ESP, spi_in),)),
        NoncePayload(nonce_i),
    ]
    dh = None
    if child.chosen.dh not in (None, Dh.NONE):
        dh = crypto.get_dh_group(child.chosen.dh).generate()
        payloads.append(KePayload(child.chosen.dh, dh.public))
    payloads += [TsPayload(PayloadType.TSi, child.ts_r), TsPayload(PayloadType.TSr, child.ts_i)]
    child.rekeying = True
    r.trace(ike_sa, ike_sa.our_msg_id, EXCHANGE, "rekey-child", f"CHILD_SA "
            f"{child.spi_in.hex()} reached its lifetime and the client has not rekeyed "
            f"it: the box rekeys it")
    r.send_request(ike_sa, ExchangeType.CREATE_CHILD_SA, payloads, "rekey-child",
                   context=Rekey(child, spi_in, nonce_i, dh))


def response(r: Responder, ike_sa: IkeSa, pending: PendingRequest,
             payloads: list[Payload]) -> None:
    ctx: Rekey = pending.context
    old = ctx.child
    old.rekeying = False
    errors = [p for p in payloads if isinstance(p, NotifyPayload) and p.type < 16384]
    if errors:
        name = Notify.name_of(errors[0].type)
        if errors[0].type == Notify.TEMPORARY_FAILURE:
            old.rekey_due, old.rekey_retry_at = True, r.now + RETRY_AFTER_S
        r.release_spi(ctx.spi_in)
        r.trace(ike_sa, pending.msg_id, EXCHANGE, "rekey-child", f"the client refused to "
                f"rekey CHILD_SA {old.spi_in.hex()} ({name})"
                + ("; trying again shortly" if old.rekey_due else
                   "; it ends at its hard lifetime"))
        return

    child = _new_child(r, ike_sa, ctx, payloads)
    if child is None:
        r.release_spi(ctx.spi_in)
        r.trace(ike_sa, pending.msg_id, EXCHANGE, "rekey-child", "the client's answer to "
                "the rekey is unusable (no SA, nonce or KE); the CHILD_SA ends at its "
                "hard lifetime")
        return
    if (old not in ike_sa.children and not old.expired) or superseded(ike_sa, old):
        # The client rekeyed or deleted the child meanwhile, or rekeyed the IKE SA (the
        # child lives on the new one): this pair is not needed.
        r.trace(ike_sa, pending.msg_id, EXCHANGE, "rekey-child", "the client changed "
                "the CHILD_SA or the IKE SA meanwhile; dropping the box's new pair")
        r.release_spi(child.spi_in)
        _send_delete(r, ike_sa, child, installed=False)
        if old.installed and old not in ike_sa.children:
            # Still in use on the IKE SA that replaced this one: try again there.
            old.rekey_due, old.rekey_retry_at = True, r.now + RETRY_AFTER_S
        return
    ike_sa.children.append(child)
    r.install_child(ike_sa, child)


def _new_child(r: Responder, ike_sa: IkeSa, ctx: Rekey,
               payloads: list[Payload]) -> ChildSa | None:
    sa = next((p for p in payloads if isinstance(p, SaPayload)), None)
    nonce = next((p for p in payloads if isinstance(p, NoncePayload)), None)
    ke = next((p for p in payloads if isinstance(p, KePayload)), None)
    if sa is None or nonce is None or len(sa.proposals) != 1 or \
            len(sa.proposals[0].spi) != 4 or (ctx.dh is not None and ke is None):
        return None
    shared = b""
    if ctx.dh is not None:
        try:
            shared = ctx.dh.exchange(ke.data)  # type: ignore[union-attr]
        except crypto.InvalidPublicKey:
            return None
    old = ctx.child
    keys = ike_sa.keys
    assert keys is not None
    keymat = child_keymat(keys.prf, keys.sk_d, old.chosen, ctx.nonce_i, nonce.data, shared)
    # KEYMAT's first keys are for what the exchange's initiator sends: the box, here.
    # ChildSa keeps i->r for what the client sends, whoever started the exchange.
    own_view = ChildKeys(encr_i=keymat.encr_r, integ_i=keymat.integ_r,
                         encr_r=keymat.encr_i, integ_r=keymat.integ_i)
    spi_out = sa.proposals[0].spi
    soft, hard = r.child_lifetimes()
    return ChildSa(reqid=old.reqid, spi_in=ctx.spi_in, spi_out=spi_out,
                   chosen=dataclasses.replace(old.chosen, peer_spi=spi_out),
                   keys=own_view, ts_i=old.ts_i, ts_r=old.ts_r,
                   encap=(ike_sa.local[1], ike_sa.remote[1]) if ike_sa.nat else None,
                   created=r.now, soft_lifetime_s=soft, hard_lifetime_s=hard,
                   rekey_of=old)


def installed(r: Responder, ike_sa: IkeSa, child: ChildSa, error: str | None) -> None:
    """The kernel took (or refused) the pair the box negotiated; the old one goes."""
    old = child.rekey_of
    if error is not None:
        ike_sa.children.remove(child)
        r.release_spi(child.spi_in)
        r.fail(ike_sa, "kernel", "CHILD_SA rekey install", error)
        r.trace(ike_sa, None, EXCHANGE, "rekey-child", f"the kernel refused the rekeyed "
                f"CHILD_SA: {error}; the old one goes on until its hard lifetime")
        _delete_when_free(r, ike_sa, child, installed=False)
        return
    child.installed = True
    child.rekey_of = None  # no chain of predecessors (and their keys) kept alive
    r.trace(ike_sa, None, EXCHANGE, "rekey-child", f"CHILD_SA rekeyed: "
            f"{child.spi_in.hex()}(in)/{child.spi_out.hex()}(out) replaces "
            f"{old.spi_in.hex() if old else '?'}; closing the old one")
    if old is not None and old in ike_sa.children:
        _delete_when_free(r, ike_sa, old)


def _delete_when_free(r: Responder, ike_sa: IkeSa, child: ChildSa,
                      installed: bool = True) -> None:
    if ike_sa.pending is None:
        _send_delete(r, ike_sa, child, installed)
    elif installed:
        child.delete_due = True
    else:
        # Never installed here, and the request slot is busy: the client's half goes
        # at its own lifetime.
        r.trace(ike_sa, None, EXCHANGE, "rekey-child", f"could not tell the client to "
                f"drop CHILD_SA {child.spi_in.hex()} now", level=2)


def _send_delete(r: Responder, ike_sa: IkeSa, child: ChildSa, installed: bool = True) -> None:
    r.send_request(ike_sa, ExchangeType.INFORMATIONAL,
                   [DeletePayload(Protocol.ESP, (child.spi_in,))], "delete-child",
                   context=child if installed else None)


def delete_answered(r: Responder, ike_sa: IkeSa, pending: PendingRequest) -> None:
    child = pending.context
    if child is not None and child in ike_sa.children:
        ike_sa.children.remove(child)
        r.drop_child(ike_sa, child)
        r.trace(ike_sa, pending.msg_id, "INFORMATIONAL", "delete-child", f"the old "
                f"CHILD_SA {child.spi_in.hex()} is closed on both sides")


def expired(r: Responder, ike_sa: IkeSa, child: ChildSa) -> None:
    """Hard lifetime: the kernel has dropped the pair already. The client is told as
    soon as the request slot is free. A rekey of it still under way may land and
    replace it."""
    ike_sa.children.remove(child)
    child.expired = True
    r.drop_child(ike_sa, child)
    r.trace(ike_sa, None, EXCHANGE, "expired", f"CHILD_SA {child.spi_in.hex()} reached "
            f"its hard lifetime without a rekey; the kernel removed it")
    ike_sa.deletes_due.append(child.spi_in)
