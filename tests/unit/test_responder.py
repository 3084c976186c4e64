"""Every exchange driven with plain bytes through the sans-IO responder.

The scripted initiator (initiator.py) plays the client; the clock is a number the test
passes in. Nothing here opens a socket or touches the kernel.
"""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from firmware.eap import EapServer
from firmware.ike import actions as act
from firmware.ike.auth import Signer, verify_signature
from firmware.ike.constants import (
    AuthMethod,
    CfgAttr,
    Dh,
    Encr,
    ExchangeType,
    Integ,
    Notify,
    PayloadType,
    Prf,
    Protocol,
)
from firmware.ike.message import (
    AuthPayload,
    CertPayload,
    CpPayload,
    DeletePayload,
    EapPayload,
    Header,
    IdPayload,
    KePayload,
    NotifyPayload,
    SaPayload,
    TsPayload,
    UnknownPayload,
    parse_message,
)
from firmware.ike.responder import Responder
from firmware.pool import AddressPool
from tests.unit.conftest import PSK
from tests.unit.initiator import BOX, CLIENT, Initiator, esp_proposal, ike_proposal
from tests.unit.test_eap_server import Peer

T0 = 1000.0


def sends(actions) -> list[act.Send]:
    return [a for a in actions if isinstance(a, act.Send)]


def only(actions, kind):
    found = [a for a in actions if isinstance(a, kind)]
    assert len(found) == 1, actions
    return found[0]


def install_all(r: Responder, actions, error=None, now=T0):
    """Plays the host: answers every InstallChild, returns all actions."""
    out = list(actions)
    for a in list(actions):
        if isinstance(a, act.InstallChild):
            out += r.install_result(a.ike_sa, a.child.reqid, error, now)
    return out


def init(r: Responder, client: Initiator, now=T0):
    actions = r.receive(client.sa_init(), CLIENT, BOX, now)
    reply = only(actions, act.Send)
    client.sa_init_done(reply.datagrams[0])
    return actions


def exchange(r, client, payloads, now=T0, exchange_type=ExchangeType.IKE_AUTH):
    datagrams = client.request(exchange_type, payloads)
    actions = []
    for d in datagrams:
        actions += r.receive(d, CLIENT, BOX, now)
    actions = install_all(r, actions, now=now)
    replies = sends(actions)
    assert replies, actions
    return client.open(replies[-1].datagrams), actions


# --- IKE_SA_INIT -----------------------------------------------------------------------

def test_sa_init_answers_with_chosen_proposal_ke_nonce_and_nat_detection(make_responder):
    r = make_responder()
    client = Initiator()
    actions = init(r, client)
    msg = parse_message(only(actions, act.Send).datagrams[0])
    assert msg.header.is_response and not msg.header.is_initiator
    sa = msg.first(SaPayload)
    assert len(sa.proposals) == 1
    assert sa.proposals[0].describe() == "ENCR_AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519"
    assert msg.first(KePayload).group == Dh.CURVE_25519
    notes = msg.notifies()
    assert Notify.NAT_DETECTION_SOURCE_IP in notes and Notify.NAT_DETECTION_DESTINATION_IP in notes
    assert Notify.SIGNATURE_HASH_ALGORITHMS in notes
    assert any(isinstance(a, act.NegotiationStarted) for a in actions)
    assert r.counts()["half_open"] == 1


def test_retransmitted_sa_init_gets_the_same_bytes_and_one_half_open_sa(make_responder):
    r = make_responder()
    client = Initiator()
    request = client.sa_init()
    first = only(r.receive(request, CLIENT, BOX, T0), act.Send).datagrams
    again = only(r.receive(request, CLIENT, BOX, T0 + 1), act.Send).datagrams
    assert again == first
    assert len(r.sas) == 1


def test_invalid_ke_names_our_preferred_group_and_keeps_no_state(make_responder):
    r = make_responder()
    # The client allows X25519 and ECP-256 but guessed ECP-384 for its KE.
    client = Initiator(group=Dh.ECP_256, proposals=(ike_proposal(dh=(Dh.ECP_384,
                                                                   Dh.MODP_2048)),))
    actions = r.receive(client.sa_init(group=Dh.ECP_384), CLIENT, BOX, T0)
    # ECP_384 is acceptable and in the proposal: no INVALID_KE.
    assert parse_message(only(actions, act.Send).datagrams[0]).first(KePayload)

    r = make_responder()
    client = Initiator(group=Dh.MODP_2048,
                       proposals=(ike_proposal(dh=(Dh.ECP_256, Dh.MODP_2048)),))
    msg = parse_message(only(r.receive(client.sa_init(group=Dh.MODP_3072), CLIENT, BOX, T0),
                             act.Send).datagrams[0])
    note = msg.first(NotifyPayload)
    assert note.type == Notify.INVALID_KE_PAYLOAD
    assert struct.unpack("!H", note.data)[0] == Dh.ECP_256
    assert r.sas == {}


