"""EapServer driven end to end by a small in-test peer built from the RFC functions."""

import hmac
import logging
import re
import struct

import pytest

from firmware.eap import EapError, EapServer, mschap
from firmware.eap.md5 import md5_response
from firmware.eap.packet import Code, EapPacket, EapType, expanded_type_data, parse
from firmware.users import UserStore


class Peer:
    """An EAP peer as strongSwan's eap-mschapv2 and eap-md5 plugins behave."""

    def __init__(self, identity, password, *, mschap_name=None, refuse=(), want=()):
        self.identity = identity
        self.password = password
        self.mschap_name = (mschap_name or identity).encode()
        self.refuse = set(refuse)  # EAP types to answer with a Nak
        self.want = bytes(want)  # desired types in that Nak
        self.msk = None
        self.auth_ok = None
        self.failure_message = None

    def answer(self, raw):
        req = parse(raw)
        assert req.code == Code.REQUEST
        if req.type in self.refuse:
            return self._response(req, EapType.NAK, self.want)
        if req.type == EapType.IDENTITY:
            return self._response(req, EapType.IDENTITY, self.identity.encode())
        if req.type == EapType.MD5_CHALLENGE:
            size = req.type_data[0]
            challenge = req.type_data[1 : 1 + size]
            value = md5_response(req.identifier, self.password.encode(), challenge)
            return self._response(req, EapType.MD5_CHALLENGE, bytes([16]) + value + b"peer")
        assert req.type == EapType.MSCHAPV2
        opcode, ms_id, ms_len = struct.unpack_from("!BBH", req.type_data)
        assert ms_len == len(req.type_data)
        if opcode == 1:  # Challenge
            assert req.type_data[4] == 16
            self.auth_challenge = req.type_data[5:21]
            self.server_name = req.type_data[21:]
            self.peer_challenge = bytes(range(100, 116))
            username = mschap.user_part(self.mschap_name)
            nt_hash = mschap.nt_password_hash(self.password)
            self.nt_response = mschap.generate_nt_response(
                self.auth_challenge, self.peer_challenge, username, nt_hash
            )
            value = self.peer_challenge + bytes(8) + self.nt_response + b"\x00"
            data = bytes([49]) + value + self.mschap_name
            body = struct.pack("!BBH", 2, ms_id, 4 + len(data)) + data
            return self._response(req, EapType.MSCHAPV2, body)
        if opcode == 3:  # Success Request: check the server knew our password
            message = req.type_data[4:].decode()
            nt_hash = mschap.nt_password_hash(self.password)
            expected = mschap.authenticator_response(
                nt_hash,
                self.nt_response,
                self.peer_challenge,
                self.auth_challenge,
                mschap.user_part(self.mschap_name),
            )
            self.auth_ok = hmac.compare_digest(message.split(" ")[0], expected)
            if not self.auth_ok:
                return self._response(req, EapType.MSCHAPV2, b"\x04")
            # As strongSwan's GenerateMSK computes it on the peer: Magic2 key first.
            mk = mschap.master_key(nt_hash, self.nt_response)
            send = mschap.asymmetric_start_key(mk, 16, is_send=True, is_server=False)
            recv = mschap.asymmetric_start_key(mk, 16, is_send=False, is_server=False)
            self.msk = send + recv + bytes(32)
            return self._response(req, EapType.MSCHAPV2, b"\x03")
        if opcode == 4:  # Failure Request
            self.failure_message = req.type_data[4:].decode()
            return self._response(req, EapType.MSCHAPV2, b"\x04")
        raise AssertionError(f"unexpected opcode {opcode}")

    def _response(self, req, eap_type, data):
        return EapPacket(Code.RESPONSE, req.identifier, eap_type, data).to_bytes()


def run(server, peer, limit=10):
    """Drive the conversation to its end; return every step and every request id."""
    steps, ids = [], []
    request = server.start()
    for _ in range(limit):
        ids.append(parse(request).identifier)
        step = server.receive(peer.answer(request))
        steps.append(step)
        if step.outcome != "continue":
            return steps, ids
        request = step.packet
    raise AssertionError("conversation did not end")


