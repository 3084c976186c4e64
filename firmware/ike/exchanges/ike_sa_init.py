"""IKE_SA_INIT (RFC 7296 §1.2): proposal, key exchange, nonces, NAT detection, cookies,
fragmentation support (RFC 7383) and signature hashes (RFC 7427).

Refusals (NO_PROPOSAL_CHOSEN, INVALID_KE_PAYLOAD, COOKIE) are answered without
keeping any state, so a flood of first messages costs the box no memory.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import TYPE_CHECKING

from .. import crypto
from ..actions import Endpoint, NegotiationStarted
from ..constants import Dh, HashAlg, Notify, Protocol
from ..ike_sa import IkeSa
from ..keys import derive_ike_keys
from ..message import (
    Header, KePayload, Message, NoncePayload, NotifyPayload, ParseError, SaPayload,
    UnsupportedCritical, parse_message,
)
from ..nat import nat_hash
from ..proposals import PROFILES, NoProposalChosen, choose

if TYPE_CHECKING:
    from ..responder import Responder

NONCE_SIZE = 32
STEP = "IKE_SA_INIT"


def handle(r: Responder, data: bytes, remote: Endpoint, local: Endpoint) -> None:
    header = Header.parse(data)
    peer = f"{remote[0]}:{remote[1]}"
    try:
        message = parse_message(data)
    except UnsupportedCritical as exc:
        r.send_unprotected(header, [NotifyPayload(Notify.UNSUPPORTED_CRITICAL_PAYLOAD,
                                                  bytes([exc.payload_type]))], remote, local)
        r.trace(None, 0, STEP, "reject", f"{peer} sent an unknown critical payload "
                f"{exc.payload_type}")
        return
    except ParseError as exc:
        # An unauthenticated malformed first message is dropped: answering would let
        # anyone make the box reflect traffic (§2.21.1).
        r.trace(None, 0, STEP, "drop", f"dropped a malformed IKE_SA_INIT from {peer}: {exc}")
        return

    existing = _find_half_open(r, header, remote)
    if existing is not None:
        if existing.init_request == data:
            r.trace(existing, 0, STEP, "retransmit", "the client repeated IKE_SA_INIT; "
                    "sending the same response again", level=2)
            r.emit_send(existing, (existing.init_response,))
            return
        r.remove(existing, "the client started over with a new IKE_SA_INIT")

    sa = message.first(SaPayload)
    ke = message.first(KePayload)
    nonce = message.first(NoncePayload)
    if sa is None or ke is None or nonce is None:
        missing = ", ".join(n for n, p in (("SA", sa), ("KE", ke), ("Ni", nonce)) if p is None)
        r.send_unprotected(header, [NotifyPayload(Notify.INVALID_SYNTAX)], remote, local)
        r.trace(None, 0, STEP, "reject", f"{peer} sent IKE_SA_INIT without {missing}")
        return
    notifies = message.notifies()

    if not _cookie_ok(r, message, notifies, remote, local):
        return

    ike_suite = PROFILES[r.policy.profile][0]
    try:
        chosen = choose(sa.proposals, ike_suite, Protocol.IKE, ke.group)
    except NoProposalChosen as exc:
        r.send_unprotected(header, [NotifyPayload(Notify.NO_PROPOSAL_CHOSEN)], remote, local)
        r.trace(None, 0, STEP, "no-proposal", f"{peer}: {exc}")
        r.fail(None, "proposal", STEP, f"{peer}: {exc}")
        return
    if chosen.dh != ke.group:
        r.send_unprotected(header, [NotifyPayload(Notify.INVALID_KE_PAYLOAD,
                                                  struct.pack("!H", chosen.dh))], remote, local)
        r.trace(None, 0, STEP, "invalid-ke",
                f"{peer} sent a key exchange for {Dh.name_of(ke.group)}; asking it to use "
                f"{Dh.name_of(chosen.dh)} (INVALID_KE_PAYLOAD)")  # type: ignore[arg-type]
        return

    group = crypto.get_dh_group(chosen.dh)  # type: ignore[arg-type]
    if len(ke.data) != group.public_size:
        r.send_unprotected(header, [NotifyPayload(Notify.INVALID_SYNTAX)], remote, local)
        r.trace(None, 0, STEP, "reject", f"{peer} sent a {len(ke.data)}-byte key exchange "
                f"value; {group.name} needs {group.public_size}")
        return
    private = group.generate()
    try:
        shared = private.exchange(ke.data)
    except crypto.InvalidPublicKey:
        r.send_unprotected(header, [NotifyPayload(Notify.INVALID_SYNTAX)], remote, local)
        r.trace(None, 0, STEP, "reject", f"{peer} sent an invalid {group.name} public value")
        return

    spi_r = _new_spi(r)
    ike_sa = IkeSa(spi_i=header.spi_i, spi_r=spi_r, remote=remote, local=local,
                   created=r.now, last_heard=r.now)
    ike_sa.chosen = chosen
    ike_sa.nonce_i = nonce.data
    ike_sa.nonce_r = r.random(NONCE_SIZE)
    ike_sa.init_request = data
    ike_sa.keys = derive_ike_keys(chosen, shared, ike_sa.nonce_i, ike_sa.nonce_r,
                                  ike_sa.spi_i, ike_sa.spi_r)
    ike_sa.deadline = r.now + r.policy.half_open_timeout
    ike_sa.fragmentation = Notify.IKEV2_FRAGMENTATION_SUPPORTED in notifies
    ike_sa.peer_hashes = _hash_algorithms(notifies)
    _detect_nat(r, ike_sa, message)

    payloads = [
        SaPayload((chosen.reply_proposal(Protocol.IKE, b""),)),
        KePayload(chosen.dh, private.public),  # type: ignore[arg-type]
        NoncePayload(ike_sa.nonce_r),
        NotifyPayload(Notify.NAT_DETECTION_SOURCE_IP,
                      nat_hash(ike_sa.spi_i, spi_r, local[0], local[1])),
        NotifyPayload(Notify.NAT_DETECTION_DESTINATION_IP,
                      nat_hash(ike_sa.spi_i, spi_r, remote[0], remote[1])),
    ]
    if ike_sa.fragmentation:
        payloads.append(NotifyPayload(Notify.IKEV2_FRAGMENTATION_SUPPORTED))
    if ike_sa.peer_hashes:
        payloads.append(NotifyPayload(Notify.SIGNATURE_HASH_ALGORITHMS, b"".join(
            struct.pack("!H", h) for h in (HashAlg.SHA2_256, HashAlg.SHA2_384,
                                           HashAlg.SHA2_512))))
    ike_sa.init_response = r.send_unprotected(header, payloads, remote, local, spi_r)
    ike_sa.last_response = None
    r.sas[spi_r] = ike_sa
    r.half_open[(ike_sa.spi_i, remote[0])] = spi_r
    r.emit(NegotiationStarted(ike_sa.name, ike_sa.peer))
    r.trace(ike_sa, 0, STEP, "accept", f"new IKE SA from {ike_sa.peer} with "
            f"{chosen.describe()}; waiting up to {r.policy.half_open_timeout:g} s for IKE_AUTH")


def _find_half_open(r: Responder, header: Header, remote: Endpoint) -> IkeSa | None:
    """An IKE SA this client started with the same SPIi and has not finished."""
    spi_r = r.half_open.get((header.spi_i, remote[0]))
    ike_sa = r.sas.get(spi_r) if spi_r else None
    if ike_sa is not None and ike_sa.established is None:
        return ike_sa
    return None


def _new_spi(r: Responder) -> bytes:
    while True:
        spi = r.random(8)
        if spi != bytes(8) and spi not in r.sas:
            return spi


def _detect_nat(r: Responder, ike_sa: IkeSa, message: Message) -> None:
    sources = [n.data for n in message.get(NotifyPayload)
               if n.type == Notify.NAT_DETECTION_SOURCE_IP]
    dest = message.notifies().get(Notify.NAT_DETECTION_DESTINATION_IP)
    if not sources and dest is None:
        r.trace(ike_sa, 0, STEP, "nat", "the client sent no NAT detection; assuming no NAT",
                level=2)
        return
    zero = bytes(8)
    seen_source = nat_hash(ike_sa.spi_i, zero, ike_sa.remote[0], ike_sa.remote[1])
    ike_sa.peer_behind_nat = bool(sources) and seen_source not in sources
    if dest is not None:
        seen_dest = nat_hash(ike_sa.spi_i, zero, ike_sa.local[0], ike_sa.local[1])
        ike_sa.box_behind_nat = dest.data != seen_dest
    if ike_sa.peer_behind_nat:
        text = "the client is behind NAT; IKE moves to port 4500 and ESP goes inside UDP"
    elif ike_sa.box_behind_nat:
        text = "this box is behind NAT; IKE moves to port 4500 and ESP goes inside UDP"
    else:
        text = "no NAT between the client and this box"
    r.trace(ike_sa, 0, STEP, "nat", text)


def _hash_algorithms(notifies: dict[int, NotifyPayload]) -> tuple[int, ...]:
    note = notifies.get(Notify.SIGNATURE_HASH_ALGORITHMS)
    if note is None:
        return ()
    data = note.data[:len(note.data) - len(note.data) % 2]
    return tuple(struct.unpack(f"!{len(data) // 2}H", data))


def _cookie_ok(r: Responder, message: Message, notifies: dict[int, NotifyPayload],
               remote: Endpoint, local: Endpoint) -> bool:
    """Under load (many half-open SAs) the box asks for a cookie first (§2.6)."""
    half_open = r.counts()["half_open"]
    if half_open < r.policy.cookie_threshold:
        return True
    header = message.header
    nonce = message.first(NoncePayload)
    expected = _cookie(r, nonce.data, remote[0], header.spi_i)
    got = notifies.get(Notify.COOKIE)
    if got is not None and hmac.compare_digest(got.data, expected):
        return True
    r.send_unprotected(header, [NotifyPayload(Notify.COOKIE, expected)], remote, local)
    r.trace(None, 0, STEP, "cookie", f"{half_open} IKE SAs are half-open; asking "
            f"{remote[0]} to prove its address with a cookie", level=2)
    return False


def _cookie(r: Responder, nonce_i: bytes, address: str, spi_i: bytes) -> bytes:
    digest = hashlib.sha256(nonce_i + address.encode() + spi_i + r.cookie_secret).digest()
    return b"\x00\x00\x00\x00" + digest

