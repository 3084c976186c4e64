"""The box rekeys a CHILD_SA the client did not rekey: the kernel's soft lifetime
starts a CREATE_CHILD_SA the box initiates, then the box deletes the old pair."""

from __future__ import annotations

import os

from firmware.ike import actions as act
from firmware.ike import sk
from firmware.ike.constants import ExchangeType, Flags, Notify, PayloadType, Protocol
from firmware.ike.keys import child_keymat
from firmware.ike.message import (
    DeletePayload, Header, NoncePayload, NotifyPayload, SaPayload, TsPayload,
)
from tests.unit.initiator import BOX, CLIENT, esp_proposal
from tests.unit.test_responder import T0, established, exchange, only, sends

LIFETIME = 3600


def session(make_responder, **kw):
    r, client = established(make_responder, child_rekey_time=LIFETIME, **kw)
    ike_sa = next(iter(r.sas.values()))
    return r, client, ike_sa, ike_sa.children[0]


def answer(client, request, payloads):
    """The client answers a request the box sent."""
    header = Header(client.spi_i, client.spi_r, 0, request.header.exchange,
                    Flags.INITIATOR | Flags.RESPONSE, request.header.msg_id)
    return sk.seal(client.mine, header, payloads)


def client_rekeys(r, client):
    """The client rekeys its first CHILD_SA (and leaves the old pair for now)."""
    payloads = [NotifyPayload(Notify.REKEY_SA, b"", Protocol.ESP, client.child_spi),
                SaPayload((esp_proposal(os.urandom(4)),)), NoncePayload(os.urandom(32)),
                *client.auth_first()[-2:]]
    exchange(r, client, payloads, exchange_type=ExchangeType.CREATE_CHILD_SA)


def box_request(client, actions):
    return client.open(only(actions, act.Send).datagrams)


def test_children_get_kernel_lifetimes_from_the_policy(make_responder):
    _r, _client, _ike_sa, child = session(make_responder)
    assert LIFETIME * 0.9 <= child.soft_lifetime_s <= LIFETIME
    assert child.hard_lifetime_s == LIFETIME + 360


def test_soft_lifetime_makes_the_box_rekey_and_then_delete_the_old_pair(make_responder):
    r, client, ike_sa, old = session(make_responder)
    request = box_request(client, r.child_expired(int.from_bytes(old.spi_out, "big"),
                                                  False, T0 + LIFETIME))
    assert request.header.exchange == ExchangeType.CREATE_CHILD_SA
    assert not request.header.flags & Flags.RESPONSE
    rekey = request.notifies()[Notify.REKEY_SA]
    assert (rekey.protocol, rekey.spi) == (Protocol.ESP, old.spi_in)
    proposal = request.first(SaPayload).proposals[0]
    nonce_i = request.first(NoncePayload).data
    # The box initiates, so TSi is its own side.
    assert request.first(TsPayload, PayloadType.TSi).selectors == old.ts_r
    # The other SA's soft expiry, a moment later, starts nothing more.
    assert not sends(r.child_expired(int.from_bytes(old.spi_in, "big"), False,
                                     T0 + LIFETIME + 1))

    client_spi, nonce_r = os.urandom(4), os.urandom(32)
    reply = answer(client, request, [
        SaPayload((esp_proposal(client_spi),)), NoncePayload(nonce_r),
        TsPayload(PayloadType.TSi, old.ts_r), TsPayload(PayloadType.TSr, old.ts_i)])
    install = only(r.receive(reply, CLIENT, BOX, T0 + LIFETIME + 2), act.InstallChild)
    new = install.child
    assert (new.spi_in, new.spi_out, new.reqid) == (proposal.spi, client_spi, old.reqid)
    # KEYMAT from the box's nonce first; what the client sends uses the second half.
    keymat = child_keymat(client.mine.prf, client.mine.sk_d, old.chosen, nonce_i, nonce_r)
    assert (new.keys.encr_i, new.keys.encr_r) == (keymat.encr_r, keymat.encr_i)

    delete = box_request(client, r.install_result(install.ike_sa, new.reqid, None,
                                                  T0 + LIFETIME + 2))
    assert delete.first(DeletePayload).spis == (old.spi_in,)
    done = r.receive(answer(client, delete, [DeletePayload(Protocol.ESP, (old.spi_out,))]),
                     CLIENT, BOX, T0 + LIFETIME + 3)
    assert only(done, act.DeleteChild).child is old
    assert ike_sa.children == [new] and new.installed


