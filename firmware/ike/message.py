"""IKEv2 message codec: the header and every payload of RFC 7296 §3.

Parsing never reads past a declared length. A payload type we do not know is kept as
an UnknownPayload when its critical bit is clear and raises UnsupportedCritical when it
is set (§2.5). Every other defect raises ParseError, which the responder answers with
INVALID_SYNTAX or drops, as §2.21 asks.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import ClassVar

from .constants import (
    CfgAttr, CfgType, ExchangeType, Flags, IdType, Notify, PayloadType, Protocol,
    TsType, KEY_LENGTH_ATTRIBUTE,
)

HEADER_LEN = 28
GENERIC_LEN = 4
CRITICAL = 0x80


class ParseError(Exception):
    """The bytes are not a well-formed IKEv2 message."""

    notify = Notify.INVALID_SYNTAX


class UnsupportedCritical(ParseError):
    def __init__(self, payload_type: int) -> None:
        super().__init__(f"unknown payload type {payload_type} marked critical")
        self.payload_type = payload_type
        self.notify = Notify.UNSUPPORTED_CRITICAL_PAYLOAD


# --- header -------------------------------------------------------------------------

@dataclass(frozen=True)
class Header:
    spi_i: bytes
    spi_r: bytes
    next_payload: int
    exchange: int
    flags: int
    msg_id: int
    length: int = 0
    version: int = 0x20

    FORMAT: ClassVar[str] = "!8s8sBBBBII"

    @property
    def is_response(self) -> bool:
        return bool(self.flags & Flags.RESPONSE)

    @property
    def is_initiator(self) -> bool:
        return bool(self.flags & Flags.INITIATOR)

    @property
    def exchange_name(self) -> str:
        return ExchangeType.name_of(self.exchange)

    def pack(self, length: int) -> bytes:
        return struct.pack(self.FORMAT, self.spi_i, self.spi_r, self.next_payload,
                           self.version, self.exchange, self.flags, self.msg_id, length)

    @classmethod
    def parse(cls, data: bytes) -> Header:
        if len(data) < HEADER_LEN:
            raise ParseError(f"message of {len(data)} bytes is shorter than the header")
        spi_i, spi_r, nxt, version, exchange, flags, msg_id, length = struct.unpack_from(
            cls.FORMAT, data)
        if length != len(data):
            raise ParseError(f"header says {length} bytes, datagram has {len(data)}")
        return cls(spi_i, spi_r, nxt, exchange, flags, msg_id, length, version)


# --- payloads -----------------------------------------------------------------------

@dataclass(frozen=True)
class Transform:
    type: int
    id: int
    key_bits: int | None = None

    def encode(self, last: bool) -> bytes:
        attrs = b""
        if self.key_bits is not None:
            attrs = struct.pack("!HH", 0x8000 | KEY_LENGTH_ATTRIBUTE, self.key_bits)
        return struct.pack("!BBHBBH", 0 if last else 3, 0, 8 + len(attrs), self.type, 0,
                           self.id) + attrs

    def describe(self) -> str:
        from . import names
        text = names.transform_name(self.type, self.id)
        return f"{text}_{self.key_bits}" if self.key_bits else text


@dataclass(frozen=True)
class Proposal:
    num: int
    protocol: int
    spi: bytes
    transforms: tuple[Transform, ...]

    def of_type(self, ttype: int) -> list[Transform]:
        return [t for t in self.transforms if t.type == ttype]

    def encode(self, last: bool) -> bytes:
        body = b"".join(t.encode(i == len(self.transforms) - 1)
                        for i, t in enumerate(self.transforms))
        head = struct.pack("!BBHBBBB", 0 if last else 2, 0, 8 + len(self.spi) + len(body),
                           self.num, self.protocol, len(self.spi), len(self.transforms))
        return head + self.spi + body

    def describe(self) -> str:
        return "/".join(t.describe() for t in self.transforms)


@dataclass(frozen=True)
class SaPayload:
    proposals: tuple[Proposal, ...]
    TYPE: ClassVar[int] = PayloadType.SA

    def body(self) -> bytes:
        return b"".join(p.encode(i == len(self.proposals) - 1)
                        for i, p in enumerate(self.proposals))


@dataclass(frozen=True)
class KePayload:
    group: int
    data: bytes
    TYPE: ClassVar[int] = PayloadType.KE

    def body(self) -> bytes:
        return struct.pack("!HH", self.group, 0) + self.data


@dataclass(frozen=True)
class IdPayload:
    payload_type: int
    id_type: int
    data: bytes

    def body(self) -> bytes:
        return struct.pack("!B3x", self.id_type) + self.data

    def describe(self) -> str:
        return describe_id(self.id_type, self.data)


@dataclass(frozen=True)
class CertPayload:
    encoding: int
    data: bytes
    TYPE: ClassVar[int] = PayloadType.CERT

    def body(self) -> bytes:
        return bytes([self.encoding]) + self.data


@dataclass(frozen=True)
class CertReqPayload:
    encoding: int
    data: bytes
    TYPE: ClassVar[int] = PayloadType.CERTREQ

    def body(self) -> bytes:
        return bytes([self.encoding]) + self.data


@dataclass(frozen=True)
class AuthPayload:
    method: int
    data: bytes = field(repr=False)
    TYPE: ClassVar[int] = PayloadType.AUTH

    def body(self) -> bytes:
        return struct.pack("!B3x", self.method) + self.data


@dataclass(frozen=True)
class NoncePayload:
    data: bytes
    TYPE: ClassVar[int] = PayloadType.NONCE

    def body(self) -> bytes:
        return self.data


@dataclass(frozen=True)
class NotifyPayload:
    type: int
    data: bytes = b""
    protocol: int = 0
    spi: bytes = b""
    TYPE: ClassVar[int] = PayloadType.NOTIFY

    def body(self) -> bytes:
        return struct.pack("!BBH", self.protocol, len(self.spi), self.type) + self.spi + \
            self.data

    @property
    def name(self) -> str:
        return Notify.name_of(self.type)


@dataclass(frozen=True)
class DeletePayload:
    protocol: int
    spis: tuple[bytes, ...] = ()
    TYPE: ClassVar[int] = PayloadType.DELETE

    def body(self) -> bytes:
        size = len(self.spis[0]) if self.spis else 0
        return struct.pack("!BBH", self.protocol, size, len(self.spis)) + b"".join(self.spis)


@dataclass(frozen=True)
class VendorPayload:
    data: bytes
    TYPE: ClassVar[int] = PayloadType.VENDOR

    def body(self) -> bytes:
        return self.data


@dataclass(frozen=True)
class TrafficSelector:
    ts_type: int
    ip_proto: int
    start_port: int
    end_port: int
    start_addr: bytes
    end_addr: bytes

    @classmethod
    def from_network(cls, net: ipaddress.IPv4Network | ipaddress.IPv6Network,
                     ip_proto: int = 0) -> TrafficSelector:
        ts_type = TsType.TS_IPV4_ADDR_RANGE if net.version == 4 else TsType.TS_IPV6_ADDR_RANGE
        return cls(ts_type, ip_proto, 0, 65535, net.network_address.packed,
                   net.broadcast_address.packed)

    @property
    def first(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_address(self.start_addr)

    @property
    def last(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_address(self.end_addr)

    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """The range as networks; empty for an inverted range (start after end), which
        selects nothing."""
        if self.first > self.last:  # type: ignore[operator]
            return []
        return list(ipaddress.summarize_address_range(self.first, self.last))  # type: ignore

    def encode(self) -> bytes:
        length = 8 + 2 * len(self.start_addr)
        return struct.pack("!BBHHH", self.ts_type, self.ip_proto, length, self.start_port,
                           self.end_port) + self.start_addr + self.end_addr

    def describe(self) -> str:
        nets = ",".join(str(n) for n in self.networks()) or f"{self.first}-{self.last}"
        proto = f"[{self.ip_proto}]" if self.ip_proto else ""
        ports = "" if (self.start_port, self.end_port) == (0, 65535) else \
            f":{self.start_port}-{self.end_port}"
        return f"{nets}{proto}{ports}"


@dataclass(frozen=True)
class TsPayload:
    payload_type: int
    selectors: tuple[TrafficSelector, ...]

    def body(self) -> bytes:
        return struct.pack("!B3x", len(self.selectors)) + \
            b"".join(ts.encode() for ts in self.selectors)


@dataclass(frozen=True)
class CpPayload:
    cfg_type: int
    attributes: tuple[tuple[int, bytes], ...]
    TYPE: ClassVar[int] = PayloadType.CP

    def body(self) -> bytes:
        out = struct.pack("!B3x", self.cfg_type)
        for attr, value in self.attributes:
            out += struct.pack("!HH", attr & 0x7FFF, len(value)) + value
        return out

    def describe(self) -> str:
        parts = []
        for attr, value in self.attributes:
            name = CfgAttr.name_of(attr)
            parts.append(f"{name}={_cfg_value(attr, value)}" if value else name)
        return f"{CfgType.name_of(self.cfg_type)}({', '.join(parts)})"


@dataclass(frozen=True)
class EapPayload:
    data: bytes = field(repr=False)
    TYPE: ClassVar[int] = PayloadType.EAP

    def body(self) -> bytes:
        return self.data


@dataclass(frozen=True)
class SkPayload:
    """Encrypted payload; `first_inner` is the type of the first payload inside."""

    first_inner: int
    data: bytes
    TYPE: ClassVar[int] = PayloadType.SK


@dataclass(frozen=True)
class SkfPayload:
    """Encrypted fragment (RFC 7383 §2.5)."""

    first_inner: int
    number: int
    total: int
    data: bytes
    TYPE: ClassVar[int] = PayloadType.SKF


@dataclass(frozen=True)
class UnknownPayload:
    payload_type: int
    critical: bool
    data: bytes


Payload = (SaPayload | KePayload | IdPayload | CertPayload | CertReqPayload | AuthPayload
           | NoncePayload | NotifyPayload | DeletePayload | VendorPayload | TsPayload
           | CpPayload | EapPayload | SkPayload | SkfPayload | UnknownPayload)


def payload_type(p: Payload) -> int:
    if isinstance(p, (IdPayload, TsPayload, UnknownPayload)):
        return p.payload_type
    return p.TYPE


# --- encoding -----------------------------------------------------------------------

def encode_payloads(payloads: list[Payload] | tuple[Payload, ...]) -> tuple[int, bytes]:
    """Chains payloads; returns the first payload's type and the bytes."""
    out = b""
    for i, p in enumerate(payloads):
        nxt = payload_type(payloads[i + 1]) if i + 1 < len(payloads) else 0
        body = p.data if isinstance(p, UnknownPayload) else p.body()  # type: ignore
        out += struct.pack("!BBH", nxt, 0, GENERIC_LEN + len(body)) + body
    first = payload_type(payloads[0]) if payloads else 0
    return first, out


