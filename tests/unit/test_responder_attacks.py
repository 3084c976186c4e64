"""Hostile bytes against the sans-IO responder. Every test asserts that
Responder.receive/tick never raise and that the box behaves as the RFC asks."""

from __future__ import annotations

import ipaddress
import random
import struct
import tracemalloc

import pytest

from firmware.ike import actions as act
from firmware.ike import sk
from firmware.ike.constants import (
    Dh, ExchangeType, Flags, Notify, PayloadType, Protocol,
)
from firmware.ike.ike_sa import State
from firmware.ike.message import (
    HEADER_LEN, DeletePayload, EapPayload, Header, KePayload, NoncePayload, NotifyPayload,
    SaPayload, TrafficSelector, TsPayload, encode_message, encode_payloads, parse_message,
)

from tests.unit.initiator import BOX, CLIENT, Initiator, esp_proposal, ike_proposal
from tests.unit.test_responder import (
    PSK, T0, exchange, init, install_all, only, sends,
)


def seal_raw(client: Initiator, exchange_type: int, first: int, plain: bytes,
             msg_id: int, flags: int = Flags.INITIATOR) -> bytes:
    """An SK message carrying arbitrary inner bytes (so the codec, not the AEAD, sees
    the damage)."""
    keys = client.mine
    body_len = sk._body_length(keys, len(plain))
    sk_len = 4 + body_len
    hdr = Header(client.spi_i, client.spi_r, PayloadType.SK, exchange_type, flags,
                 msg_id).pack(HEADER_LEN + sk_len)
    prefix = hdr + struct.pack("!BBH", first, 0, sk_len)
    return prefix + sk._seal_body(keys, prefix, plain, None)


def seal_fragment(client: Initiator, exchange_type: int, first: int, chunk: bytes,
                  number: int, total: int, msg_id: int) -> bytes:
    keys = client.mine
    skf_len = 8 + sk._body_length(keys, len(chunk))
    hdr = Header(client.spi_i, client.spi_r, PayloadType.SKF, exchange_type,
                 Flags.INITIATOR, msg_id).pack(HEADER_LEN + skf_len)
    prefix = hdr + struct.pack("!BBHHH", first, 0, skf_len, number, total)
    return prefix + sk._seal_body(keys, prefix, chunk, None)


def established(make_responder, **kw):
    r = make_responder(**kw)
    client = Initiator(fragmentation=True)
    init(r, client)
    exchange(r, client, client.auth_first(with_psk=PSK))
    assert next(iter(r.sas.values())).state == State.ESTABLISHED
    return r, client


# --- fragments ------------------------------------------------------------------------

def test_fragments_with_changing_total_do_not_raise(make_responder):
    """Fragment 3/3 then 1/2: the reassembly counts fragment 3 toward a total of 2 and
    indexes a fragment 2 that never came (KeyError escapes receive)."""
    r = make_responder()
    client = Initiator(fragmentation=True)
    init(r, client)
    first, plain = encode_payloads(client.auth_first(with_psk=PSK))
    a = seal_fragment(client, ExchangeType.IKE_AUTH, 0, plain[40:], 3, 3, 1)
    b = seal_fragment(client, ExchangeType.IKE_AUTH, first, plain[:40], 1, 2, 1)
    r.receive(a, CLIENT, BOX, T0)
    r.receive(b, CLIENT, BOX, T0)  # must not raise


def test_fragments_of_two_totals_reassemble_nothing_wrong(make_responder):
    """Fragments 1/3, 2/3, then 3/4 and 4/4 ... no exception whatever the order."""
    r = make_responder()
    client = Initiator(fragmentation=True)
    init(r, client)
    first, plain = encode_payloads(client.auth_first(with_psk=PSK))
    parts = [plain[i:i + 50] for i in range(0, len(plain), 50)]
    rng = random.Random(7)
    for _ in range(200):
        n = rng.randint(1, 6)
        total = rng.randint(n, 6)
        chunk = parts[(n - 1) % len(parts)]
        d = seal_fragment(client, ExchangeType.IKE_AUTH, first if n == 1 else 0, chunk,
                          n, total, 1)
        r.receive(d, CLIENT, BOX, T0)