@pytest.fixture
def users(tmp_path):
    store = UserStore(tmp_path / "users.json")
    store.add("alice", "clientPass")
    store.add("bob", "md5pass", allow_md5=True)
    store.add("carol", "carolpass", enabled=False)
    return store


def test_mschapv2_good_password_gives_success_and_the_peers_msk(users):
    server = EapServer(users, methods=("mschapv2", "md5"))
    peer = Peer("alice", "clientPass")
    steps, ids = run(server, peer)
    assert [s.outcome for s in steps] == ["continue", "continue", "success"]
    last = steps[-1]
    assert last.user == "alice" and last.method == "mschapv2"
    assert last.reason == "user alice authenticated (MSCHAPv2)"
    assert peer.auth_ok is True
    assert last.msk is not None and len(last.msk) == 64
    assert last.msk == peer.msk
    done = parse(last.packet)
    assert done.code == Code.SUCCESS and done.identifier == ids[-1]
    assert [(i - ids[0]) % 256 for i in ids] == [0, 1, 2]
    assert peer.server_name == b"ikebox"
    assert server.done and server.pending_failure is None


def test_identity_from_ike_skips_the_identity_round(users):
    server = EapServer(users, methods=("mschapv2",), identity="alice")
    first = parse(server.start())
    assert first.type == EapType.MSCHAPV2 and first.type_data[0] == 1
    steps, _ = run(EapServer(users, identity="alice"), Peer("alice", "clientPass"))
    assert [s.outcome for s in steps] == ["continue", "success"]


def test_windows_domain_prefix_is_stripped(users):
    peer = Peer("CORP\\alice", "clientPass")
    steps, _ = run(EapServer(users), peer)
    assert steps[-1].outcome == "success"
    assert steps[-1].msk == peer.msk


def test_mschapv2_wrong_password(users):
    server = EapServer(users)
    peer = Peer("alice", "wrong")
    steps, ids = run(server, peer)
    assert [s.outcome for s in steps] == ["continue", "continue", "failure"]
    failure_request = steps[1]
    assert failure_request.reason == "user alice: wrong password (MSCHAPv2)"
    assert re.fullmatch(r"E=691 R=0 C=[0-9A-F]{32} V=3 M=.+", peer.failure_message)
    last = steps[-1]
    assert last.reason == "user alice: wrong password (MSCHAPv2)"
    assert last.msk is None and last.user == "alice"
    assert parse(last.packet) == EapPacket(Code.FAILURE, ids[-1])


def test_failure_reason_is_known_before_the_client_answers(users):
    # strongSwan and Windows peers never send the Failure Response.
    server = EapServer(users, identity="alice")
    peer = Peer("alice", "wrong")
    step = server.receive(peer.answer(server.start()))
    assert step.outcome == "continue"
    assert server.pending_failure == "user alice: wrong password (MSCHAPv2)"
    assert not server.done


@pytest.mark.parametrize(
    "identity, password, reason",
    [
        ("dave", "whatever", "unknown user dave"),
        ("carol", "carolpass", "user carol is disabled"),
    ],
)
def test_unknown_and_disabled_users_fail_like_a_wrong_password(users, identity, password,
                                                               reason):
    peer = Peer(identity, password)
    steps, _ = run(EapServer(users), peer)
    assert [s.outcome for s in steps] == ["continue", "continue", "failure"]
    assert steps[-1].reason == reason and steps[-1].msk is None
    assert peer.failure_message.startswith("E=691 R=0 ")  # same wire answer for all


def test_user_enabled_again_can_log_in(users):
    users.set("carol", enabled=True)
    steps, _ = run(EapServer(users), Peer("carol", "carolpass"))
    assert steps[-1].outcome == "success"


def test_server_sees_user_added_by_another_process(users, tmp_path):
    UserStore(tmp_path / "users.json").add("erin", "erinpass")
    steps, _ = run(EapServer(users), Peer("erin", "erinpass"))
    assert steps[-1].outcome == "success"


def test_mschapv2_name_must_match_identity(users):
    peer = Peer("alice", "clientPass", mschap_name="bob")
    steps, _ = run(EapServer(users), peer)
    assert steps[-1].outcome == "failure"
    assert steps[-1].reason == "MSCHAPv2 response names bob, but the EAP identity was alice"