def test_weak_groups_are_refused_with_a_plain_reason(make_responder):
    r = make_responder()
    client = Initiator(group=Dh.MODP_2048, proposals=(ike_proposal(
        encr=Encr.AES_CBC, key_bits=128, integ=Integ.HMAC_SHA1_96, prf=Prf.HMAC_SHA1,
        dh=(Dh.MODP_768, Dh.MODP_1024)),))
    actions = r.receive(client.sa_init(group=Dh.MODP_1024), CLIENT, BOX, T0)
    msg = parse_message(only(actions, act.Send).datagrams[0])
    assert msg.first(NotifyPayload).type == Notify.NO_PROPOSAL_CHOSEN
    failure = only(actions, act.Failure)
    assert failure.klass == "proposal"
    assert "only weak Diffie-Hellman groups (MODP_768, MODP_1024)" in failure.reason
    assert "legacy-windows" in failure.reason
    assert r.sas == {}


def test_legacy_profile_accepts_what_windows_offers(make_responder):
    r = make_responder(profile="legacy-windows")
    client = Initiator(group=Dh.MODP_1024, proposals=(ike_proposal(
        encr=Encr.AES_CBC, key_bits=256, integ=Integ.HMAC_SHA1_96, prf=Prf.HMAC_SHA1,
        dh=(Dh.MODP_1024,)),))
    init(r, client)
    assert len(r.sas) == 1


def test_des_and_md5_are_never_accepted_even_in_legacy(make_responder):
    r = make_responder(profile="legacy-windows")
    client = Initiator(group=Dh.MODP_1024, proposals=(ike_proposal(
        encr=Encr.DES, key_bits=None, integ=Integ.HMAC_MD5_96, prf=Prf.HMAC_MD5,
        dh=(Dh.MODP_1024,)),))
    actions = r.receive(client.sa_init(group=Dh.MODP_1024), CLIENT, BOX, T0)
    assert only(actions, act.Failure).klass == "proposal"


def test_malformed_sa_init_is_dropped_without_state(make_responder):
    r = make_responder()
    client = Initiator()
    good = client.sa_init()
    for bad in (good[:40], good[:-3], good[:24] + struct.pack("!I", len(good) + 9) + good[28:]):
        assert sends(r.receive(bad, CLIENT, BOX, T0)) == []
    assert r.sas == {}


def test_unknown_critical_payload_gets_unsupported_critical(make_responder):
    r = make_responder()
    client = Initiator()
    request = client.sa_init()
    # Splice an unknown payload (type 200, critical) in front of the others.
    hdr = Header.parse(request)
    body = request[28:]
    extra = struct.pack("!BBH", hdr.next_payload, 0x80, 8) + b"abcd"
    forged = Header(hdr.spi_i, hdr.spi_r, 200, hdr.exchange, hdr.flags, 0).pack(
        28 + len(extra) + len(body)) + extra + body
    msg = parse_message(only(r.receive(forged, CLIENT, BOX, T0), act.Send).datagrams[0])
    note = msg.first(NotifyPayload)
    assert note.type == Notify.UNSUPPORTED_CRITICAL_PAYLOAD and note.data == bytes([200])


def test_unknown_non_critical_payload_is_skipped(make_responder):
    r = make_responder()
    client = Initiator()
    actions = r.receive(client.sa_init(extra=[UnknownPayload(200, False, b"xyz")]),
                        CLIENT, BOX, T0)
    assert parse_message(only(actions, act.Send).datagrams[0]).first(KePayload)


def test_nat_detected_when_the_source_hash_differs(make_responder):
    r = make_responder()
    client = Initiator(nat_source=("10.0.0.5", 500))  # it thinks it is 10.0.0.5
    init(r, client)
    ike_sa = next(iter(r.sas.values()))
    assert ike_sa.peer_behind_nat and not ike_sa.box_behind_nat


