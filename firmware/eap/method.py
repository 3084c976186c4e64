"""The interface every EAP server method implements, and what it hands back.

A method object lives for one conversation. The server owns identifiers and framing;
a method sees only its own Type-Data:

    start(identifier) -> type_data of the first Request
    receive(type_data, identifier, next_identifier) -> MethodResult

`identifier` is the one of the Response being handled (EAP-MD5 hashes it);
`next_identifier` is what the next Request will carry (MS-CHAPv2 copies it into its
MS-CHAPv2-ID on a new challenge).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal, Protocol

from firmware.users import User

Outcome = Literal["continue", "success", "failure"]


@dataclasses.dataclass(frozen=True)
class MethodContext:
    identity: str  # the EAP identity (or the IKE identity) the client claimed
    user: User | None  # looked up from identity; None if there is no such user
    random: Callable[[int], bytes]
    server_name: str


@dataclasses.dataclass(frozen=True)
class MethodResult:
    outcome: Outcome
    reason: str
    type_data: bytes | None = None  # the next Request's Type-Data when continuing
    msk: bytes | None = dataclasses.field(default=None, repr=False)
    user: str | None = None  # set once the claimed user is known to exist
    # A "continue" that can only end in failure (a Failure Request is out): `reason`
    # is then the failure to report should the client never answer.
    will_fail: bool = False


class EapMethod(Protocol):
    name: str  # "mschapv2", "md5": the names config and the trace use
    eap_type: int
    label: str  # how the operator's trace spells it: "MSCHAPv2", "MD5"

    def start(self, identifier: int) -> bytes: ...

    def receive(self, type_data: bytes, identifier: int, next_identifier: int) -> MethodResult: ...


def printable(text: str, limit: int = 64) -> str:
    """A client-supplied name made safe for a log line: no control characters, bounded."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text[:limit])
    return cleaned + ("..." if len(text) > limit else "")


def check_user(ctx: MethodContext) -> str | None:
    """The reason this identity may not log in at all, or None if it may try."""
    if ctx.user is None:
        return f"unknown user {printable(ctx.identity)}"
    if not ctx.user.enabled:
        return f"user {ctx.user.name} is disabled"
    return None
