"""A client behind NAT whose mapping changes: the IKE SA and the kernel's ESP follow.

RFC 7296 section 2.23: the side not behind NAT sends to where the latest authenticated
message came from. Here that is either an IKE request (the responder sees it) or ESP
(the kernel sees it and the daemon calls Responder.esp_moved).
"""

from __future__ import annotations

import os

from firmware.ike import actions as act
from firmware.ike.constants import ExchangeType, Notify, Protocol
from firmware.ike.message import DeletePayload, NoncePayload, NotifyPayload, SaPayload
from firmware.ike.nat import nat_hash
from tests.unit.conftest import PSK
from tests.unit.initiator import Initiator, esp_proposal
from tests.unit.test_responder import T0, install_all, only, sends

BOX_500 = ("192.0.2.1", 500)
BOX_4500 = ("192.0.2.1", 4500)
NAT_500 = ("203.0.113.7", 31000)     # the client's NAT, as the box sees it
NAT_4500 = ("203.0.113.7", 31001)
NAT_NEW = ("203.0.113.7", 42424)     # the same NAT after a new mapping
NAT_OTHER_IP = ("198.51.100.9", 5000)


def behind_nat(make_responder, mobike: bool = False):
    """A PSK session from a client behind NAT, moved to port 4500, child installed."""
    r = make_responder(server_auth="psk")
    client = Initiator(nat_source=("10.0.0.5", 500), remote=BOX_500)
    reply = only(r.receive(client.sa_init(), NAT_500, BOX_500, T0), act.Send)
    client.sa_init_done(reply.datagrams[0])
    client.id_r_body = r.policy.id_payload_body()
    payloads = client.auth_first(with_psk=PSK)
    if mobike:
        payloads.append(NotifyPayload(Notify.MOBIKE_SUPPORTED))
    actions = []
    for d in client.request(ExchangeType.IKE_AUTH, payloads):
        actions += r.receive(d, NAT_4500, BOX_4500, T0)
    actions = install_all(r, actions)
    assert sends(actions)[-1].remote == NAT_4500
    notes = client.open(sends(actions)[-1].datagrams).notifies()
    assert (Notify.MOBIKE_SUPPORTED in notes) == mobike
    assert (Notify.NO_ADDITIONAL_ADDRESSES in notes) == mobike
    ike_sa = next(iter(r.sas.values()))
    child = ike_sa.children[0]
    assert ike_sa.peer_behind_nat and child.installed and child.encap == (4500, 31001)
    return r, client, ike_sa, child


def informational_from(r, client, remote, local, now=T0 + 1, payloads=()):
    """The client's INFORMATIONAL request, as the box receives it from remote."""
    actions = []
    for d in client.request(ExchangeType.INFORMATIONAL, list(payloads)):
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


# --- MOBIKE (RFC 4555) ---------------------------------------------------------------

NEW_NET = ("198.51.100.77", 4500)   # the client on a new network, no NAT in between


def update_sa_addresses(client, remote, local, cookie2=b"\x11" * 16):
    spis = (client.spi_i, client.spi_r)
    return [NotifyPayload(Notify.UPDATE_SA_ADDRESSES),
            NotifyPayload(Notify.NAT_DETECTION_SOURCE_IP, nat_hash(*spis, *remote)),
            NotifyPayload(Notify.NAT_DETECTION_DESTINATION_IP, nat_hash(*spis, *local)),
            NotifyPayload(Notify.COOKIE2, cookie2)]


