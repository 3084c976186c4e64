"""Hostile input, second batch: key exchange values, odd proposals, resource limits."""

from __future__ import annotations

import ipaddress

import pytest

from firmware.ike import actions as act
from firmware.ike import crypto
from firmware.ike.constants import Dh, Encr, ExchangeType, Notify, PayloadType, Prf, Protocol
from firmware.ike.constants import TransformType
from firmware.ike.message import (
    KePayload, NoncePayload, Proposal, SaPayload, TrafficSelector, Transform, TsPayload,
    parse_message,
)

from tests.unit.initiator import BOX, CLIENT, Initiator, esp_proposal, ike_proposal
from tests.unit.test_responder_attacks import established
from tests.unit.test_responder import (
    PSK, T0, install_all, sends,
)


def sa_init_with_ke(r, group, ke, proposals=None):
    c = Initiator(group=group, proposals=proposals)
    data = c.sa_init()
    msg = parse_message(data)
    from firmware.ike.message import encode_message
    payloads = [KePayload(group, ke) if isinstance(p, KePayload) else p
                for p in msg.payloads]
    return r.receive(encode_message(msg.header, payloads), CLIENT, BOX, T0)


P256_SIZE = crypto.get_dh_group(Dh.ECP_256).public_size
MODP2048 = crypto.get_dh_group(Dh.MODP_2048).public_size


@pytest.mark.parametrize("group,ke", [
    (Dh.CURVE_25519, bytes(32)),                                   # all-zero point
    (Dh.CURVE_25519, b"\x01" + bytes(31)),                         # low order (1)
    (Dh.CURVE_25519, bytes.fromhex(
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")),  # order 8
    (Dh.ECP_256, bytes(P256_SIZE)),
    (Dh.ECP_256, b"\x01" * P256_SIZE),
    (Dh.MODP_2048, bytes(MODP2048)),
    (Dh.MODP_2048, bytes(MODP2048 - 1) + b"\x01"),
    (Dh.MODP_2048, b"\xff" * MODP2048),
    (Dh.CURVE_25519, b""),
    (Dh.CURVE_25519, bytes(31)),
    (Dh.CURVE_25519, bytes(4000)),
])
def test_bad_key_exchange_values_make_no_ike_sa(make_responder, group, ke):
    r = make_responder()
    actions = sa_init_with_ke(r, group, ke)
    assert not r.sas
    for s in sends(actions):
        notes = parse_message(s.datagrams[0]).notifies()
        assert Notify.INVALID_SYNTAX in notes or Notify.INVALID_KE_PAYLOAD in notes


@pytest.mark.parametrize("proposal", [
    Proposal(1, Protocol.IKE, b"", ()),
    Proposal(1, Protocol.IKE, b"\x01\x02\x03", ike_proposal().transforms),
    Proposal(0, Protocol.IKE, b"", ike_proposal().transforms),
    Proposal(1, Protocol.IKE, b"", (Transform(TransformType.ENCR, Encr.AES_GCM_16),) +
             ike_proposal().transforms[1:]),                     # GCM without key length
    Proposal(1, Protocol.IKE, b"", (Transform(TransformType.ENCR, Encr.AES_GCM_16, 0),) +
             ike_proposal().transforms[1:]),
    Proposal(1, Protocol.IKE, b"", (Transform(TransformType.ENCR, Encr.AES_CBC, 256),
                                    Transform(TransformType.PRF, Prf.HMAC_SHA2_256),
                                    Transform(TransformType.DH, Dh.CURVE_25519))),  # no INTEG
    Proposal(1, Protocol.ESP, b"\x01\x02\x03\x04", ike_proposal().transforms),
    Proposal(1, 99, b"", ike_proposal().transforms),
])
def test_odd_ike_proposals_do_not_raise(make_responder, proposal):
    r = make_responder()
    c = Initiator(proposals=(proposal,))
    actions = r.receive(c.sa_init(), CLIENT, BOX, T0)
    assert sends(actions)


def test_unbounded_children_per_ike_sa(make_responder):
    """One authenticated client asks for CHILD_SA after CHILD_SA; each becomes a kernel
    SA pair. Nothing limits the count."""
    r, client = established(make_responder)
    ike_sa = next(iter(r.sas.values()))
    everything = (TrafficSelector.from_network(ipaddress.ip_network("0.0.0.0/0")),)
    for i in range(300):
        d = client.request(ExchangeType.CREATE_CHILD_SA, [
            SaPayload((esp_proposal(i.to_bytes(2, "big") + b"\x01\x01"),)),
            NoncePayload(bytes(32)), TsPayload(PayloadType.TSi, everything),
            TsPayload(PayloadType.TSr, everything)])[0]
        install_all(r, r.receive(d, CLIENT, BOX, T0))
    assert len(ike_sa.children) <= 64, f"{len(ike_sa.children)} CHILD_SAs for one client"


def test_disconnect_with_malformed_name_does_not_raise(make_responder):
    r, client = established(make_responder)
    for name in ("00/zz", "/", "zz", ""):
        r.disconnect(name, "operator", T0)


def test_kernel_sa_is_removed_when_the_client_deletes_its_ike_sa(make_responder):
    """Responder._remove deletes the IKE SA from r.sas and then emits DeleteChild; the
    daemon's _delete_child looks the IKE SA up again (responder.find), gets None and
    child_record(None, child) raises AttributeError, which is logged as a warning: the
    kernel keeps the ESP SAs and policies of every session that ended by DELETE, DPD,
    INITIAL_CONTACT or shutdown."""
    import types
    from firmware.daemon import Daemon
    from firmware.ike.message import DeletePayload
    from tests.unit.test_responder_attacks import established as est
    r, client = est(make_responder)
    deleted = []
    kernel = types.SimpleNamespace(delete_child=lambda record: deleted.append(record))
    host = types.SimpleNamespace(responder=r, kernel=kernel)
    d = client.request(ExchangeType.INFORMATIONAL, [DeletePayload(Protocol.IKE)])[0]
    actions = r.receive(d, CLIENT, BOX, T0)
    dels = [a for a in actions if isinstance(a, act.DeleteChild)]
    assert dels, "the installed child must be deleted"
    for a in dels:
        Daemon._delete_child(host, a)
    assert len(deleted) == len(dels)


def test_psk_client_naming_an_eap_user_replaces_her_session(make_responder):
    """A PSK client picks its IDi freely; with INITIAL_CONTACT from the same public
    address (one office NAT) it ends the session of the EAP user of that name
    (ike_auth._drop_older_sessions matches user name + IP only)."""
    from firmware.eap import EapServer  # noqa: F401
    from firmware.ike.constants import IdType, Notify as N
    from firmware.ike.message import NotifyPayload
    from tests.unit.test_eap_server import Peer
    from tests.unit.test_responder import eap_login, final_auth
    r = make_responder()
    alice = Initiator(id_i=(IdType.ID_RFC822_ADDR, b"alice"))
    from tests.unit.test_responder import init
    init(r, alice)
    peer = Peer("alice", "alice-password-1")
    eap_login(r, alice, peer)
    final_auth(r, alice, peer.msk)
    assert len(r.sessions()) == 1
    psk = Initiator(id_i=(IdType.ID_RFC822_ADDR, b"alice"))
    init(r, psk)
    from tests.unit.test_responder import exchange
    exchange(r, psk, psk.auth_first(with_psk=PSK, extra=[NotifyPayload(N.INITIAL_CONTACT)]))
    users = sorted((s["user"], s["auth"]) for s in r.sessions())
    assert ("alice", "mschapv2") in users, users