def test_cookie_demanded_under_load(make_responder):
    r = make_responder(cookie_threshold=2)
    for _ in range(2):
        init(r, Initiator())
    client = Initiator()
    msg = parse_message(only(r.receive(client.sa_init(), CLIENT, BOX, T0), act.Send)
                        .datagrams[0])
    cookie = msg.first(NotifyPayload)
    assert cookie.type == Notify.COOKIE
    assert len(r.sas) == 2
    retry = client.sa_init(extra=[NotifyPayload(Notify.COOKIE, cookie.data)])
    msg = parse_message(only(r.receive(retry, CLIENT, BOX, T0), act.Send).datagrams[0])
    assert msg.first(KePayload) is not None and len(r.sas) == 3


# --- IKE_AUTH with a PSK ---------------------------------------------------------------

def test_psk_client_gets_address_and_child(make_responder):
    r = make_responder(server_auth="psk")
    client = Initiator()
    init(r, client)
    client.id_r_body = r.policy.id_payload_body()
    reply, actions = exchange(r, client, client.auth_first(with_psk=PSK))
    auth = reply.first(AuthPayload)
    assert auth.data == client.expected_box_auth(PSK)
    cp = reply.first(CpPayload)
    assert dict(cp.attributes)[CfgAttr.INTERNAL_IP4_ADDRESS] == bytes([10, 99, 0, 2])
    assert dict(cp.attributes)[CfgAttr.INTERNAL_IP4_DNS] == bytes([198, 51, 100, 53])
    ts_i = reply.first(TsPayload, PayloadType.TSi).selectors
    assert [t.describe() for t in ts_i] == ["10.99.0.2/32"]
    assert reply.first(SaPayload).proposals[0].protocol == Protocol.ESP
    install = only(actions, act.InstallChild)
    assert install.child.spi_out == client.child_spi
    up = only(actions, act.SessionUp)
    assert up.session["assigned"] == ["10.99.0.2"] and up.session["child_state"] == "installed"


def test_wrong_psk_gets_authentication_failed_and_leaves_nothing(make_responder):
    pool = AddressPool("10.99.0.0/24")
    r = make_responder(pool=pool)
    client = Initiator()
    init(r, client)
    reply, actions = exchange(r, client, client.auth_first(with_psk=b"wrong" * 4))
    assert reply.first(NotifyPayload).type == Notify.AUTHENTICATION_FAILED
    assert only(actions, act.Failure).klass == "auth"
    assert r.sas == {} and pool.in_use() == 0
    assert not any(isinstance(a, act.InstallChild) for a in actions)


def test_retransmitted_auth_request_gets_the_cached_response(make_responder):
    r = make_responder()
    client = Initiator()
    init(r, client)
    datagrams = client.request(ExchangeType.IKE_AUTH, client.auth_first(with_psk=PSK))
    first = install_all(r, r.receive(datagrams[0], CLIENT, BOX, T0))
    again = r.receive(datagrams[0], CLIENT, BOX, T0 + 2)
    assert sends(again)[0].datagrams == sends(first)[-1].datagrams
    assert not any(isinstance(a, act.InstallChild) for a in again)
    assert len(r.sessions()) == 1


def test_kernel_install_failure_keeps_the_ike_sa_and_says_why(make_responder):
    r = make_responder()
    client = Initiator()
    init(r, client)
    datagrams = client.request(ExchangeType.IKE_AUTH, client.auth_first(with_psk=PSK))
    actions = r.receive(datagrams[0], CLIENT, BOX, T0)
    assert sends(actions) == []  # nothing claimed before the kernel answers
    install = only(actions, act.InstallChild)
    after = r.install_result(install.ike_sa, install.child.reqid, "no ESP in this kernel", T0)
    reply = client.open(only(after, act.Send).datagrams)
    assert reply.first(NotifyPayload).type == Notify.NO_PROPOSAL_CHOSEN
    assert reply.first(SaPayload) is None and reply.first(CpPayload) is not None
    assert only(after, act.Failure).klass == "kernel"
    session = r.sessions()[0]
    assert session["child_state"] == "install-failed: no ESP in this kernel"


