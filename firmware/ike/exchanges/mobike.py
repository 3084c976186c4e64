"""MOBIKE (RFC 4555), the responder's part: a client that changes networks (Wi-Fi to
mobile data, a new hotspot) moves its IKE SA and CHILD_SAs with an INFORMATIONAL
request carrying UPDATE_SA_ADDRESSES, instead of connecting again.

Once MOBIKE is agreed, no other IKE request moves anything: requests from another path
(the client's path tests, §3.8) are answered where they came from, with the NAT
detection hashes of that path, so the client can tell whether its NAT mapping changed
and move the SA itself (§3.10). ESP that the kernel reports from a new NAT mapping is
still followed (Responder.esp_moved), except for a few seconds after a move. The box
has one address, so it never moves itself, and it runs no return routability check
before moving the children (§3.5 makes it optional; a known gap: an authenticated
client could point its traffic at an address it does not own).
"""

from __future__ import annotations

import ipaddress
import struct
from typing import TYPE_CHECKING

from ..constants import Notify
from ..ike_sa import IkeSa
from ..message import Message, NotifyPayload, Payload
from ..nat import nat_hash

if TYPE_CHECKING:
    from ..actions import Endpoint
    from ..responder import Responder

EXCHANGE = "INFORMATIONAL"


def answer_notifies(r: Responder, ike_sa: IkeSa, message: Message) -> list[Payload]:
    """What every INFORMATIONAL answer of a MOBIKE SA carries: the update's result,
    the NAT detection hashes of the request's path, COOKIE2 echoed (§3.6)."""
    notes = message.notifies()
    reply: list[Payload] = []
    if Notify.UPDATE_SA_ADDRESSES in notes:
        refusal = update_addresses(r, ike_sa, message)
        if refusal is not None:
            return [refusal] + _cookie2(notes)
    if ike_sa.mobike and (Notify.NAT_DETECTION_SOURCE_IP in notes or
                          Notify.NAT_DETECTION_DESTINATION_IP in notes):
        remote, local = r.reply_to or (ike_sa.remote, ike_sa.local)
        spis = (ike_sa.spi_i, ike_sa.spi_r)
        reply += [NotifyPayload(Notify.NAT_DETECTION_SOURCE_IP, nat_hash(*spis, *local)),
                  NotifyPayload(Notify.NAT_DETECTION_DESTINATION_IP,
                                nat_hash(*spis, *remote))]
    return reply + _cookie2(notes)


def _cookie2(notes: dict[int, NotifyPayload]) -> list[Payload]:
    cookie2 = notes.get(Notify.COOKIE2)
    return [NotifyPayload(Notify.COOKIE2, cookie2.data)] if cookie2 is not None else []


def update_addresses(r: Responder, ike_sa: IkeSa, message: Message) -> Payload | None:
    """Move the SA to the request's path; a refusal notify, or None when done."""
    msg_id = message.header.msg_id
    if not ike_sa.mobike:
        r.trace(ike_sa, msg_id, EXCHANGE, "mobike", "the client sent UPDATE_SA_ADDRESSES "
                "without having agreed MOBIKE; ignored", level=2)
        return None
    remote, local = r.reply_to or (ike_sa.remote, ike_sa.local)

    no_nats = message.notifies().get(Notify.NO_NATS_ALLOWED)
    if no_nats is not None and no_nats.data != _addresses_seen(remote, local):
        # §3.9: the client forbids NAT on this path, and the addresses were changed.
        r.trace(ike_sa, msg_id, EXCHANGE, "mobike", f"the client asked to move to "
                f"{_text(remote)} without NAT, but a NAT changed its addresses; refused")
        return NotifyPayload(Notify.UNEXPECTED_NAT_DETECTED)

    sources = [n.data for n in message.get(NotifyPayload)
               if n.type == Notify.NAT_DETECTION_SOURCE_IP]
    dest = message.notifies().get(Notify.NAT_DETECTION_DESTINATION_IP)
    spis = (ike_sa.spi_i, ike_sa.spi_r)
    old_local, old_remote = ike_sa.local, ike_sa.remote
    ike_sa.remote, ike_sa.local = remote, local
    ike_sa.mobike_moved_at = r.now
    # §3.5: the hashes cover both SPIs now. A client that sends none found no NAT.
    ike_sa.peer_behind_nat = bool(sources) and nat_hash(*spis, *remote) not in sources
    ike_sa.box_behind_nat = dest is not None and dest.data != nat_hash(*spis, *local)
    where = "behind NAT" if ike_sa.peer_behind_nat else \
        "with this box behind NAT" if ike_sa.box_behind_nat else "without NAT"
    r.trace(ike_sa, msg_id, EXCHANGE, "mobike", f"the client moved its session from "
            f"{_text(old_remote)} to {ike_sa.peer} ({where}); its tunnels follow")

    if ike_sa.nat and local[1] == 500:
        # ESP-in-UDP needs the NAT-T port; a MOBIKE client should be there already.
        r.trace(ike_sa, msg_id, EXCHANGE, "mobike", "NAT on the new path, but the client "
                "talks on the IKE port: its tunnels stay where they are", level=2)
        return None
    want = (local[1], remote[1]) if ike_sa.nat else None
    for child in ike_sa.children:
        old_where = child.where or (old_local, old_remote)
        if child.installed and (old_where, child.encap) != ((local, remote), want):
            old_encap, child.encap = child.encap, want
            r.move_child(ike_sa, child, old_where, old_encap)
    return None


def _addresses_seen(remote: Endpoint, local: Endpoint) -> bytes:
    """NO_NATS_ALLOWED's data for the addresses as received: source and destination
    address, then source and destination port (§3.9)."""
    return (ipaddress.ip_address(remote[0]).packed + ipaddress.ip_address(local[0]).packed
            + struct.pack("!HH", remote[1], local[1]))


def _text(endpoint: Endpoint) -> str:
    host, port = endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