def test_unfinished_fragments_hold_bounded_memory(make_responder):
    """A client that completed only IKE_SA_INIT sends 63 of 64 fragments of ~60 kB:
    _gather keeps every decrypted piece with no bound on the total (strongSwan caps a
    reassembled message at charon.max_packet, 10000 bytes). With 64 half-open SAs
    before cookies start that is about 240 MB on a Raspberry Pi-class box."""
    r = make_responder()
    client = Initiator(fragmentation=True)
    init(r, client)
    chunk = bytes(60000)
    tracemalloc.start()
    for n in range(1, 64):
        r.receive(seal_fragment(client, ExchangeType.IKE_AUTH, 0, chunk, n, 64, 1),
                  CLIENT, BOX, T0)
    size, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert size < 2_000_000


# --- traffic selectors -------------------------------------------------------------

def test_traffic_selector_with_start_after_end_does_not_raise(make_responder):
    """TS range 10.0.0.9-10.0.0.1: the level-3 trace's describe() calls
    summarize_address_range, which raises ValueError out of receive()."""
    r = make_responder()
    client = Initiator()
    init(r, client)
    bad = TrafficSelector(7, 0, 0, 65535, bytes([10, 0, 0, 9]), bytes([10, 0, 0, 1]))
    payloads = client.auth_first(with_psk=PSK, sa=False) + [
        SaPayload((esp_proposal(client.child_spi),)),
        TsPayload(PayloadType.TSi, (bad,)),
        TsPayload(PayloadType.TSr, (TrafficSelector.from_network(
            ipaddress.ip_network("0.0.0.0/0")),))]
    datagram = client.request(ExchangeType.IKE_AUTH, payloads)[0]
    actions = r.receive(datagram, CLIENT, BOX, T0)  # must not raise
    assert sends(install_all(r, actions)), "the client must get an answer"


def test_ts_start_after_end_in_create_child_sa_does_not_raise(make_responder):
    r, client = established(make_responder)
    bad = TrafficSelector(7, 0, 0, 65535, bytes([10, 0, 0, 9]), bytes([10, 0, 0, 1]))
    payloads = [SaPayload((esp_proposal(b"\x01\x02\x03\x04"),)),
                NoncePayload(bytes(32)), TsPayload(PayloadType.TSi, (bad,)),
                TsPayload(PayloadType.TSr, (bad,))]
    d = client.request(ExchangeType.CREATE_CHILD_SA, payloads)[0]
    r.receive(d, CLIENT, BOX, T0)


# --- fuzzing inner payloads (past the integrity check) -------------------------------

