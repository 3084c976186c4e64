"""A client behind NAT whose mapping changes: the IKE SA and the kernel's ESP follow.

RFC 7296 section 2.23: the side not behind NAT sends to where the latest authenticated
message came from. Here that is either an IKE request (the responder sees it) or ESP
(the kernel sees it and the daemon calls Responder.esp_moved).
"""

from __future__ import annotations

from firmware.ike import actions as act
from firmware.ike.constants import ExchangeType
from tests.unit.conftest import PSK
from tests.unit.initiator import Initiator
from tests.unit.test_responder import T0, install_all, only, sends

BOX_500 = ("192.0.2.1", 500)
BOX_4500 = ("192.0.2.1", 4500)
NAT_500 = ("203.0.113.7", 31000)     # the client's NAT, as the box sees it
NAT_4500 = ("203.0.113.7", 31001)
NAT_NEW = ("203.0.113.7", 42424)     # the same NAT after a new mapping
NAT_OTHER_IP = ("198.51.100.9", 5000)


def behind_nat(make_responder):
    """A PSK session from a client behind NAT, moved to port 4500, child installed."""
    r = make_responder(server_auth="psk")
    client = Initiator(nat_source=("10.0.0.5", 500), remote=BOX_500)
    reply = only(r.receive(client.sa_init(), NAT_500, BOX_500, T0), act.Send)
    client.sa_init_done(reply.datagrams[0])
    client.id_r_body = r.policy.id_payload_body()
    actions = []
    for d in client.request(ExchangeType.IKE_AUTH, client.auth_first(with_psk=PSK)):
        actions += r.receive(d, NAT_4500, BOX_4500, T0)
    actions = install_all(r, actions)
    assert sends(actions)[-1].remote == NAT_4500
    ike_sa = next(iter(r.sas.values()))
    child = ike_sa.children[0]
    assert ike_sa.peer_behind_nat and child.installed and child.encap == (4500, 31001)
    return r, client, ike_sa, child


def informational_from(r, client, remote, local, now=T0 + 1):
    actions = []
    for d in client.request(ExchangeType.INFORMATIONAL, []):
        actions += r.receive(d, remote, local, now)
    return actions


def test_ike_request_from_a_new_mapping_moves_the_children(make_responder):
    r, client, ike_sa, child = behind_nat(make_responder)
    actions = informational_from(r, client, NAT_NEW, BOX_4500)

    move = only(actions, act.MoveChild)
    assert move.child is child
    assert (move.old_remote, move.old_encap) == (NAT_4500, (4500, 31001))
    assert (move.remote, move.local) == (NAT_NEW, BOX_4500)
    assert child.encap == (4500, 42424)
    assert ike_sa.remote == NAT_NEW
    assert only(actions, act.Send).remote == NAT_NEW


def test_esp_from_a_new_mapping_moves_ike_and_children(make_responder):
    r, client, ike_sa, child = behind_nat(make_responder)
    spi_in = int.from_bytes(child.spi_in, "big")
    actions = r.esp_moved(spi_in, NAT_OTHER_IP, T0 + 1)

    move = only(actions, act.MoveChild)
    assert (move.old_remote, move.remote) == (NAT_4500, NAT_OTHER_IP)
    assert child.encap == (4500, 5000)
    assert ike_sa.remote == NAT_OTHER_IP
    # The next IKE message goes to the new mapping, and the same event again (more
    # packets raced the kernel update) changes nothing.
    assert not [a for a in r.esp_moved(spi_in, NAT_OTHER_IP, T0 + 2)
                if isinstance(a, act.MoveChild)]
    reply = informational_from(r, client, NAT_OTHER_IP, BOX_4500)
    assert only(reply, act.Send).remote == NAT_OTHER_IP
    assert not [a for a in reply if isinstance(a, act.MoveChild)]


def test_esp_event_for_an_unknown_spi_does_nothing(make_responder):
    r, _client, ike_sa, _child = behind_nat(make_responder)
    assert r.esp_moved(0x01020304, NAT_NEW, T0 + 1) == []
    assert ike_sa.remote == NAT_4500


def test_ike_on_port_500_says_nothing_about_esp(make_responder):
    """A (misbehaving) client's IKE request on port 500 from a new port moves the IKE
    SA, but ESP stays on the 4500 mapping it has."""
    r, client, ike_sa, child = behind_nat(make_responder)
    actions = informational_from(r, client, ("203.0.113.7", 31999), BOX_500)
    assert not [a for a in actions if isinstance(a, act.MoveChild)]
    assert child.encap == (4500, 31001)


def test_client_not_behind_nat_is_not_moved_by_esp(make_responder):
    r = make_responder(server_auth="psk")
    client = Initiator()
    reply = only(r.receive(client.sa_init(), ("192.0.2.10", 500), BOX_500, T0), act.Send)
    client.sa_init_done(reply.datagrams[0])
    client.id_r_body = r.policy.id_payload_body()
    actions = []
    for d in client.request(ExchangeType.IKE_AUTH, client.auth_first(with_psk=PSK)):
        actions += r.receive(d, ("192.0.2.10", 500), BOX_500, T0)
    install_all(r, actions)
    ike_sa = next(iter(r.sas.values()))
    child = ike_sa.children[0]
    assert child.installed and child.encap is None
    assert r.esp_moved(int.from_bytes(child.spi_in, "big"), NAT_NEW, T0 + 1) == []
    assert ike_sa.remote == ("192.0.2.10", 500)