def test_client_rejecting_authenticator_response_fails(users):
    peer = Peer("alice", "clientPass")
    server = EapServer(users, identity="alice")
    step = server.receive(peer.answer(server.start()))
    tampered = step.packet.replace(b"S=", b"S=0")[:-1]  # garble the proof, same length
    tampered = tampered[:2] + step.packet[2:4] + tampered[4:]
    step = server.receive(peer.answer(tampered))
    assert peer.auth_ok is False
    assert step.outcome == "failure" and step.msk is None
    assert "rejected the server's MSCHAPv2 authenticator response" in step.reason


def test_md5_good_and_bad(users):
    steps, _ = run(EapServer(users, methods=("md5",)), Peer("bob", "md5pass"))
    assert [s.outcome for s in steps] == ["continue", "success"]
    assert steps[-1].msk is None and steps[-1].method == "md5"
    assert steps[-1].reason == "user bob authenticated (MD5, no MSK)"

    steps, _ = run(EapServer(users, methods=("md5",)), Peer("bob", "nope"))
    assert steps[-1].outcome == "failure"
    assert steps[-1].reason == "user bob: wrong password (MD5)"


def test_md5_refused_for_user_without_cleartext(users):
    steps, _ = run(EapServer(users, methods=("md5",)), Peer("alice", "clientPass"))
    assert steps[-1].outcome == "failure"
    assert steps[-1].reason == "user alice may not use MD5 (created without allow_md5)"


def test_nak_switches_to_md5(users):
    peer = Peer("bob", "md5pass", refuse={EapType.MSCHAPV2}, want=[EapType.MD5_CHALLENGE])
    steps, _ = run(EapServer(users), peer)
    assert [s.outcome for s in steps] == ["continue", "continue", "success"]
    assert steps[1].reason == "client refused MSCHAPv2 and asked for MD5 (Nak)"
    assert steps[1].method == "md5"
    assert parse(steps[1].packet).type == EapType.MD5_CHALLENGE
    assert steps[-1].msk is None


@pytest.mark.parametrize(
    "methods, identity, want, reason",
    [
        (("mschapv2", "md5"), "alice", [4],
         "client refused MSCHAPv2 and asked for MD5 (Nak), which user alice may not use"),
        (("mschapv2", "md5"), "dave", [4],
         "client refused MSCHAPv2 and asked for MD5 (Nak), but unknown user dave"),
        (("mschapv2",), "bob", [4],
         "client refused MSCHAPv2 and asked for MD5 (Nak), which is not enabled here"),
        (("mschapv2", "md5"), "bob", [0],
         "client refused MSCHAPv2 and offered no alternative (Nak)"),
        (("mschapv2", "md5"), "bob", [13, 4],
         None),  # EAP-TLS first, then MD5: the server takes MD5
    ],
)
def test_nak_cases(users, methods, identity, want, reason):
    peer = Peer(identity, "md5pass", refuse={EapType.MSCHAPV2}, want=want)
    steps, _ = run(EapServer(users, methods=methods), peer)
    if reason is None:
        assert steps[-1].outcome == "success"
    else:
        assert steps[-1].outcome == "failure"
        assert steps[-1].reason == reason


def test_second_nak_fails(users):
    peer = Peer("bob", "md5pass", refuse={EapType.MSCHAPV2, EapType.MD5_CHALLENGE},
                want=[EapType.MD5_CHALLENGE])
    steps, _ = run(EapServer(users), peer)
    assert steps[-1].outcome == "failure"
    assert "after the method had begun" in steps[-1].reason


