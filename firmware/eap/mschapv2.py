"""EAP-MSCHAPv2, server side (RFC 2759 inside EAP, draft-kamath-pppext-eap-mschapv2-02).

Conversation, as Type-Data of EAP type 26 (OpCode, MS-CHAPv2-ID, MS-Length, data):

    server  Challenge   value-size 16, authenticator challenge, server name
    client  Response    value-size 49, peer challenge, 8 reserved, NT-Response, flags, name
    server  Success     "S=<authenticator response> M=Welcome"    (password right)
            or Failure  "E=691 R=0 C=<new challenge> V=3 M=..."   (anything else)
    client  Success or Failure (OpCode only)
    server  EAP-Success with the MSK, or EAP-Failure

Unknown user, disabled user and wrong password all get the same E=691 on the wire, so
a client cannot probe which names exist; only the operator's trace tells them apart.
No retries (R=0) and no password change (OpCode 7).

Known client behaviour: strongSwan (and, per strongSwan's notes, Windows) does not send
the Failure Response; it gives up on the Failure Request. The step carrying that
request already holds the failure reason, so the IKE side can report it if the client
goes silent.
"""

from __future__ import annotations

import enum
import hmac
import struct

from firmware.eap import mschap
from firmware.eap.method import MethodContext, MethodResult, check_user, printable
from firmware.eap.packet import EapType
from firmware.users import User

RESPONSE_VALUE_LEN = 49
FAILURE_MESSAGE = "Authentication failed"
SUCCESS_MESSAGE = "Welcome"


class OpCode(enum.IntEnum):
    CHALLENGE = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4
    CHANGE_PASSWORD = 7


class _State(enum.Enum):
    CHALLENGE_SENT = enum.auto()
    SUCCESS_SENT = enum.auto()
    FAILURE_SENT = enum.auto()
    DONE = enum.auto()


def _frame(opcode: int, ms_id: int, data: bytes) -> bytes:
    # MS-Length counts from the OpCode on, i.e. the EAP Length minus 5.
    return struct.pack("!BBH", opcode, ms_id, 4 + len(data)) + data


def allowed(user: User | None) -> bool:
    # Every user has an NT hash; only existence matters.
    return user is not None