def encode_message(header: Header, payloads: list[Payload]) -> bytes:
    first, body = encode_payloads(payloads)
    hdr = Header(header.spi_i, header.spi_r, first, header.exchange, header.flags,
                 header.msg_id)
    return hdr.pack(HEADER_LEN + len(body)) + body


# --- parsing ------------------------------------------------------------------------

@dataclass(frozen=True)
class Message:
    header: Header
    payloads: tuple[Payload, ...]
    raw: bytes = field(repr=False, default=b"")

    def get(self, ptype: type, payload_type_id: int | None = None) -> list:
        return [p for p in self.payloads if isinstance(p, ptype) and
                (payload_type_id is None or payload_type(p) == payload_type_id)]

    def first(self, ptype: type, payload_type_id: int | None = None):  # noqa: ANN201
        found = self.get(ptype, payload_type_id)
        return found[0] if found else None

    def notifies(self) -> dict[int, NotifyPayload]:
        return {n.type: n for n in self.get(NotifyPayload)}


def parse_message(data: bytes) -> Message:
    header = Header.parse(data)
    if header.version >> 4 != 2:
        raise ParseError(f"IKE major version {header.version >> 4}, not 2")
    payloads = parse_payloads(header.next_payload, data[HEADER_LEN:], HEADER_LEN)
    return Message(header, tuple(payloads), data)