def _begin(users, **kw):
    server = EapServer(users, **kw)
    return server, parse(server.start())


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda req: bytes([2, req.identifier, 0, 40, 1]) + b"alice",
         "malformed EAP packet: EAP Length 40 exceeds the 10 bytes received"),
        (lambda req: EapPacket(2, (req.identifier + 1) % 256, 1, b"alice").to_bytes(),
         "EAP Response identifier"),
        (lambda req: EapPacket(1, req.identifier, 1, b"alice").to_bytes(),
         "client sent an EAP Request/IDENTITY where a Response was due"),
        (lambda req: EapPacket(2, req.identifier, 4, b"x").to_bytes(),
         "client answered the EAP-Identity request with MD5"),
        (lambda req: EapPacket(2, req.identifier, 1, b"").to_bytes(),
         "client sent an empty EAP identity"),
        (lambda req: EapPacket(2, req.identifier, 1, b"\xff\xfe").to_bytes(),
         "EAP identity is not UTF-8 text"),
        (lambda req: EapPacket(2, req.identifier, 254,
                               expanded_type_data(9, 1, b"<xml/>")).to_bytes(),
         "client answered the EAP-Identity request with expanded type (vendor 9, type 1)"),
    ],
)
def test_malformed_at_identity_fails_with_reason(users, make, reason):
    server, req = _begin(users)
    step = server.receive(make(req))
    assert step.outcome == "failure" and reason in step.reason
    assert parse(step.packet).code == Code.FAILURE
    assert server.done
    with pytest.raises(EapError, match="over"):
        server.receive(make(req))


@pytest.mark.parametrize(
    "type_data, reason",
    [
        (b"", "no OpCode"),
        (b"\x02\x00", "short header"),
        (b"\x02\x00\x00\x10" + bytes(12), "MS-Length 16"),
        (b"\x07", "change its password"),
        (b"\x03", "unexpected MSCHAPv2 OpCode 3 while waiting for a Response"),
        (b"\x04", "client aborted MSCHAPv2"),
    ],
)
def test_malformed_mschapv2_fails_with_reason(users, type_data, reason):
    server, req = _begin(users, identity="alice")
    step = server.receive(EapPacket(2, req.identifier, EapType.MSCHAPV2, type_data).to_bytes())
    assert step.outcome == "failure" and reason in step.reason and step.msk is None


def test_mschapv2_wrong_ms_id_and_value_size(users):
    server, req = _begin(users, identity="alice")
    good = Peer("alice", "clientPass").answer(req.to_bytes())
    bad_id = bytearray(good)
    bad_id[6] ^= 0xFF
    step = server.receive(bytes(bad_id))
    assert step.outcome == "failure" and "MS-CHAPv2-ID" in step.reason

    server, req = _begin(users, identity="alice")
    bad_size = bytearray(Peer("alice", "clientPass").answer(req.to_bytes()))
    bad_size[9] = 48
    step = server.receive(bytes(bad_size))
    assert step.outcome == "failure" and "Value-Size 48" in step.reason


def test_wrong_method_type_in_answer(users):
    server, req = _begin(users, identity="alice")
    step = server.receive(EapPacket(2, req.identifier, 4, bytes(17)).to_bytes())
    assert step.outcome == "failure"
    assert step.reason == "client answered an EAP MSCHAPv2 request with MD5"


def test_misuse_raises(users):
    server = EapServer(users)
    with pytest.raises(EapError, match="before start"):
        server.receive(b"\x02\x00\x00\x05\x01")
    server.start()
    with pytest.raises(EapError, match="already started"):
        server.start()
    with pytest.raises(ValueError):
        EapServer(users, methods=("tls",))


def test_identifier_wraps(users):
    server = EapServer(users, random=lambda n: b"\xff" * n)
    steps, ids = run(server, Peer("alice", "clientPass"))
    assert ids == [255, 0, 1]
    assert steps[-1].outcome == "success"


def test_no_secret_in_steps_or_logs(users, caplog):
    caplog.set_level(logging.DEBUG)
    texts = []
    for identity, password in (("alice", "clientPass"), ("alice", "badPass123"),
                               ("bob", "md5pass")):
        steps, _ = run(EapServer(users), Peer(identity, password))
        texts += [s.reason for s in steps] + [repr(s) for s in steps]
        msk = steps[-1].msk
        if msk:
            texts.append(caplog.text)
            assert msk.hex() not in " ".join(texts)
    blob = " ".join(texts) + caplog.text
    for secret in ("clientPass", "badPass123", "md5pass",
                   mschap.nt_password_hash("clientPass").hex()):
        assert secret not in blob