def _mutations(plain: bytes, rng: random.Random, count: int):
    for cut in range(0, len(plain), max(1, len(plain) // 40)):
        yield plain[:cut]
    for _ in range(count):
        b = bytearray(plain)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(b))
            b[i] = rng.choice([0, 0xFF, 1, 0x80, rng.randrange(256)])
        yield bytes(b)


@pytest.mark.parametrize("seed", range(3))
def test_fuzzed_first_ike_auth_never_raises(make_responder, seed):
    rng = random.Random(seed)
    from firmware.ike.message import AuthPayload
    client0 = Initiator()
    first, plain = encode_payloads(client0.auth_first(
        extra=[AuthPayload(2, bytes(32))]))
    errors = []
    for mutated in _mutations(plain, rng, 150):
        r = make_responder()
        client = Initiator()
        init(r, client)
        d = seal_raw(client, ExchangeType.IKE_AUTH, first, mutated, 1)
        try:
            install_all(r, r.receive(d, CLIENT, BOX, T0))
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{type(exc).__name__}: {exc}")
    assert not errors, sorted(set(errors))


@pytest.mark.parametrize("seed", range(3))
def test_fuzzed_create_child_sa_never_raises(make_responder, seed):
    rng = random.Random(seed)
    r, client = established(make_responder)
    from firmware.ike import crypto
    pub = crypto.get_dh_group(Dh.CURVE_25519).generate().public
    payloads = [SaPayload((esp_proposal(b"\x01\x02\x03\x04"),)),
                NoncePayload(bytes(range(32))), KePayload(Dh.CURVE_25519, pub),
                TsPayload(PayloadType.TSi, (TrafficSelector.from_network(
                    ipaddress.ip_network("0.0.0.0/0")),)),
                TsPayload(PayloadType.TSr, (TrafficSelector.from_network(
                    ipaddress.ip_network("0.0.0.0/0")),))]
    first, plain = encode_payloads(payloads)
    errors = []
    for mutated in _mutations(plain, rng, 150):
        d = seal_raw(client, ExchangeType.CREATE_CHILD_SA, first, mutated, client.msg_id)
        client.msg_id += 1
        try:
            install_all(r, r.receive(d, CLIENT, BOX, T0))
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{type(exc).__name__}: {exc}")
        if not r.sas:
            break
    assert not errors, sorted(set(errors))


def test_ike_rekey_with_wrong_length_ke_does_not_raise(make_responder):
    r, client = established(make_responder)
    for ke in (b"", bytes(31), bytes(33), bytes(32), bytes(500)):
        payloads = [SaPayload((ike_proposal(),)), NoncePayload(bytes(range(32))),
                    KePayload(Dh.CURVE_25519, ke)]
        # the rekey proposal needs an 8-byte SPI
        prop = ike_proposal()
        payloads[0] = SaPayload((type(prop)(1, Protocol.IKE, bytes(range(8)),
                                            prop.transforms),))
        d = client.request(ExchangeType.CREATE_CHILD_SA, payloads)[0]
        reply = r.receive(d, CLIENT, BOX, T0)
        msg = client.open(only(reply, act.Send).datagrams)
        assert msg.first(NotifyPayload) is not None, ke


def test_pfs_with_wrong_length_ke_does_not_raise(make_responder):
    r, client = established(make_responder)
    for ke in (b"", bytes(31), bytes(32), bytes(500)):
        prop = esp_proposal(b"\x01\x02\x03\x04")
        from firmware.ike.message import Transform
        from firmware.ike.constants import TransformType
        prop = type(prop)(1, Protocol.ESP, prop.spi,
                          prop.transforms + (Transform(TransformType.DH, Dh.CURVE_25519),))
        payloads = [SaPayload((prop,)), NoncePayload(bytes(range(32))),
                    KePayload(Dh.CURVE_25519, ke),
                    TsPayload(PayloadType.TSi, (TrafficSelector.from_network(
                        ipaddress.ip_network("0.0.0.0/0")),)),
                    TsPayload(PayloadType.TSr, (TrafficSelector.from_network(
                        ipaddress.ip_network("0.0.0.0/0")),))]
        d = client.request(ExchangeType.CREATE_CHILD_SA, payloads)[0]
        install_all(r, r.receive(d, CLIENT, BOX, T0))


@pytest.mark.parametrize("seed", range(3))
def test_fuzzed_sa_init_never_raises(make_responder, seed):
    rng = random.Random(seed)
    r = make_responder()
    data = Initiator().sa_init()
    errors = []
    for mutated in _mutations(data, rng, 400):
        # keep the header length honest half the time so the payloads get parsed
        if len(mutated) >= HEADER_LEN and rng.random() < 0.5:
            mutated = mutated[:24] + struct.pack("!I", len(mutated)) + mutated[28:]
        try:
            r.receive(mutated, CLIENT, BOX, T0)
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{type(exc).__name__}: {exc}")
    assert not errors, sorted(set(errors))


# --- EAP ------------------------------------------------------------------------------

@pytest.mark.parametrize("garbage", [b"\x02", b"\x02\x00\x00\x04", b"\x02\x00\xff\xff\x01",
                                     b"\x01\x00\x00\x05\x01", b"\x03\x00\x00\x04",
                                     bytes(4), b"\x02\x00\x00\x06\x1a\x02",
                                     b"\xff" * 300])
def test_garbage_eap_is_refused_cleanly(make_responder, garbage):
    r = make_responder()
    client = Initiator()
    init(r, client)
    exchange(r, client, client.auth_first())
    d = seal_raw(client, ExchangeType.IKE_AUTH, PayloadType.EAP,
                 struct.pack("!BBH", 0, 0, 4 + len(garbage)) + garbage, 2)
    actions = r.receive(d, CLIENT, BOX, T0)
    assert sends(actions)


def test_fuzzed_eap_response_never_raises(make_responder):
    from tests.unit.test_eap_server import Peer
    rng = random.Random(3)
    errors = []
    for _ in range(120):
        r = make_responder()
        client = Initiator(id_i=(3, b"alice"))
        init(r, client)
        reply, _ = exchange(r, client, client.auth_first())
        peer = Peer("alice", "alice-password-1")
        answer = peer.answer(reply.first(EapPayload).data)
        b = bytearray(answer)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(b))
            b[i] = rng.randrange(256)
        if rng.random() < 0.3:
            b = b[:rng.randrange(len(b))]
        try:
            r.receive(client.request(ExchangeType.IKE_AUTH, [EapPayload(bytes(b))])[0],
                      CLIENT, BOX, T0) if len(b) >= 4 else None
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{type(exc).__name__}: {exc}")
    assert not errors, sorted(set(errors))