def parse_payloads(first: int, data: bytes, base_offset: int = 0) -> list[Payload]:
    payloads: list[Payload] = []
    nxt = first
    offset = 0
    while nxt != PayloadType.NONE:
        if offset + GENERIC_LEN > len(data):
            raise ParseError(f"payload {PayloadType.name_of(nxt)} truncated at offset "
                             f"{base_offset + offset}")
        following, flags, length = struct.unpack_from("!BBH", data, offset)
        if length < GENERIC_LEN or offset + length > len(data):
            raise ParseError(f"payload {PayloadType.name_of(nxt)} declares {length} bytes, "
                             f"{len(data) - offset} remain")
        body = data[offset + GENERIC_LEN:offset + length]
        if nxt in (PayloadType.SK, PayloadType.SKF):
            # The encrypted payload is always last; its next-payload field names the
            # first payload inside it (§3.14).
            if offset + length != len(data):
                raise ParseError("data follows the encrypted payload")
            payloads.append(_parse_encrypted(nxt, following, body))
            return payloads
        payloads.append(_parse_one(nxt, bool(flags & CRITICAL), body))
        offset += length
        nxt = following
    if offset != len(data):
        raise ParseError(f"{len(data) - offset} bytes after the last payload")
    return payloads


def _parse_encrypted(ptype: int, first_inner: int, body: bytes) -> Payload:
    if ptype == PayloadType.SK:
        return SkPayload(first_inner, body)
    if len(body) < 4:
        raise ParseError("encrypted fragment shorter than its header")
    number, total = struct.unpack_from("!HH", body)
    if number == 0 or total == 0 or number > total:
        raise ParseError(f"fragment {number} of {total} is impossible")
    return SkfPayload(first_inner, number, total, body[4:])