def test_mobike_move_to_a_network_without_nat_drops_udp_encapsulation(make_responder):
    r, client, ike_sa, child = behind_nat(make_responder, mobike=True)
    actions = informational_from(r, client, NEW_NET, BOX_4500, T0 + 1,
                                 update_sa_addresses(client, NEW_NET, BOX_4500))

    assert ike_sa.remote == NEW_NET and not ike_sa.nat
    assert child.encap is None
    moves = [a for a in actions if isinstance(a, act.MoveChild)]
    # The kernel ends where the IKE SA is, without encapsulation, whatever the steps.
    assert moves[0].old_remote == NAT_4500 and moves[0].old_encap == (4500, 31001)
    assert (moves[-1].remote, moves[-1].child.encap) == (NEW_NET, None)
    reply = only(actions, act.Send)
    assert reply.remote == NEW_NET
    notes = client.open(reply.datagrams).notifies()
    spis = (client.spi_i, client.spi_r)
    assert notes[Notify.COOKIE2].data == b"\x11" * 16
    assert notes[Notify.NAT_DETECTION_SOURCE_IP].data == nat_hash(*spis, *BOX_4500)
    assert notes[Notify.NAT_DETECTION_DESTINATION_IP].data == nat_hash(*spis, *NEW_NET)


def test_mobike_move_behind_a_new_nat_keeps_encapsulation_to_the_new_port(make_responder):
    r, client, ike_sa, child = behind_nat(make_responder, mobike=True)
    nat2 = ("203.0.113.99", 61000)
    # The client believes it is 10.1.1.1:4500; the box sees the NAT's address.
    actions = informational_from(r, client, nat2, BOX_4500, T0 + 1,
                                 update_sa_addresses(client, ("10.1.1.1", 4500), BOX_4500))
    assert ike_sa.peer_behind_nat and ike_sa.remote == nat2
    assert child.encap == (4500, 61000)
    assert only(actions, act.MoveChild).remote == nat2


def test_update_sa_addresses_without_mobike_agreed_is_ignored(make_responder):
    r, client, ike_sa, child = behind_nat(make_responder, mobike=False)
    actions = informational_from(r, client, NAT_NEW, BOX_4500, T0 + 1,
                                 update_sa_addresses(client, NAT_NEW, BOX_4500))
    notes = client.open(only(actions, act.Send).datagrams).notifies()
    assert Notify.NAT_DETECTION_SOURCE_IP not in notes
    assert ike_sa.peer_behind_nat and child.encap == (4500, 42424)


# --- what a review found: retransmits, failed moves, moves during an install ----------

def test_retransmit_from_a_new_mapping_is_answered_there_without_moving(make_responder):
    r, client, ike_sa, child = behind_nat(make_responder)
    (request,) = client.request(ExchangeType.INFORMATIONAL, [])
    first = only(r.receive(request, NAT_4500, BOX_4500, T0 + 1), act.Send)
    again = r.receive(request, NAT_NEW, BOX_4500, T0 + 2)
    assert only(again, act.Send).remote == NAT_NEW
    assert only(again, act.Send).datagrams == first.datagrams
    assert not [a for a in again if isinstance(a, act.MoveChild)]
    assert ike_sa.remote == NAT_4500  # a copy may be an old packet replayed


def test_a_move_the_kernel_refused_is_remembered_and_retried(make_responder):
    r, client, ike_sa, child = behind_nat(make_responder)
    spi_in = int.from_bytes(child.spi_in, "big")
    move = only(r.esp_moved(spi_in, NAT_OTHER_IP, T0 + 1), act.MoveChild)

    # The host reports the kernel put the child back where it was.
    r.move_failed(ike_sa.name, child, move.old_local, move.old_remote, move.old_encap,
                  T0 + 1)
    assert child.where == (BOX_4500, NAT_4500) and child.encap == (4500, 31001)
    # The next ESP reports: not at once (every packet would retry), then again.
    assert not [a for a in r.esp_moved(spi_in, NAT_OTHER_IP, T0 + 2)
                if isinstance(a, act.MoveChild)]
    retry = only(r.esp_moved(spi_in, NAT_OTHER_IP, T0 + 10), act.MoveChild)
    assert (retry.old_remote, retry.remote) == (NAT_4500, NAT_OTHER_IP)