def test_tampered_auth_message_is_dropped(make_responder):
    r = make_responder()
    client = Initiator()
    init(r, client)
    datagram = client.request(ExchangeType.IKE_AUTH, client.auth_first(with_psk=PSK))[0]
    tampered = datagram[:-1] + bytes([datagram[-1] ^ 1])
    assert sends(r.receive(tampered, CLIENT, BOX, T0)) == []
    assert next(iter(r.sas.values())).next_msg_id == 1  # the real one is still welcome


def test_pool_exhausted_is_reported(make_responder):
    r = make_responder(pool=AddressPool("10.99.0.0/29"))  # .2 to .6: five addresses
    for _ in range(5):
        client = Initiator()
        init(r, client)
        exchange(r, client, client.auth_first(with_psk=PSK))
    client = Initiator()
    init(r, client)
    reply, actions = exchange(r, client, client.auth_first(with_psk=PSK))
    assert reply.first(NotifyPayload).type == Notify.INTERNAL_ADDRESS_FAILURE
    assert only(actions, act.Failure).klass == "pool"


# --- IKE_AUTH with a certificate and EAP --------------------------------------------

def eap_login(r, client, peer, now=T0):
    reply, _ = exchange(r, client, client.auth_first(), now)
    client.id_r_body = reply.first(IdPayload, PayloadType.IDr).body()
    all_replies = [reply]
    while True:
        eap = reply.first(EapPayload)
        if eap is None or eap.data[0] != 1:
            return reply, all_replies
        reply, actions = exchange(r, client, [EapPayload(peer.answer(eap.data))], now)
        all_replies.append(reply)


def final_auth(r, client, peer_msk, now=T0):
    secret = peer_msk if peer_msk else client.keys.sk_pi
    return exchange(r, client, [AuthPayload(AuthMethod.PSK, client.psk_auth(secret))], now)


def test_eap_mschapv2_with_certificate_end_to_end(make_responder, server_credentials):
    r = make_responder()
    client = Initiator(id_i=(1, bytes([192, 0, 2, 10])))  # IDi is an address: EAP-Identity
    init(r, client)
    first, _ = exchange(r, client, client.auth_first())
    certs = first.get(CertPayload)
    assert len(certs) == 2  # server certificate and CA, whatever the client asked
    auth = first.first(AuthPayload)
    assert auth.method == AuthMethod.DIGITAL_SIGNATURE
    client.id_r_body = first.first(IdPayload, PayloadType.IDr).body()
    assert verify_signature(server_credentials[1].public_key(), auth.method, auth.data,
                            client.box_octets())
    eap = first.first(EapPayload).data
    assert eap[0] == 1 and eap[4] == 1  # Request, Identity
    peer = Peer("alice", "alice-password-1")
    reply, _ = exchange(r, client, [EapPayload(peer.answer(eap))])
    while reply.first(EapPayload).data[0] == 1:
        reply, _ = exchange(r, client, [EapPayload(peer.answer(reply.first(EapPayload).data))])
    assert reply.first(EapPayload).data[0] == 3  # EAP-Success
    assert peer.auth_ok is True
    done, actions = final_auth(r, client, peer.msk)
    assert done.first(AuthPayload).data == client.expected_box_auth(peer.msk)
    assert dict(done.first(CpPayload).attributes)[CfgAttr.INTERNAL_IP4_ADDRESS]
    up = only(actions, act.SessionUp).session
    assert up["user"] == "alice" and up["auth"] == "mschapv2"


def test_eap_identity_round_skipped_when_idi_names_the_user(make_responder):
    r = make_responder()
    client = Initiator(id_i=(3, b"alice"))
    init(r, client)
    first, _ = exchange(r, client, client.auth_first())
    eap = first.first(EapPayload).data
    assert eap[4] == 26  # straight to MSCHAPv2


def test_eap_wrong_password_fails_and_frees_everything(make_responder):
    pool = AddressPool("10.99.0.0/24")
    r = make_responder(pool=pool)
    client = Initiator()
    init(r, client)
    peer = Peer("alice", "not-her-password")
    reply, replies = eap_login(r, client, peer)
    assert "E=691" in (peer.failure_message or "")
    codes = [rep.first(EapPayload).data[0] for rep in replies if rep.first(EapPayload)]
    assert codes[-1] == 4  # EAP-Failure
    assert reply.first(NotifyPayload).type == Notify.AUTHENTICATION_FAILED
    assert r.sas == {} and pool.in_use() == 0