def _need(body: bytes, n: int, what: str) -> None:
    if len(body) < n:
        raise ParseError(f"{what} payload of {len(body)} bytes is too short")


def _parse_one(ptype: int, critical: bool, body: bytes) -> Payload:
    parser = _PARSERS.get(ptype)
    if parser is None:
        if critical:
            raise UnsupportedCritical(ptype)
        return UnknownPayload(ptype, critical, body)
    return parser(ptype, body)


def _parse_sa(_t: int, body: bytes) -> SaPayload:
    proposals = []
    offset = 0
    last = False
    while not last:
        if offset + 8 > len(body):
            raise ParseError("SA proposal truncated")
        more, _r, plen, num, proto, spi_size, n_transforms = struct.unpack_from(
            "!BBHBBBB", body, offset)
        if more not in (0, 2) or plen < 8 + spi_size or offset + plen > len(body):
            raise ParseError(f"SA proposal {num} malformed")
        last = more == 0
        spi = body[offset + 8:offset + 8 + spi_size]
        transforms = _parse_transforms(body[offset + 8 + spi_size:offset + plen],
                                       n_transforms, num)
        proposals.append(Proposal(num, proto, spi, tuple(transforms)))
        offset += plen
    if offset != len(body):
        raise ParseError("data after the last SA proposal")
    return SaPayload(tuple(proposals))