def test_client_silent_mid_eap_is_cleaned_up(make_responder):
    r = make_responder(eap_timeout=60)
    client = Initiator()
    init(r, client)
    exchange(r, client, client.auth_first())
    assert r.sas
    r.tick(T0 + 61)
    assert not r.sas


# --- ordering, flags, windows ----------------------------------------------------------

def test_ike_auth_before_sa_init_is_dropped(make_responder):
    r = make_responder()
    client = Initiator()
    # made-up keys: it cannot know any; the box must not answer or keep state
    header = Header(client.spi_i, b"\x11" * 8, PayloadType.SK, ExchangeType.IKE_AUTH,
                    Flags.INITIATOR, 1)
    data = encode_message(header, [])
    assert r.receive(data + bytes(0), CLIENT, BOX, T0) == [] or not sends(
        r.receive(data, CLIENT, BOX, T0))
    assert not r.sas


def test_sa_init_with_response_flag_is_ignored(make_responder):
    r = make_responder()
    data = bytearray(Initiator().sa_init())
    data[19] = Flags.RESPONSE | Flags.INITIATOR
    assert not sends(r.receive(bytes(data), CLIENT, BOX, T0))
    assert not r.sas


def test_request_without_initiator_flag_is_ignored(make_responder):
    r = make_responder()
    client = Initiator()
    init(r, client)
    d = client.request(ExchangeType.IKE_AUTH, client.auth_first(with_psk=PSK))[0]
    d = d[:19] + bytes([0]) + d[20:]
    assert not sends(r.receive(d, CLIENT, BOX, T0))


def test_retransmits_are_byte_identical_at_every_step(make_responder):
    from tests.unit.test_eap_server import Peer
    r = make_responder()
    client = Initiator(id_i=(3, b"alice"))
    first = client.sa_init()
    a1 = only(r.receive(first, CLIENT, BOX, T0), act.Send).datagrams
    a2 = only(r.receive(first, CLIENT, BOX, T0 + 1), act.Send).datagrams
    assert a1 == a2
    client.sa_init_done(a1[0])
    peer = Peer("alice", "alice-password-1")
    msg = client.auth_first()
    while True:
        d = client.request(ExchangeType.IKE_AUTH, msg)
        out1 = sends(install_all(r, r.receive(d[0], CLIENT, BOX, T0)))[-1].datagrams
        out2 = only(r.receive(d[0], CLIENT, BOX, T0 + 1), act.Send).datagrams
        assert out1 == out2
        reply = client.open(out1)
        eap = reply.first(EapPayload)
        if eap is None or eap.data[0] != 1:
            break
        msg = [EapPayload(peer.answer(eap.data))]


def test_delete_of_unknown_child_spi_is_harmless(make_responder):
    r, client = established(make_responder)
    before = len(next(iter(r.sas.values())).children)
    reply, _ = exchange(r, client, [DeletePayload(Protocol.ESP, (b"\xde\xad\xbe\xef",))],
                        exchange_type=ExchangeType.INFORMATIONAL)
    assert len(next(iter(r.sas.values())).children) == before
    assert reply.payloads == ()


def test_create_child_sa_before_establishment_ends_half_open(make_responder):
    r = make_responder()
    client = Initiator()
    init(r, client)
    d = client.request(ExchangeType.CREATE_CHILD_SA, [NoncePayload(bytes(32))])[0]
    r.receive(d, CLIENT, BOX, T0)


def test_second_sa_init_same_spi_i_replaces_the_half_open(make_responder):
    r = make_responder()
    a = Initiator()
    init(r, a)
    b = Initiator()
    b.spi_i = a.spi_i
    init(r, b)
    assert len(r.sas) == 1


def test_half_open_flood_triggers_cookies_and_stays_bounded(make_responder):
    r = make_responder(cookie_threshold=64)
    cookies = 0
    for i in range(2000):
        c = Initiator(local=(f"198.51.{i // 250}.{i % 250}", 500))
        for a in sends(r.receive(c.sa_init(), c.local, BOX, T0)):
            msg = parse_message(a.datagrams[0])
            if Notify.COOKIE in msg.notifies():
                cookies += 1
    assert len(r.sas) <= 64
    assert cookies >= 1900


