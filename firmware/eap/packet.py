"""EAP packets (RFC 3748 §4): code, identifier, length, and for Request/Response a type.

Parsing stays inside the declared Length: bytes after it (IKEv2 never adds any, but a
lower layer may pad) are ignored, and a Length beyond the buffer is an error. Expanded
types (254, RFC 3748 §5.7) are parsed generically into vendor id, vendor type and data.
Unknown codes and types are kept as numbers rather than refused here; the server
decides what it accepts.
"""

from __future__ import annotations

import dataclasses
import enum
import struct


class EapError(Exception):
    """A packet that cannot be parsed, or the server used out of order."""


class Code(enum.IntEnum):
    REQUEST = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4


class EapType(enum.IntEnum):
    IDENTITY = 1
    NOTIFICATION = 2
    NAK = 3
    MD5_CHALLENGE = 4
    MSCHAPV2 = 26
    EXPANDED = 254


def code_name(code: int) -> str:
    try:
        return Code(code).name
    except ValueError:
        return f"CODE_{code}"


def type_name(eap_type: int) -> str:
    try:
        return EapType(eap_type).name
    except ValueError:
        return f"TYPE_{eap_type}"


@dataclasses.dataclass(frozen=True)
class Expanded:
    vendor_id: int  # 24 bits; 0 is the IETF space
    vendor_type: int  # 32 bits
    data: bytes


@dataclasses.dataclass(frozen=True)
class EapPacket:
    code: int
    identifier: int
    type: int | None = None  # Request and Response only
    type_data: bytes = b""

    @property
    def expanded(self) -> Expanded | None:
        if self.type != EapType.EXPANDED:
            return None
        if len(self.type_data) < 7:
            raise EapError("expanded type shorter than its 7-byte vendor header")
        vendor_id = int.from_bytes(self.type_data[0:3], "big")
        vendor_type = int.from_bytes(self.type_data[3:7], "big")
        return Expanded(vendor_id, vendor_type, self.type_data[7:])

    def describe(self) -> str:
        """A short operator-readable name, e.g. 'Response/MSCHAPV2'; never the data."""
        if self.type is None:
            return code_name(self.code)
        return f"{code_name(self.code).capitalize()}/{type_name(self.type)}"

    def to_bytes(self) -> bytes:
        if not 0 <= self.identifier <= 255:
            raise EapError(f"identifier {self.identifier} out of range")
        if self.code in (Code.REQUEST, Code.RESPONSE):
            if self.type is None:
                raise EapError("a Request or Response needs a type")
            body = bytes([self.type]) + self.type_data
        else:
            if self.type is not None or self.type_data:
                raise EapError("Success and Failure carry no data")
            body = b""
        length = 4 + len(body)
        if length > 0xFFFF:
            raise EapError("EAP packet longer than 65535 bytes")
        return struct.pack("!BBH", self.code, self.identifier, length) + body


def expanded_type_data(vendor_id: int, vendor_type: int, data: bytes) -> bytes:
    return vendor_id.to_bytes(3, "big") + vendor_type.to_bytes(4, "big") + data


def parse(data: bytes) -> EapPacket:
    if len(data) < 4:
        raise EapError(f"EAP packet of {len(data)} bytes is shorter than its 4-byte header")
    code, identifier, length = struct.unpack_from("!BBH", data)
    if length < 4:
        raise EapError(f"EAP Length {length} is shorter than the header")
    if length > len(data):
        raise EapError(f"EAP Length {length} exceeds the {len(data)} bytes received")
    body = data[4:length]
    if code in (Code.REQUEST, Code.RESPONSE):
        if not body:
            raise EapError(f"EAP {code_name(code)} without a type")
        return EapPacket(code, identifier, body[0], bytes(body[1:]))
    if code in (Code.SUCCESS, Code.FAILURE) and body:
        raise EapError(f"EAP {code_name(code)} with {len(body)} bytes of data")
    return EapPacket(code, identifier)


def success(identifier: int) -> bytes:
    return EapPacket(Code.SUCCESS, identifier).to_bytes()


def failure(identifier: int) -> bytes:
    return EapPacket(Code.FAILURE, identifier).to_bytes()