def _parse_transforms(body: bytes, count: int, num: int) -> list[Transform]:
    transforms = []
    offset = 0
    for i in range(count):
        if offset + 8 > len(body):
            raise ParseError(f"proposal {num}: transform {i + 1} of {count} truncated")
        more, _r, tlen, ttype, _r2, tid = struct.unpack_from("!BBHBBH", body, offset)
        if tlen < 8 or offset + tlen > len(body) or more != (0 if i == count - 1 else 3):
            raise ParseError(f"proposal {num}: transform {i + 1} malformed")
        key_bits = None
        unknown_attr = False
        attrs = body[offset + 8:offset + tlen]
        pos = 0
        while pos < len(attrs):
            if pos + 4 > len(attrs):
                raise ParseError(f"proposal {num}: transform attribute truncated")
            atype, aval = struct.unpack_from("!HH", attrs, pos)
            if atype & 0x8000:
                if atype & 0x7FFF == KEY_LENGTH_ATTRIBUTE:
                    key_bits = aval
                else:
                    unknown_attr = True
                pos += 4
            else:
                # A TLV attribute: none are defined, so the transform cannot be chosen.
                unknown_attr = True
                pos += 4 + aval
        if pos != len(attrs):
            raise ParseError(f"proposal {num}: transform attributes overrun")
        # §3.3.6: a transform with an attribute we do not understand must be rejected;
        # giving it an impossible type keeps it in the record for the trace but out of
        # any choice.
        transforms.append(Transform(ttype if not unknown_attr else 0xFF00 | ttype, tid,
                                    key_bits))
        offset += tlen
    if offset != len(body):
        raise ParseError(f"proposal {num}: data after the last transform")
    return transforms


def _parse_ke(_t: int, body: bytes) -> KePayload:
    _need(body, 4, "KE")
    group, = struct.unpack_from("!H", body)
    return KePayload(group, body[4:])


def _parse_id(ptype: int, body: bytes) -> IdPayload:
    _need(body, 4, "ID")
    return IdPayload(ptype, body[0], body[4:])


def _parse_cert(_t: int, body: bytes) -> CertPayload:
    _need(body, 1, "CERT")
    return CertPayload(body[0], body[1:])


def _parse_certreq(_t: int, body: bytes) -> CertReqPayload:
    _need(body, 1, "CERTREQ")
    return CertReqPayload(body[0], body[1:])


def _parse_auth(_t: int, body: bytes) -> AuthPayload:
    _need(body, 4, "AUTH")
    return AuthPayload(body[0], body[4:])


def _parse_nonce(_t: int, body: bytes) -> NoncePayload:
    if not 16 <= len(body) <= 256:
        raise ParseError(f"nonce of {len(body)} bytes (16 to 256 allowed)")
    return NoncePayload(body)


def _parse_notify(_t: int, body: bytes) -> NotifyPayload:
    _need(body, 4, "NOTIFY")
    proto, spi_size, ntype = struct.unpack_from("!BBH", body)
    if 4 + spi_size > len(body):
        raise ParseError("NOTIFY SPI overruns the payload")
    return NotifyPayload(ntype, body[4 + spi_size:], proto, body[4:4 + spi_size])


def _parse_delete(_t: int, body: bytes) -> DeletePayload:
    _need(body, 4, "DELETE")
    proto, spi_size, count = struct.unpack_from("!BBH", body)
    if len(body) != 4 + spi_size * count:
        raise ParseError("DELETE SPI count does not match its length")
    if proto == Protocol.IKE and (spi_size, count) != (0, 0):
        raise ParseError("DELETE of the IKE SA carries SPIs")
    spis = tuple(body[4 + i * spi_size:4 + (i + 1) * spi_size] for i in range(count))
    return DeletePayload(proto, spis)


def _parse_vendor(_t: int, body: bytes) -> VendorPayload:
    return VendorPayload(body)


