"""Decoded payloads for the level-3 trace, with every secret left out.

AUTH data, EAP contents past the method type, and key material never appear; KE and
nonces show only their length (they are public, but long and of no use to read).
"""

from __future__ import annotations

from .constants import AuthMethod, CertEncoding, Dh, Notify, PayloadType, Protocol
from .message import (
    AuthPayload, CertPayload, CertReqPayload, CpPayload, DeletePayload, EapPayload,
    IdPayload, KePayload, NoncePayload, NotifyPayload, Payload, SaPayload, TsPayload,
    UnknownPayload, VendorPayload, payload_type,
)

EAP_CODES = {1: "Request", 2: "Response", 3: "Success", 4: "Failure"}
EAP_TYPES = {1: "Identity", 3: "Nak", 4: "MD5", 26: "MSCHAPv2", 254: "Expanded"}


def describe_payload(p: Payload) -> str:
    name = PayloadType.name_of(payload_type(p))
    if isinstance(p, SaPayload):
        return "SA[" + " | ".join(
            f"#{x.num} {Protocol.name_of(x.protocol)} {x.describe()}" for x in p.proposals) + "]"
    if isinstance(p, KePayload):
        return f"KE[{Dh.name_of(p.group)}, {len(p.data)} bytes]"
    if isinstance(p, NoncePayload):
        return f"N[{len(p.data)} bytes]"
    if isinstance(p, IdPayload):
        return f"{name}[{p.describe()}]"
    if isinstance(p, AuthPayload):
        return f"AUTH[{AuthMethod.name_of(p.method)}, {len(p.data)} bytes]"
    if isinstance(p, (CertPayload, CertReqPayload)):
        return f"{name}[{CertEncoding.name_of(p.encoding)}, {len(p.data)} bytes]"
    if isinstance(p, NotifyPayload):
        return f"N({p.name})" + (f"[{len(p.data)} bytes]" if p.data else "")
    if isinstance(p, DeletePayload):
        spis = ",".join(s.hex() for s in p.spis)
        return f"D[{Protocol.name_of(p.protocol)}{' ' + spis if spis else ''}]"
    if isinstance(p, TsPayload):
        return f"{name}[" + ", ".join(ts.describe() for ts in p.selectors) + "]"
    if isinstance(p, CpPayload):
        return f"CP[{p.describe()}]"
    if isinstance(p, EapPayload):
        return f"EAP[{describe_eap(p.data)}]"
    if isinstance(p, VendorPayload):
        return f"V[{p.data[:16].hex()}]"
    if isinstance(p, UnknownPayload):
        return f"{name}[{len(p.data)} bytes{', critical' if p.critical else ''}]"
    return name


def describe_eap(data: bytes) -> str:
    if len(data) < 4:
        return "malformed"
    code, ident = data[0], data[1]
    text = f"{EAP_CODES.get(code, code)} id {ident}"
    if code in (1, 2) and len(data) > 4:
        text += f" {EAP_TYPES.get(data[4], data[4])}"
    return text


def describe_payloads(payloads: list[Payload] | tuple[Payload, ...]) -> list[str]:
    return [describe_payload(p) for p in payloads]


__all__ = ["describe_payload", "describe_payloads", "describe_eap", "Notify"]