def test_a_child_the_client_already_rekeyed_is_left_alone(make_responder):
    r, client, ike_sa, old = session(make_responder)
    client_rekeys(r, client)
    assert not sends(r.child_expired(int.from_bytes(old.spi_in, "big"), False, T0 + 5))


def test_hard_lifetime_ends_the_child_and_tells_the_client(make_responder):
    r, client, ike_sa, old = session(make_responder)
    actions = r.child_expired(int.from_bytes(old.spi_in, "big"), True, T0 + 9999)
    assert only(actions, act.DeleteChild).child is old
    assert box_request(client, actions).first(DeletePayload).spis == (old.spi_in,)
    assert ike_sa.children == []


def test_refusal_leaves_the_old_pair_until_its_hard_lifetime(make_responder):
    r, client, ike_sa, old = session(make_responder)
    request = box_request(client, r.child_expired(int.from_bytes(old.spi_in, "big"),
                                                  False, T0 + 1))
    actions = r.receive(answer(client, request, [NotifyPayload(Notify.NO_PROPOSAL_CHOSEN)]),
                        CLIENT, BOX, T0 + 2)
    assert not [a for a in actions if isinstance(a, act.InstallChild)]
    assert ike_sa.children == [old] and old.installed


def test_temporary_failure_is_retried_later(make_responder):
    r, client, ike_sa, old = session(make_responder, dpd_interval=0)
    request = box_request(client, r.child_expired(int.from_bytes(old.spi_in, "big"),
                                                  False, T0 + 1))
    r.receive(answer(client, request, [NotifyPayload(Notify.TEMPORARY_FAILURE)]),
              CLIENT, BOX, T0 + 2)
    assert not sends(r.tick(T0 + 10))
    again = box_request(client, r.tick(T0 + 40))
    assert again.header.exchange == ExchangeType.CREATE_CHILD_SA


def test_collision_the_box_drops_its_own_new_pair(make_responder):
    r, client, ike_sa, old = session(make_responder)
    request = box_request(client, r.child_expired(int.from_bytes(old.spi_in, "big"),
                                                  False, T0 + 1))
    # Meanwhile the client rekeys the same child and deletes the old pair.
    client_rekeys(r, client)
    exchange(r, client, [DeletePayload(Protocol.ESP, (client.child_spi,))],
             exchange_type=ExchangeType.INFORMATIONAL)
    box_spi = request.first(SaPayload).proposals[0].spi
    actions = r.receive(answer(client, request, [
        SaPayload((esp_proposal(os.urandom(4)),)), NoncePayload(os.urandom(32)),
        TsPayload(PayloadType.TSi, old.ts_r), TsPayload(PayloadType.TSr, old.ts_i)]),
        CLIENT, BOX, T0 + 3)
    assert not [a for a in actions if isinstance(a, act.InstallChild)]
    assert box_request(client, actions).first(DeletePayload).spis == (box_spi,)
    assert len(ike_sa.children) == 1 and ike_sa.children[0] is not old


def test_no_lifetimes_when_rekeying_is_off(make_responder):
    r, _client = established(make_responder)
    child = next(iter(r.sas.values())).children[0]
    assert (child.soft_lifetime_s, child.hard_lifetime_s) == (0, 0)


# --- what a review found --------------------------------------------------------------

def pfs_rekey_by_client(r, client, old, group=None):
    """The client rekeys `old` with PFS; returns the reply and the new child."""
    from firmware.ike import crypto
    from firmware.ike.constants import Dh, Encr, TransformType
    from firmware.ike.message import KePayload, Proposal, Transform
    group = group or Dh.CURVE_25519
    dh = crypto.get_dh_group(group).generate()
    spi = os.urandom(4)
    proposal = Proposal(1, Protocol.ESP, spi, (
        Transform(TransformType.ENCR, Encr.AES_GCM_16, 256),
        Transform(TransformType.DH, group), Transform(TransformType.ESN, 0)))
    reply, actions = exchange(r, client, [
        NotifyPayload(Notify.REKEY_SA, b"", Protocol.ESP, client.child_spi),
        SaPayload((proposal,)), NoncePayload(os.urandom(32)), KePayload(group, dh.public),
        *client.auth_first()[-2:]], exchange_type=ExchangeType.CREATE_CHILD_SA)
    return reply, only(actions, act.InstallChild).child