def test_time_jumps_never_raise(make_responder):
    r, client = established(make_responder)
    c2 = Initiator()
    init(r, c2)
    for t in (T0 - 10_000, T0 + 1e9, 0.0, T0 + 1e12, -1.0):
        r.tick(t)
        r.next_deadline()


def test_informational_with_huge_message_id_is_dropped(make_responder):
    r, client = established(make_responder)
    for mid in (0xFFFFFFFF, 0x80000000, 0):
        d = client.request(ExchangeType.INFORMATIONAL, [], msg_id=mid)[0]
        r.receive(d, CLIENT, BOX, T0)
    sa = next(iter(r.sas.values()))
    assert sa.next_msg_id == 2


def test_sas_stuck_in_eap_count_toward_the_cookie_threshold(make_responder):
    """§2.6: an IKE SA is half-open until authenticated. _cookie_ok counts only
    State.HALF_OPEN, so anyone can park SAs in EAP (no credentials needed, and each
    costs the box a DH and a signature) without ever being asked for a cookie."""
    r = make_responder(cookie_threshold=8)
    for i in range(20):
        c = Initiator(local=(f"198.51.100.{i + 1}", 500))
        acts = r.receive(c.sa_init(), c.local, BOX, T0)
        msg = parse_message(only(acts, act.Send).datagrams[0])
        if Notify.COOKIE in msg.notifies():
            break
        c.sa_init_done(msg.raw)
        d = c.request(ExchangeType.IKE_AUTH, c.auth_first())[0]
        r.receive(d, c.local, BOX, T0)
    unauthenticated = sum(1 for s in r.sas.values() if s.state in (State.HALF_OPEN,
                                                                   State.EAP))
    assert unauthenticated <= 8, f"{unauthenticated} unauthenticated SAs, no cookie asked"


def test_old_ike_sa_after_rekey_does_not_linger_forever(make_responder):
    """After an IKE rekey the old SA waits in DELETING for the client's DELETE; if it
    never comes nothing ever removes it (tick ignores DELETING without a pending)."""
    r, client = established(make_responder, dpd_interval=0)
    from firmware.ike import crypto
    pub = crypto.get_dh_group(Dh.CURVE_25519).generate().public
    prop = ike_proposal()
    prop = type(prop)(1, Protocol.IKE, bytes(range(1, 9)), prop.transforms)
    d = client.request(ExchangeType.CREATE_CHILD_SA, [SaPayload((prop,)),
                       NoncePayload(bytes(range(32))), KePayload(Dh.CURVE_25519, pub)])[0]
    r.receive(d, CLIENT, BOX, T0)
    assert len(r.sas) == 2
    r.tick(T0 + 86400 * 30)
    assert len(r.sas) == 1, [s.state for s in r.sas.values()]


def test_disconnect_by_session_id_after_ike_rekey_hits_the_live_sa(make_responder):
    r, client = established(make_responder, dpd_interval=0)
    from firmware.ike import crypto
    pub = crypto.get_dh_group(Dh.CURVE_25519).generate().public
    prop = ike_proposal()
    prop = type(prop)(1, Protocol.IKE, bytes(range(1, 9)), prop.transforms)
    d = client.request(ExchangeType.CREATE_CHILD_SA, [SaPayload((prop,)),
                       NoncePayload(bytes(range(32))), KePayload(Dh.CURVE_25519, pub)])[0]
    r.receive(d, CLIENT, BOX, T0)
    live = next(s for s in r.sas.values() if s.state == State.ESTABLISHED)
    r.disconnect(live.session_id, "operator", T0 + 1)
    assert live.state == State.DELETING, "disconnect went to the rekeyed-away SA"


def test_late_duplicate_sa_init_does_not_open_a_second_ike_sa(make_responder):
    """A duplicated/delayed copy of IKE_SA_INIT arriving after IKE_AUTH began is not
    recognised (_find_half_open only looks at HALF_OPEN SAs) and opens a second IKE SA
    for the same SPIi, with a fresh response (§2.1 asks for the cached one)."""
    r = make_responder()
    client = Initiator()
    init(r, client)
    exchange(r, client, client.auth_first())  # now in EAP
    actions = r.receive(client.init_request, CLIENT, BOX, T0 + 1)
    assert len(r.sas) == 1, f"{len(r.sas)} IKE SAs for one SPIi"
    assert sends(actions)[0].datagrams == (client.init_response,)