class MsChapV2Method:
    name = "mschapv2"
    eap_type = EapType.MSCHAPV2
    label = "MSCHAPv2"

    def __init__(self, ctx: MethodContext) -> None:
        self.ctx = ctx
        self.state = _State.CHALLENGE_SENT
        self.ms_id = 0
        self.auth_challenge = b""
        self._msk: bytes | None = None
        self._failure_reason = ""
        self._user: str | None = None

    def start(self, identifier: int) -> bytes:
        self.ms_id = identifier
        self.auth_challenge = self.ctx.random(mschap.CHALLENGE_LEN)
        data = bytes([mschap.CHALLENGE_LEN]) + self.auth_challenge
        return _frame(OpCode.CHALLENGE, self.ms_id, data + self.ctx.server_name.encode())

    def receive(self, type_data: bytes, identifier: int, next_identifier: int) -> MethodResult:
        if not type_data:
            return self._fail_now("malformed MSCHAPv2 packet (no OpCode)")
        opcode = type_data[0]
        if self.state is _State.CHALLENGE_SENT and opcode == OpCode.RESPONSE:
            return self._on_response(type_data)
        if self.state is _State.SUCCESS_SENT and opcode == OpCode.SUCCESS:
            self.state = _State.DONE
            user = self._user
            return MethodResult("success", f"user {user} authenticated (MSCHAPv2)",
                                msk=self._msk, user=user)
        if self.state is _State.FAILURE_SENT and opcode == OpCode.FAILURE:
            self.state = _State.DONE
            return MethodResult("failure", self._failure_reason, user=self._user)
        if opcode == OpCode.FAILURE:
            # A client may abandon the method at any point with a Failure Response.
            if self.state is _State.SUCCESS_SENT:
                why = (f"user {self._user}: client rejected the server's MSCHAPv2 "
                       "authenticator response")
            else:
                why = "client aborted MSCHAPv2 (Failure Response)"
            return self._fail_now(why)
        if opcode == OpCode.CHANGE_PASSWORD:
            return self._fail_now("client asked to change its password (not supported)")
        return self._fail_now(
            f"unexpected MSCHAPv2 OpCode {opcode} while waiting for "
            f"{self._expected_opcode()}"
        )

    def _expected_opcode(self) -> str:
        return {
            _State.CHALLENGE_SENT: "a Response",
            _State.SUCCESS_SENT: "the Success acknowledgement",
            _State.FAILURE_SENT: "the Failure acknowledgement",
        }.get(self.state, "nothing")

    def _fail_now(self, reason: str) -> MethodResult:
        self.state = _State.DONE
        self._msk = None
        return MethodResult("failure", reason, user=self._user)

    def _fail_with_request(self, reason: str, user: str | None) -> MethodResult:
        """Send the E=691 Failure Request; the outcome waits for the client's answer."""
        self.state = _State.FAILURE_SENT
        self._failure_reason = reason
        self._user = user
        self._msk = None
        retry_challenge = self.ctx.random(mschap.CHALLENGE_LEN).hex().upper()
        message = f"E=691 R=0 C={retry_challenge} V=3 M={FAILURE_MESSAGE}"
        return MethodResult(
            "continue", reason, type_data=_frame(OpCode.FAILURE, self.ms_id, message.encode()),
            user=user, will_fail=True,
        )

    def _on_response(self, type_data: bytes) -> MethodResult:
        if len(type_data) < 4:
            return self._fail_now("malformed MSCHAPv2 Response (short header)")
        _, ms_id, ms_length = struct.unpack_from("!BBH", type_data)
        if ms_length > len(type_data) or ms_length < 4 + 1 + RESPONSE_VALUE_LEN:
            return self._fail_now(f"malformed MSCHAPv2 Response (MS-Length {ms_length})")
        if ms_id != self.ms_id:
            return self._fail_now(
                f"MSCHAPv2 Response for MS-CHAPv2-ID {ms_id}, expected {self.ms_id}"
            )
        data = type_data[4:ms_length]
        if data[0] != RESPONSE_VALUE_LEN:
            return self._fail_now(f"malformed MSCHAPv2 Response (Value-Size {data[0]})")
        peer_challenge = data[1:17]
        nt_response = data[25:49]
        name = data[50:]
        claimed = mschap.user_part(name)
        identity_user = mschap.user_part(self.ctx.identity.encode("utf-8"))
        if claimed != identity_user:
            return self._fail_with_request(
                f"MSCHAPv2 response names {printable(name.decode('utf-8', 'replace'))}, "
                f"but the EAP identity was {printable(self.ctx.identity)}",
                None,
            )
        refusal = check_user(self.ctx)
        user = self.ctx.user
        if refusal is not None or user is None:
            known = user.name if user is not None else None
            return self._fail_with_request(refusal or "unknown user", known)
        expected = mschap.generate_nt_response(
            self.auth_challenge, peer_challenge, claimed, user.nt_hash
        )
        if not hmac.compare_digest(nt_response, expected):
            return self._fail_with_request(
                f"user {user.name}: wrong password (MSCHAPv2)", user.name
            )
        self._user = user.name
        self._msk = mschap.msk(user.nt_hash, nt_response)
        auth = mschap.authenticator_response(
            user.nt_hash, nt_response, peer_challenge, self.auth_challenge, claimed
        )
        self.state = _State.SUCCESS_SENT
        message = f"{auth} M={SUCCESS_MESSAGE}".encode()
        return MethodResult(
            "continue",
            f"user {user.name}: password verified (MSCHAPv2), waiting for the client",
            type_data=_frame(OpCode.SUCCESS, self.ms_id, message),
            user=user.name,
        )