def test_pfs_is_kept_in_the_answer_and_in_the_boxs_own_rekey(make_responder):
    from firmware.ike.constants import Dh, TransformType
    from firmware.ike.message import KePayload
    r, client, ike_sa, old = session(make_responder)
    reply, child = pfs_rekey_by_client(r, client, old)
    groups = [t.id for t in reply.first(SaPayload).proposals[0].transforms
              if t.type == TransformType.DH]
    assert groups == [Dh.CURVE_25519] and child.chosen.dh == Dh.CURVE_25519
    exchange(r, client, [DeletePayload(Protocol.ESP, (client.child_spi,))],
             exchange_type=ExchangeType.INFORMATIONAL)
    request = box_request(client, r.child_expired(int.from_bytes(child.spi_in, "big"),
                                                  False, T0 + 1))
    assert request.first(KePayload).group == Dh.CURVE_25519


def test_ike_rekey_waits_while_the_box_rekeys_a_child(make_responder):
    from firmware.ike import crypto
    from firmware.ike.constants import Dh
    from firmware.ike.message import KePayload
    from tests.unit.initiator import ike_proposal
    r, client, ike_sa, old = session(make_responder)
    box_request(client, r.child_expired(int.from_bytes(old.spi_in, "big"), False, T0 + 1))
    dh = crypto.get_dh_group(Dh.CURVE_25519).generate()
    proposal = ike_proposal()
    proposal = type(proposal)(proposal.num, Protocol.IKE, os.urandom(8), proposal.transforms)
    reply, _ = exchange(r, client, [SaPayload((proposal,)), NoncePayload(os.urandom(32)),
                                    KePayload(Dh.CURVE_25519, dh.public)],
                        exchange_type=ExchangeType.CREATE_CHILD_SA)
    assert Notify.TEMPORARY_FAILURE in reply.notifies()
    assert len(r.sas) == 1


def test_hard_expiry_while_a_request_is_out_is_told_afterwards(make_responder):
    r, client, ike_sa, old = session(make_responder)
    liveness = box_request(client, r.tick(T0 + 31))
    actions = r.child_expired(int.from_bytes(old.spi_in, "big"), True, T0 + 32,
                              reqid=old.reqid)
    assert only(actions, act.DeleteChild).child is old and not sends(actions)
    later = r.receive(answer(client, liveness, []), CLIENT, BOX, T0 + 33)
    assert box_request(client, later).first(DeletePayload).spis == (old.spi_in,)


def test_the_box_does_not_install_a_pair_for_a_child_the_client_just_rekeyed(
        make_responder):
    r, client, ike_sa, old = session(make_responder)
    request = box_request(client, r.child_expired(int.from_bytes(old.spi_in, "big"),
                                                  False, T0 + 1))
    client_rekeys(r, client)
    actions = r.receive(answer(client, request, [
        SaPayload((esp_proposal(os.urandom(4)),)), NoncePayload(os.urandom(32)),
        TsPayload(PayloadType.TSi, old.ts_r), TsPayload(PayloadType.TSr, old.ts_i)]),
        CLIENT, BOX, T0 + 3)
    assert not [a for a in actions if isinstance(a, act.InstallChild)]
    assert len(ike_sa.children) == 2  # the old pair (until the client deletes it), its own


def test_expiry_names_the_child_by_reqid_not_only_spi(make_responder):
    r, client, ike_sa, old = session(make_responder)
    spi = int.from_bytes(old.spi_in, "big")
    assert r.child_expired(spi, True, T0 + 1, reqid=old.reqid + 1) == []
    assert ike_sa.children == [old]


def test_a_pending_rekeys_spi_is_released_when_the_ike_sa_goes(make_responder):
    r, client, ike_sa, old = session(make_responder)
    request = box_request(client, r.child_expired(int.from_bytes(old.spi_in, "big"),
                                                  False, T0 + 1))
    reserved = request.first(SaPayload).proposals[0].spi
    assert reserved in r._spis_in
    exchange(r, client, [DeletePayload(Protocol.IKE)], exchange_type=ExchangeType.INFORMATIONAL)
    assert reserved not in r._spis_in
