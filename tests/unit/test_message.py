"""The codec: every payload round-trips, and parsing stays inside declared lengths."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from firmware.ike.constants import (
    CfgAttr, CfgType, Dh, Encr, ExchangeType, Flags, IdType, Notify, PayloadType, Prf,
    Protocol, TransformType,
)
from firmware.ike.message import (
    AuthPayload, CertPayload, CertReqPayload, CpPayload, DeletePayload, EapPayload, Header,
    IdPayload, KePayload, NoncePayload, NotifyPayload, ParseError, Proposal, SaPayload,
    Transform, TrafficSelector, TsPayload, UnknownPayload, UnsupportedCritical,
    VendorPayload, encode_message, encode_payloads, parse_message, parse_payloads,
)

HEADER = Header(b"\x11" * 8, bytes(8), 0, ExchangeType.IKE_SA_INIT, Flags.INITIATOR, 0)

EVERY_PAYLOAD = [
    SaPayload((
        Proposal(1, Protocol.IKE, b"", (
            Transform(TransformType.ENCR, Encr.AES_GCM_16, 256),
            Transform(TransformType.PRF, Prf.HMAC_SHA2_256),
            Transform(TransformType.DH, Dh.CURVE_25519))),
        Proposal(2, Protocol.ESP, b"\x01\x02\x03\x04", (
            Transform(TransformType.ENCR, Encr.CHACHA20_POLY1305),
            Transform(TransformType.ESN, 0))),
    )),
    KePayload(Dh.CURVE_25519, bytes(range(32))),
    IdPayload(PayloadType.IDi, IdType.ID_RFC822_ADDR, b"alice@example.net"),
    IdPayload(PayloadType.IDr, IdType.ID_FQDN, b"vpn.example.net"),
    CertPayload(4, b"\x30\x82" + bytes(40)),
    CertReqPayload(4, bytes(20) + bytes(range(20))),
    AuthPayload(2, bytes(32)),
    NoncePayload(bytes(range(32))),
    NotifyPayload(Notify.REKEY_SA, b"", Protocol.ESP, b"\xaa\xbb\xcc\xdd"),
    NotifyPayload(Notify.NAT_DETECTION_SOURCE_IP, bytes(20)),
    DeletePayload(Protocol.ESP, (b"\x01\x02\x03\x04", b"\x05\x06\x07\x08")),
    DeletePayload(Protocol.IKE),
    VendorPayload(b"ikebox"),
    TsPayload(PayloadType.TSi, (TrafficSelector.from_network(
        ipaddress.ip_network("10.0.0.0/8")), TrafficSelector.from_network(
        ipaddress.ip_network("2001:db8::/32"), 6))),
    TsPayload(PayloadType.TSr, (TrafficSelector.from_network(
        ipaddress.ip_network("0.0.0.0/0")),)),
    CpPayload(CfgType.CFG_REQUEST, ((CfgAttr.INTERNAL_IP4_ADDRESS, b""),
                                    (CfgAttr.APPLICATION_VERSION, b"test 1.0"))),
    EapPayload(b"\x01\x02\x00\x05\x01"),
    UnknownPayload(200, False, b"opaque"),
]


def test_every_payload_round_trips():
    data = encode_message(HEADER, EVERY_PAYLOAD)
    msg = parse_message(data)
    assert list(msg.payloads) == EVERY_PAYLOAD
    assert msg.header.length == len(data)
    assert encode_message(msg.header, list(msg.payloads)) == data


def test_header_fields():
    data = encode_message(HEADER, [NoncePayload(bytes(16))])
    hdr = Header.parse(data)
    assert hdr.is_initiator and not hdr.is_response
    assert hdr.exchange_name == "IKE_SA_INIT" and hdr.version == 0x20


@pytest.mark.parametrize("cut", range(1, 12))
def test_truncation_anywhere_is_a_parse_error(cut):
    data = encode_message(HEADER, EVERY_PAYLOAD[:4])
    short = data[:-cut]
    short = short[:24] + struct.pack("!I", len(short)) + short[28:]
    with pytest.raises(ParseError):
        parse_message(short)


def test_length_field_beyond_the_datagram_is_refused():
    first, body = encode_payloads([NoncePayload(bytes(16))])
    forged = body[:2] + struct.pack("!H", 200) + body[4:]
    with pytest.raises(ParseError):
        parse_payloads(first, forged)


def test_unknown_critical_payload_raises_with_its_type():
    body = struct.pack("!BBH", 0, 0x80, 6) + b"xy"
    with pytest.raises(UnsupportedCritical) as err:
        parse_payloads(222, body)
    assert err.value.payload_type == 222
    assert err.value.notify == Notify.UNSUPPORTED_CRITICAL_PAYLOAD


def test_unknown_names_print_as_numbers():
    assert Notify.name_of(40960) == "NOTIFY_40960"
    assert NotifyPayload(40960).name == "NOTIFY_40960"


def test_nonce_sizes_are_enforced():
    for size in (15, 257):
        first, body = encode_payloads([NoncePayload(bytes(size))])
        with pytest.raises(ParseError):
            parse_payloads(first, body)


def test_transform_with_unknown_attribute_is_kept_but_unchoosable():
    raw = struct.pack("!BBHBBH", 0, 0, 12, TransformType.ENCR, 0, Encr.AES_CBC) + \
        struct.pack("!HH", 0x8000 | 99, 1)
    proposal = struct.pack("!BBHBBBB", 0, 0, 8 + len(raw), 1, Protocol.IKE, 0, 1) + raw
    sa = parse_payloads(PayloadType.SA, struct.pack("!BBH", 0, 0, 4 + len(proposal)) +
                        proposal)[0]
    assert sa.proposals[0].transforms[0].type > TransformType.ESN


def test_delete_count_must_match_length():
    body = struct.pack("!BBH", Protocol.ESP, 4, 3) + bytes(8)
    with pytest.raises(ParseError):
        parse_payloads(PayloadType.DELETE, struct.pack("!BBH", 0, 0, 4 + len(body)) + body)


def test_selector_describe_and_networks():
    ts = TrafficSelector.from_network(ipaddress.ip_network("192.168.1.0/24"))
    assert ts.describe() == "192.168.1.0/24"
    assert [str(n) for n in ts.networks()] == ["192.168.1.0/24"]