def test_delete_after_a_failed_move_names_where_the_kernel_has_the_child(make_responder):
    r, client, ike_sa, child = behind_nat(make_responder)
    move = only(informational_from(r, client, NAT_OTHER_IP, BOX_4500), act.MoveChild)
    r.move_failed(ike_sa.name, child, move.old_local, move.old_remote, move.old_encap,
                  T0 + 1)
    actions = informational_from(r, client, NAT_OTHER_IP, BOX_4500, T0 + 2,
                                 [DeletePayload(Protocol.IKE)])
    delete = only(actions, act.DeleteChild)
    assert (delete.local, delete.remote) == (BOX_4500, NAT_4500)


def test_a_child_installing_while_the_client_moves_follows_once_installed(make_responder):
    r, client, ike_sa, child = behind_nat(make_responder)
    # A rekey of the child: its install is pending when the client's NAT changes.
    rekey = [NotifyPayload(Notify.REKEY_SA, b"", Protocol.ESP, client.child_spi),
             SaPayload((esp_proposal(os.urandom(4)),)), NoncePayload(os.urandom(32)),
             *client.auth_first()[-2:]]
    actions = []
    for d in client.request(ExchangeType.CREATE_CHILD_SA, rekey):
        actions += r.receive(d, NAT_4500, BOX_4500, T0 + 1)
    install = only(actions, act.InstallChild)
    new_child = install.child
    assert not new_child.installed
    r.esp_moved(int.from_bytes(child.spi_in, "big"), NAT_NEW, T0 + 2)
    done = r.install_result(install.ike_sa, new_child.reqid, None, T0 + 3)
    follow = [a for a in done if isinstance(a, act.MoveChild) and a.child is new_child]
    assert follow and follow[0].remote == NAT_NEW and new_child.encap == (4500, 42424)


# --- MOBIKE: only UPDATE_SA_ADDRESSES moves anything ----------------------------------

def natd(client, remote, local):
    spis = (client.spi_i, client.spi_r)
    return [NotifyPayload(Notify.NAT_DETECTION_SOURCE_IP, nat_hash(*spis, *remote)),
            NotifyPayload(Notify.NAT_DETECTION_DESTINATION_IP, nat_hash(*spis, *local))]


def test_mobike_path_test_from_elsewhere_is_answered_there_and_moves_nothing(make_responder):
    r, client, ike_sa, child = behind_nat(make_responder, mobike=True)
    probe = natd(client, NEW_NET, BOX_4500) + [NotifyPayload(Notify.COOKIE2, b"\x22" * 16)]
    actions = informational_from(r, client, NEW_NET, BOX_4500, T0 + 1,
                                 probe)
    assert not [a for a in actions if isinstance(a, act.MoveChild)]
    assert ike_sa.remote == NAT_4500 and child.where == (BOX_4500, NAT_4500)
    reply = only(actions, act.Send)
    assert reply.remote == NEW_NET
    notes = client.open(reply.datagrams).notifies()
    spis = (client.spi_i, client.spi_r)
    assert notes[Notify.NAT_DETECTION_DESTINATION_IP].data == nat_hash(*spis, *NEW_NET)
    assert notes[Notify.COOKIE2].data == b"\x22" * 16


def test_mobike_session_follows_a_nat_rebinding_but_not_late_esp_after_a_move(
        make_responder):
    r, client, ike_sa, child = behind_nat(make_responder, mobike=True)
    spi_in = int.from_bytes(child.spi_in, "big")
    # The client cannot see its NAT rebind: ESP from the new mapping is followed.
    assert only(r.esp_moved(spi_in, NAT_NEW, T0 + 1), act.MoveChild).remote == NAT_NEW
    # The client moves with MOBIKE, behind another NAT; ESP still in flight on the old
    # path is no news for a while, and news after that.
    nat2 = ("203.0.113.99", 61000)
    for d in client.request(ExchangeType.INFORMATIONAL,
                            update_sa_addresses(client, ("10.1.1.1", 4500), BOX_4500)):
        r.receive(d, nat2, BOX_4500, T0 + 2)
    assert ike_sa.remote == nat2 and ike_sa.peer_behind_nat
    assert not [a for a in r.esp_moved(spi_in, NAT_NEW, T0 + 3)
                if isinstance(a, act.MoveChild)]
    assert ike_sa.remote == nat2
    assert only(r.esp_moved(spi_in, NAT_NEW, T0 + 20), act.MoveChild).remote == NAT_NEW


