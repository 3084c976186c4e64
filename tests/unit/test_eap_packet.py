"""RFC 3748 packet codec."""

import pytest

from firmware.eap.packet import Code, EapError, EapPacket, EapType, expanded_type_data, parse


def test_request_round_trip():
    pkt = EapPacket(Code.REQUEST, 7, EapType.IDENTITY, b"")
    raw = pkt.to_bytes()
    assert raw == bytes([1, 7, 0, 5, 1])
    assert parse(raw) == pkt


def test_success_and_failure_are_four_bytes():
    assert EapPacket(Code.SUCCESS, 9).to_bytes() == bytes([3, 9, 0, 4])
    assert parse(bytes([4, 9, 0, 4])) == EapPacket(Code.FAILURE, 9)


def test_parse_stays_inside_declared_length():
    raw = bytes([2, 1, 0, 8, 1]) + b"bob" + b"trailing padding"
    pkt = parse(raw)
    assert pkt.type_data == b"bob"


@pytest.mark.parametrize(
    "raw, why",
    [
        (b"\x02\x01\x00", "shorter than its 4-byte header"),
        (bytes([2, 1, 0, 3]), "shorter than the header"),
        (bytes([2, 1, 0, 9, 1, 0x61]), "exceeds"),
        (bytes([2, 1, 0, 4]), "without a type"),
        (bytes([3, 1, 0, 5, 0]), "with 1 bytes of data"),
    ],
)
def test_malformed(raw, why):
    with pytest.raises(EapError, match=why):
        parse(raw)


def test_expanded_type_is_parsed_generically():
    data = expanded_type_data(9, 1, b"<xml/>")  # Cisco's vendor id, as AnyConnect uses
    pkt = parse(EapPacket(Code.RESPONSE, 3, EapType.EXPANDED, data).to_bytes())
    ex = pkt.expanded
    assert (ex.vendor_id, ex.vendor_type, ex.data) == (9, 1, b"<xml/>")
    assert EapPacket(Code.RESPONSE, 3, EapType.EXPANDED, b"\x00\x00").describe() == (
        "Response/EXPANDED"
    )
    with pytest.raises(EapError, match="vendor header"):
        _ = EapPacket(Code.RESPONSE, 3, EapType.EXPANDED, b"\x00\x00").expanded


def test_unknown_code_and_type_keep_their_number():
    assert parse(bytes([2, 1, 0, 5, 99])).describe() == "Response/TYPE_99"
    assert parse(bytes([7, 1, 0, 4])).describe() == "CODE_7"


def test_encoder_refuses_nonsense():
    with pytest.raises(EapError):
        EapPacket(Code.REQUEST, 1).to_bytes()
    with pytest.raises(EapError):
        EapPacket(Code.SUCCESS, 1, type_data=b"x").to_bytes()
    with pytest.raises(EapError):
        EapPacket(Code.REQUEST, 256, 1).to_bytes()