def test_eap_md5_uses_sk_pi_for_the_final_auth(make_responder, users):
    r = make_responder()
    r.policy = type(r.policy)(**{**r.policy.__dict__, "eap_factory": lambda identity:
                                 EapServer(users, methods=("md5",), identity=identity)})
    client = Initiator(id_i=(3, b"mallory"))
    init(r, client)
    peer = Peer("mallory", "md5-password")
    reply, _ = eap_login(r, client, peer)
    assert reply.first(EapPayload).data[0] == 3
    done, actions = final_auth(r, client, None)
    assert done.first(AuthPayload).data == client.expected_box_auth(client.keys.sk_pr)
    assert only(actions, act.SessionUp).session["auth"] == "md5"


def test_final_auth_with_wrong_msk_is_refused(make_responder):
    r = make_responder()
    client = Initiator(id_i=(3, b"alice"))
    init(r, client)
    peer = Peer("alice", "alice-password-1")
    eap_login(r, client, peer)
    reply, actions = final_auth(r, client, bytes(64))
    assert reply.first(NotifyPayload).type == Notify.AUTHENTICATION_FAILED
    assert only(actions, act.Failure).klass == "auth" and r.sas == {}


def test_large_auth_response_is_fragmented_and_reassembles(make_responder):
    r = make_responder(fragment_size=576)
    client = Initiator(fragmentation=True)
    init(r, client)
    datagrams = client.request(ExchangeType.IKE_AUTH, client.auth_first())
    reply = only(r.receive(datagrams[0], CLIENT, BOX, T0), act.Send)
    assert len(reply.datagrams) > 1 and all(len(d) <= 576 for d in reply.datagrams)
    msg = client.open(reply.datagrams)
    assert len(msg.get(CertPayload)) == 2


def test_fragmented_request_is_reassembled(make_responder):
    r = make_responder()
    client = Initiator(fragmentation=True)
    init(r, client)
    datagrams = client.request(ExchangeType.IKE_AUTH, client.auth_first(with_psk=PSK),
                               fragment=200)
    assert len(datagrams) > 1
    actions = []
    for d in reversed(datagrams):  # out of order on purpose
        actions += r.receive(d, CLIENT, BOX, T0)
    actions = install_all(r, actions)
    assert only(actions, act.SessionUp)


def test_half_open_sa_expires(make_responder):
    r = make_responder(half_open_timeout=30)
    init(r, Initiator())
    assert r.next_deadline() == T0 + 30
    assert r.tick(T0 + 29) == [] or not r.sas == {}
    actions = r.tick(T0 + 31)
    assert r.sas == {}
    assert "in time" in only(actions, act.Failure).reason


# --- INFORMATIONAL -------------------------------------------------------------------

def established(make_responder, **kw):
    r = make_responder(**kw)
    client = Initiator()
    init(r, client)
    exchange(r, client, client.auth_first(with_psk=PSK))
    return r, client


def test_liveness_check_is_answered(make_responder):
    r, client = established(make_responder)
    reply, _ = exchange(r, client, [], exchange_type=ExchangeType.INFORMATIONAL)
    assert reply.payloads == ()


def test_client_delete_ends_session_and_frees_lease(make_responder):
    pool = AddressPool("10.99.0.0/24")
    r, client = established(make_responder, pool=pool)
    reply, actions = exchange(r, client, [DeletePayload(Protocol.IKE)],
                              exchange_type=ExchangeType.INFORMATIONAL)
    assert only(actions, act.SessionDown).reason == "the client closed the session"
    assert only(actions, act.DeleteChild)
    assert r.sas == {} and pool.in_use() == 0


def test_child_delete_answers_with_our_spi(make_responder):
    r, client = established(make_responder)
    ike_sa = next(iter(r.sas.values()))
    ours = ike_sa.children[0].spi_in
    reply, actions = exchange(r, client, [DeletePayload(Protocol.ESP, (client.child_spi,))],
                              exchange_type=ExchangeType.INFORMATIONAL)
    assert reply.first(DeletePayload).spis == (ours,)
    assert only(actions, act.DeleteChild) and ike_sa.children == []
    assert len(r.sessions()) == 1  # the IKE SA stays