def test_one_update_moves_each_child_once(make_responder):
    r, client, ike_sa, child = behind_nat(make_responder, mobike=True)
    actions = informational_from(r, client, NEW_NET, BOX_4500, T0 + 1,
                                 update_sa_addresses(client, NEW_NET, BOX_4500))
    move = only(actions, act.MoveChild)
    assert (move.old_remote, move.old_encap) == (NAT_4500, (4500, 31001))
    assert (move.remote, child.encap, child.where) == (NEW_NET, None, (BOX_4500, NEW_NET))


def test_no_nats_allowed_refuses_an_update_that_crossed_a_nat(make_responder):
    import ipaddress
    import struct
    r, client, ike_sa, child = behind_nat(make_responder, mobike=True)
    claimed = (ipaddress.ip_address("10.1.1.1").packed + ipaddress.ip_address(BOX_4500[0])
               .packed + struct.pack("!HH", 4500, 4500))
    request = [NotifyPayload(Notify.UPDATE_SA_ADDRESSES),
               NotifyPayload(Notify.NO_NATS_ALLOWED, claimed)]
    actions = informational_from(r, client, ("203.0.113.99", 61000), BOX_4500, T0 + 1,
                                 request)
    notes = client.open(only(actions, act.Send).datagrams).notifies()
    assert Notify.UNEXPECTED_NAT_DETECTED in notes
    assert not [a for a in actions if isinstance(a, act.MoveChild)]
    assert ike_sa.remote == NAT_4500 and child.encap == (4500, 31001)

    # The same, sent as claimed: no NAT on the way, so the move happens.
    honest = ipaddress.ip_address(NEW_NET[0]).packed + ipaddress.ip_address(
        BOX_4500[0]).packed + struct.pack("!HH", NEW_NET[1], BOX_4500[1])
    actions = informational_from(r, client, NEW_NET, BOX_4500, T0 + 2, [
        NotifyPayload(Notify.UPDATE_SA_ADDRESSES), NotifyPayload(Notify.NO_NATS_ALLOWED, honest)])
    assert only(actions, act.MoveChild).remote == NEW_NET and child.encap is None


def test_client_not_behind_nat_is_answered_elsewhere_but_not_moved(make_responder):
    r = make_responder(server_auth="psk")
    client = Initiator()
    here = ("192.0.2.10", 500)
    reply = only(r.receive(client.sa_init(), here, BOX_500, T0), act.Send)
    client.sa_init_done(reply.datagrams[0])
    client.id_r_body = r.policy.id_payload_body()
    actions = []
    for d in client.request(ExchangeType.IKE_AUTH, client.auth_first(with_psk=PSK)):
        actions += r.receive(d, here, BOX_500, T0)
    install_all(r, actions)
    ike_sa = next(iter(r.sas.values()))
    actions = informational_from(r, client, ("192.0.2.99", 500), BOX_500)
    assert only(actions, act.Send).remote == ("192.0.2.99", 500)
    assert not [a for a in actions if isinstance(a, act.MoveChild)]
    assert ike_sa.remote == here


def test_a_stale_failure_report_does_not_undo_a_later_move(make_responder):
    r, client, ike_sa, child = behind_nat(make_responder)
    spi_in = int.from_bytes(child.spi_in, "big")
    first = only(r.esp_moved(spi_in, NAT_NEW, T0 + 1), act.MoveChild)
    second = only(r.esp_moved(spi_in, NAT_OTHER_IP, T0 + 2), act.MoveChild)
    r.move_failed(ike_sa.name, child, first.old_local, first.old_remote, first.old_encap,
                  T0 + 3, moved_to=(first.local, first.remote))
    assert child.where == (second.local, second.remote)
