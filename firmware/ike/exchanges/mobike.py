"""MOBIKE (RFC 4555), the responder's part: a client that changes networks (Wi-Fi to
mobile data, a new hotspot) moves its IKE SA and CHILD_SAs with an INFORMATIONAL
request carrying UPDATE_SA_ADDRESSES, instead of connecting again.

The request itself, authenticated and inside the message-ID window, already moved the
IKE SA to its source (Responder._float). Here the NAT situation is measured again for
the new path, the children's UDP encapsulation follows it, and the answer carries the
box's NAT detection hashes. The box has one address, so it never moves itself, and it
does not run a return routability check before moving the children (RFC 4555 §3.5
allows that; a known gap: a client could move its traffic to an address it does not
own, though only after authenticating).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..constants import Notify
from ..ike_sa import IkeSa
from ..message import Message, NotifyPayload, Payload
from ..nat import nat_hash

if TYPE_CHECKING:
    from ..responder import Responder

EXCHANGE = "INFORMATIONAL"


def update_addresses(r: Responder, ike_sa: IkeSa, message: Message) -> list[Payload]:
    msg_id = message.header.msg_id
    if not ike_sa.mobike:
        r.trace(ike_sa, msg_id, EXCHANGE, "mobike", "the client sent UPDATE_SA_ADDRESSES "
                "without having agreed MOBIKE; ignored", level=2)
        return []

    sources = [n.data for n in message.get(NotifyPayload)
               if n.type == Notify.NAT_DETECTION_SOURCE_IP]
    dest = message.notifies().get(Notify.NAT_DETECTION_DESTINATION_IP)
    spis = (ike_sa.spi_i, ike_sa.spi_r)
    # §3.5: the hashes now cover both SPIs. A client that sends none found no NAT.
    ike_sa.peer_behind_nat = bool(sources) and \
        nat_hash(*spis, *ike_sa.remote) not in sources
    ike_sa.box_behind_nat = dest is not None and dest.data != nat_hash(*spis, *ike_sa.local)
    where = "behind NAT" if ike_sa.peer_behind_nat else \
        "with this box behind NAT" if ike_sa.box_behind_nat else "without NAT"
    r.trace(ike_sa, msg_id, EXCHANGE, "mobike", f"the client moved its session to "
            f"{ike_sa.peer} ({where}); its tunnels follow")

    if ike_sa.nat and ike_sa.local[1] == 500:
        # ESP-in-UDP needs the NAT-T port; a MOBIKE client should have moved there.
        r.trace(ike_sa, msg_id, EXCHANGE, "mobike", "NAT on the new path, but the client "
                "still talks on the IKE port: its tunnels keep their encapsulation",
                level=2)
    else:
        want = (ike_sa.local[1], ike_sa.remote[1]) if ike_sa.nat else None
        for child in ike_sa.children:
            if child.installed and (child.encap != want or
                                    child.where != (ike_sa.local, ike_sa.remote)):
                old_where = child.where or (ike_sa.local, ike_sa.remote)
                old, child.encap = child.encap, want
                r.move_child(ike_sa, child, old_where, old)

    if not sources and dest is None:
        return []
    return [NotifyPayload(Notify.NAT_DETECTION_SOURCE_IP, nat_hash(*spis, *ike_sa.local)),
            NotifyPayload(Notify.NAT_DETECTION_DESTINATION_IP,
                          nat_hash(*spis, *ike_sa.remote))]