def test_operator_disconnect_sends_delete_and_retransmits(make_responder):
    r, client = established(make_responder, dpd_interval=0)
    ike_sa = next(iter(r.sas.values()))
    actions = r.disconnect(ike_sa.name, "disconnected by the operator", T0 + 1)
    request = client.open(only(actions, act.Send).datagrams)
    assert request.first(DeletePayload).protocol == Protocol.IKE
    assert only(actions, act.DeleteChild)
    again = r.tick(T0 + 3.5)
    assert only(again, act.Send).datagrams == only(actions, act.Send).datagrams
    # The client answers; the session is gone.
    header = Header(client.spi_i, client.spi_r, 0, ExchangeType.INFORMATIONAL, 0x28, 0)
    from firmware.ike import sk
    answer = sk.seal(client.mine, header, [])
    done = r.receive(answer, CLIENT, BOX, T0 + 4)
    assert only(done, act.SessionDown).reason == "disconnected by the operator"
    assert r.sas == {}


def test_dead_peer_is_detected(make_responder):
    r, client = established(make_responder, dpd_interval=10)
    actions = r.tick(T0 + 11)
    assert only(actions, act.Send)
    t = T0 + 11
    down = []
    for _ in range(10):
        t += 40
        down += r.tick(t)
    assert "dead peer" in only(down, act.SessionDown).reason


def test_message_outside_the_window_is_dropped(make_responder):
    r, client = established(make_responder)
    datagrams = client.request(ExchangeType.INFORMATIONAL, [], msg_id=7)
    assert sends(r.receive(datagrams[0], CLIENT, BOX, T0)) == []


def test_malformed_inner_payload_gets_invalid_syntax_but_keeps_established_sa(make_responder):
    r, client = established(make_responder)
    # A DELETE whose SPI count does not match its length, inside a valid SK payload.
    from firmware.ike import sk
    from firmware.ike.message import UnknownPayload as U
    header = Header(client.spi_i, client.spi_r, 0, ExchangeType.INFORMATIONAL, 0x08,
                    client.msg_id)
    client.msg_id += 1
    raw = sk.seal(client.mine, header, [U(PayloadType.DELETE, False, b"\x03\x04\x00\x05")])
    reply = client.open(only(r.receive(raw, CLIENT, BOX, T0), act.Send).datagrams)
    assert reply.first(NotifyPayload).type == Notify.INVALID_SYNTAX
    assert len(r.sessions()) == 1


# --- CREATE_CHILD_SA ---------------------------------------------------------------

def test_child_rekey_installs_new_pair(make_responder):
    r, client = established(make_responder)
    import os as _os

    from firmware.ike.message import NoncePayload
    new_spi = _os.urandom(4)
    payloads = [NotifyPayload(Notify.REKEY_SA, b"", Protocol.ESP, client.child_spi),
                SaPayload((esp_proposal(new_spi),)), NoncePayload(_os.urandom(32)),
                *client.auth_first()[-2:]]
    reply, actions = exchange(r, client, payloads, exchange_type=ExchangeType.CREATE_CHILD_SA)
    assert reply.first(SaPayload).proposals[0].spi != b""
    install = only(actions, act.InstallChild)
    assert install.child.spi_out == new_spi
    ike_sa = next(iter(r.sas.values()))
    assert len(ike_sa.children) == 2
    # The new pair hangs off the same kernel policies: same reqid as the old pair.
    assert install.child.reqid == ike_sa.children[0].reqid
    # The client then deletes the old pair.
    reply, actions = exchange(r, client, [DeletePayload(Protocol.ESP, (client.child_spi,))],
                              exchange_type=ExchangeType.INFORMATIONAL)
    assert len(ike_sa.children) == 1 and ike_sa.children[0].spi_out == new_spi


def test_ike_rekey_moves_the_session(make_responder):
    import os as _os

    from firmware.ike import crypto
    from firmware.ike.message import NoncePayload, Proposal
    pool = AddressPool("10.99.0.0/24")
    r, client = established(make_responder, pool=pool)
    dh = crypto.get_dh_group(Dh.CURVE_25519).generate()
    proposal = Proposal(1, Protocol.IKE, _os.urandom(8), ike_proposal().transforms)
    reply, actions = exchange(r, client, [SaPayload((proposal,)), NoncePayload(_os.urandom(32)),
                                          KePayload(Dh.CURVE_25519, dh.public)],
                              exchange_type=ExchangeType.CREATE_CHILD_SA)
    new_spi_r = reply.first(SaPayload).proposals[0].spi
    assert len(new_spi_r) == 8 and reply.first(KePayload) is not None
    assert len(r.sas) == 2
    # The client deletes the old IKE SA; the session carries on in the new one.
    reply, actions = exchange(r, client, [DeletePayload(Protocol.IKE)],
                              exchange_type=ExchangeType.INFORMATIONAL)
    assert not any(isinstance(a, (act.SessionDown, act.DeleteChild)) for a in actions)
    sessions = r.sessions()
    assert len(sessions) == 1 and sessions[0]["ike_sa"].endswith(new_spi_r.hex())
    assert pool.in_use() == 1