def _parse_ts(ptype: int, body: bytes) -> TsPayload:
    _need(body, 4, "TS")
    count = body[0]
    selectors = []
    offset = 4
    for _ in range(count):
        if offset + 8 > len(body):
            raise ParseError("traffic selector truncated")
        ts_type, proto, length, sport, eport = struct.unpack_from("!BBHHH", body, offset)
        alen = {TsType.TS_IPV4_ADDR_RANGE: 4, TsType.TS_IPV6_ADDR_RANGE: 16}.get(ts_type)
        if alen is None:
            # Unknown selector types are skipped; the rest may still be usable.
            if length < 8 or offset + length > len(body):
                raise ParseError("traffic selector malformed")
            offset += length
            continue
        if length != 8 + 2 * alen or offset + length > len(body):
            raise ParseError("traffic selector length does not match its type")
        start = body[offset + 8:offset + 8 + alen]
        end = body[offset + 8 + alen:offset + length]
        selectors.append(TrafficSelector(ts_type, proto, sport, eport, start, end))
        offset += length
    if offset != len(body):
        raise ParseError("data after the last traffic selector")
    return TsPayload(ptype, tuple(selectors))


def _parse_cp(_t: int, body: bytes) -> CpPayload:
    _need(body, 4, "CP")
    attrs = []
    offset = 4
    while offset < len(body):
        if offset + 4 > len(body):
            raise ParseError("configuration attribute truncated")
        atype, alen = struct.unpack_from("!HH", body, offset)
        if offset + 4 + alen > len(body):
            raise ParseError("configuration attribute overruns the payload")
        attrs.append((atype & 0x7FFF, body[offset + 4:offset + 4 + alen]))
        offset += 4 + alen
    return CpPayload(body[0], tuple(attrs))


def _parse_eap(_t: int, body: bytes) -> EapPayload:
    _need(body, 4, "EAP")
    return EapPayload(body)


_PARSERS = {
    PayloadType.SA: _parse_sa, PayloadType.KE: _parse_ke, PayloadType.IDi: _parse_id,
    PayloadType.IDr: _parse_id, PayloadType.CERT: _parse_cert,
    PayloadType.CERTREQ: _parse_certreq, PayloadType.AUTH: _parse_auth,
    PayloadType.NONCE: _parse_nonce, PayloadType.NOTIFY: _parse_notify,
    PayloadType.DELETE: _parse_delete, PayloadType.VENDOR: _parse_vendor,
    PayloadType.TSi: _parse_ts, PayloadType.TSr: _parse_ts, PayloadType.CP: _parse_cp,
    PayloadType.EAP: _parse_eap,
}


# --- descriptions for the trace ---------------------------------------------------------

def describe_id(id_type: int, data: bytes) -> str:
    try:
        if id_type == IdType.ID_IPV4_ADDR and len(data) == 4:
            return str(ipaddress.IPv4Address(data))
        if id_type == IdType.ID_IPV6_ADDR and len(data) == 16:
            return str(ipaddress.IPv6Address(data))
        if id_type in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR, IdType.ID_KEY_ID):
            return data.decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - a description must never fail the exchange
        pass
    return f"{IdType.name_of(id_type)}:{data.hex()}"


def _cfg_value(attr: int, value: bytes) -> str:
    if attr in (CfgAttr.INTERNAL_IP4_ADDRESS, CfgAttr.INTERNAL_IP4_NETMASK,
                CfgAttr.INTERNAL_IP4_DNS) and len(value) == 4:
        return str(ipaddress.IPv4Address(value))
    if attr == CfgAttr.INTERNAL_IP6_ADDRESS and len(value) == 17:
        return f"{ipaddress.IPv6Address(value[:16])}/{value[16]}"
    if attr == CfgAttr.INTERNAL_IP6_DNS and len(value) == 16:
        return str(ipaddress.IPv6Address(value))
    if attr == CfgAttr.APPLICATION_VERSION:
        return repr(value.decode("utf-8", "replace"))
    return value.hex()

