"""EAP-MD5-Challenge (RFC 3748 §5.4): MD5 over identifier, password and challenge.

MD5 is the method's definition, not a choice: it needs the cleartext password, so it
only works for users created with allow_md5, and it derives no MSK (IKEv2 then signs
AUTH with the shared key derived without one, RFC 7296 §2.16). No mutual
authentication either: only offer it to clients that cannot do MS-CHAPv2.
"""

from __future__ import annotations

import hmac

from cryptography.hazmat.primitives import hashes

from firmware.eap.method import MethodContext, MethodResult, check_user
from firmware.eap.packet import EapType
from firmware.users import User

VALUE_LEN = 16


def md5_response(identifier: int, password: bytes, challenge: bytes) -> bytes:
    h = hashes.Hash(hashes.MD5())
    h.update(bytes([identifier]) + password + challenge)
    return h.finalize()


def allowed(user: User | None) -> bool:
    return user is not None and user.md5_password is not None


class Md5Method:
    name = "md5"
    eap_type = EapType.MD5_CHALLENGE
    label = "MD5"

    def __init__(self, ctx: MethodContext) -> None:
        self.ctx = ctx
        self.challenge = b""

    def start(self, identifier: int) -> bytes:
        self.challenge = self.ctx.random(VALUE_LEN)
        return bytes([VALUE_LEN]) + self.challenge + self.ctx.server_name.encode()

    def receive(self, type_data: bytes, identifier: int, next_identifier: int) -> MethodResult:
        if len(type_data) < 1 or type_data[0] != VALUE_LEN or len(type_data) < 1 + VALUE_LEN:
            return MethodResult("failure", "malformed EAP-MD5 response (bad Value-Size)")
        value = type_data[1 : 1 + VALUE_LEN]
        refusal = check_user(self.ctx)
        if refusal is not None:
            return MethodResult("failure", refusal)
        user = self.ctx.user
        assert user is not None
        if user.md5_password is None:
            return MethodResult(
                "failure", f"user {user.name} may not use MD5 (created without allow_md5)",
                user=user.name,
            )
        expected = md5_response(identifier, user.md5_password.encode("utf-8"), self.challenge)
        if not hmac.compare_digest(value, expected):
            return MethodResult("failure", f"user {user.name}: wrong password (MD5)",
                                user=user.name)
        return MethodResult("success", f"user {user.name} authenticated (MD5, no MSK)",
                            user=user.name)