def test_rekeyed_ike_sa_goes_away_without_the_clients_delete(make_responder):
    import os as _os

    from firmware.ike import crypto
    from firmware.ike.message import NoncePayload, Proposal
    r, client = established(make_responder, dpd_interval=0)
    dh = crypto.get_dh_group(Dh.CURVE_25519).generate()
    proposal = Proposal(1, Protocol.IKE, _os.urandom(8), ike_proposal().transforms)
    exchange(r, client, [SaPayload((proposal,)), NoncePayload(_os.urandom(32)),
                         KePayload(Dh.CURVE_25519, dh.public)],
             exchange_type=ExchangeType.CREATE_CHILD_SA)
    assert len(r.sas) == 2
    actions = r.tick(T0 + 61)
    assert len(r.sas) == 1 and len(r.sessions()) == 1
    assert not any(isinstance(a, act.SessionDown) for a in actions)


# --- the box's own AUTH ------------------------------------------------------------

@pytest.mark.parametrize("key_type, peer_hashes, method", [
    ("rsa", True, AuthMethod.DIGITAL_SIGNATURE),
    ("rsa", False, AuthMethod.RSA_SIG),
    ("ecdsa", True, AuthMethod.DIGITAL_SIGNATURE),
    ("ecdsa", False, AuthMethod.ECDSA_256),
])
def test_box_signature_methods(key_type, peer_hashes, method):
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) \
        if key_type == "rsa" else ec.generate_private_key(ec.SECP256R1())
    octets = b"signed octets"
    hashes_offered = (2, 3, 4) if peer_hashes else ()
    got_method, data = Signer(key).sign(octets, hashes_offered)
    assert got_method == method
    assert verify_signature(key.public_key(), got_method, data, octets)
    assert not verify_signature(key.public_key(), got_method, data, octets + b"x")


def test_odd_certreq_is_only_a_hint(make_responder):
    from firmware.ike.message import CertReqPayload
    r = make_responder()
    client = Initiator(id_i=(3, b"alice"))
    init(r, client)
    first, _ = exchange(r, client, client.auth_first(extra=[CertReqPayload(4, b"\x01" * 7),
                                                            CertReqPayload(99, b"")]))
    assert len(first.get(CertPayload)) == 2 and first.first(EapPayload) is not None


def test_psk_server_auth_with_eap_client_uses_psk_for_the_box(make_responder):
    r = make_responder(server_auth="psk")
    client = Initiator(id_i=(3, b"alice"))
    init(r, client)
    first, _ = exchange(r, client, client.auth_first())
    client.id_r_body = first.first(IdPayload, PayloadType.IDr).body()
    assert first.get(CertPayload) == []
    assert first.first(AuthPayload).data == client.expected_box_auth(PSK)


@pytest.mark.parametrize("proposal", [
    ike_proposal(encr=Encr.AES_CBC, key_bits=256, integ=Integ.HMAC_SHA2_256_128),
    ike_proposal(encr=Encr.AES_CBC, key_bits=128, integ=Integ.HMAC_SHA2_512_256,
                 prf=Prf.HMAC_SHA2_512),
    ike_proposal(encr=Encr.CHACHA20_POLY1305, key_bits=None),
], ids=["cbc-sha256", "cbc-sha512", "chacha20"])
def test_sk_payload_with_each_ike_cipher(make_responder, proposal):
    r = make_responder()
    client = Initiator(proposals=(proposal,))
    init(r, client)
    reply, actions = exchange(r, client, client.auth_first(with_psk=PSK))
    assert only(actions, act.SessionUp)
    assert reply.first(CpPayload) is not None


def test_reqids_cycle_inside_their_range_and_skip_those_in_use(make_responder):
    r, _client = established(make_responder, reqid_base=100, reqid_count=3)
    in_use = next(iter(r.sas.values())).children[0].reqid
    assert in_use == 100
    assert [r.new_reqid() for _ in range(4)] == [101, 102, 101, 102]
