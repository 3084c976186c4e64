"""INFORMATIONAL (RFC 7296 §1.4): DELETE of the IKE SA or of children, liveness checks,
MOBIKE address updates (mobike.py), and the box's own DELETE when an operator
disconnects a session."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..constants import ExchangeType, Notify, Protocol
from ..ike_sa import IkeSa, PendingRequest, State
from ..message import DeletePayload, Message, NotifyPayload, Payload
from . import mobike

if TYPE_CHECKING:
    from ..responder import Responder

EXCHANGE = "INFORMATIONAL"


def handle(r: Responder, ike_sa: IkeSa, message: Message) -> list[Payload]:
    msg_id = message.header.msg_id
    deletes = message.get(DeletePayload)
    if any(d.protocol == Protocol.IKE for d in deletes):
        r.trace(ike_sa, msg_id, EXCHANGE, "delete", "the client closed its IKE SA")
        r.remove(ike_sa, "the client closed the session")
        return []

    reply: list[Payload] = []
    for delete in deletes:
        if delete.protocol != Protocol.ESP:
            continue
        ours = []
        for spi in delete.spis:
            child = next((c for c in ike_sa.children if c.spi_out == spi), None)
            if child is None:
                continue
            ours.append(child.spi_in)
            ike_sa.children.remove(child)
            r.drop_child(ike_sa, child)
            r.trace(ike_sa, msg_id, EXCHANGE, "delete-child",
                    f"the client closed CHILD_SA {child.spi_in.hex()}/{spi.hex()}")
        if ours:
            reply.append(DeletePayload(Protocol.ESP, tuple(ours)))

    reply += mobike.answer_notifies(r, ike_sa, message)

    for note in message.get(NotifyPayload):
        if note.type < 16384:
            r.trace(ike_sa, msg_id, EXCHANGE, "notify", f"the client reports {note.name}")
            if ike_sa.state in (State.EAP, State.AUTH_FINAL):
                known = getattr(ike_sa.eap, "pending_failure", None)
                reason = known or f"the client gave up during authentication ({note.name})"
                r.fail(ike_sa, "auth" if note.type == Notify.AUTHENTICATION_FAILED
                       else "protocol", "IKE_AUTH", reason)
                r.remove(ike_sa, reason)
                return []
    if not message.payloads:
        r.trace(ike_sa, msg_id, EXCHANGE, "liveness", "answered the client's liveness "
                "check", level=2)
    return reply


def send_delete(r: Responder, ike_sa: IkeSa, reason: str) -> None:
    """Disconnect: free kernel state and the lease now, then tell the client."""
    if ike_sa.state in (State.DEAD, State.DELETING):
        return
    if ike_sa.keys is None or ike_sa.state == State.HALF_OPEN or ike_sa.pending is not None:
        r.remove(ike_sa, reason)
        return
    r.trace(ike_sa, None, EXCHANGE, "disconnect", f"closing the session: {reason}")
    for child in ike_sa.children:
        r.drop_child(ike_sa, child)
    ike_sa.state = State.DELETING
    ike_sa.close_reason = reason
    r.send_request(ike_sa, ExchangeType.INFORMATIONAL, [DeletePayload(Protocol.IKE)],
                   "delete")


def send_liveness(r: Responder, ike_sa: IkeSa) -> None:
    r.trace(ike_sa, None, EXCHANGE, "liveness", "no word from the client for "
            f"{r.policy.dpd_interval:g} s; checking it is still there", level=2)
    r.send_request(ike_sa, ExchangeType.INFORMATIONAL, [], "liveness")


def response_received(r: Responder, ike_sa: IkeSa, pending: PendingRequest,
                      payloads: list[Payload]) -> None:
    from . import child_rekey
    if pending.purpose == "rekey-child":
        child_rekey.response(r, ike_sa, pending, payloads)
    elif pending.purpose == "delete-child":
        child_rekey.delete_answered(r, ike_sa, pending)
    elif pending.purpose == "delete":
        r.remove(ike_sa, ike_sa.close_reason or "closed by the box")
    elif pending.purpose == "liveness":
        r.trace(ike_sa, pending.msg_id, EXCHANGE, "liveness", "the client answered its "
                "liveness check", level=2)


def peer_silent(r: Responder, ike_sa: IkeSa, pending: PendingRequest) -> None:
    if pending.purpose == "delete":
        r.remove(ike_sa, ike_sa.close_reason or "closed by the box")
        return
    reason = "the client stopped answering (dead peer detection)"
    r.trace(ike_sa, pending.msg_id, EXCHANGE, "dead-peer", reason)
    r.remove(ike_sa, reason)
