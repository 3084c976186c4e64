"""The EAP server the IKE responder runs inside IKE_AUTH (RFC 7296 §2.16, RFC 3748).

    server = EapServer(users, methods=("mschapv2", "md5"), identity=None)
    request = server.start()           # EAP-Identity Request, or the first method's
    step = server.receive(response)    # EapStep: continue / success / failure

Sans-IO and synchronous; the caller carries the packets in EAP payloads.

Bad input never raises: a malformed packet, a wrong identifier, an unexpected code or
type all end the conversation with outcome "failure", an EAP-Failure packet and a
reason. RFC 3748 §4.1 would let a server silently drop a Response with the wrong
identifier, but inside IKEv2 every IKE_AUTH request needs an answer and a retransmit
is handled by the IKE layer, so a mismatch here is a broken client. EapError is raised
only for misuse of this object (receive() before start() or after the end).

Method choice: the first configured method is offered to everyone (choosing per user
would tell a client which names exist). A Nak (type 3) in answer to a method's first
Request switches once to the first desired type that is configured and that the user
may use; anything else fails.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence

from firmware.eap import md5, mschapv2
from firmware.eap.method import EapMethod, MethodContext, MethodResult, Outcome, printable
from firmware.eap.packet import Code, EapError, EapPacket, EapType, failure, parse, success
from firmware.eap.packet import type_name
from firmware.users import User, UserError, UserStore

log = logging.getLogger("ikebox.eap")

_METHODS: dict[str, tuple[type, Callable[[User | None], bool]]] = {
    "mschapv2": (mschapv2.MsChapV2Method, mschapv2.allowed),
    "md5": (md5.Md5Method, md5.allowed),
}
_LABELS = {EapType.MSCHAPV2: "MSCHAPv2", EapType.MD5_CHALLENGE: "MD5"}


def _label(eap_type: int) -> str:
    return _LABELS.get(eap_type, type_name(eap_type))  # type: ignore[call-overload]


@dataclasses.dataclass(frozen=True)
class EapStep:
    outcome: Outcome
    packet: bytes  # the next Request, or EAP-Success / EAP-Failure
    msk: bytes | None = dataclasses.field(repr=False)
    user: str | None
    method: str  # "identity", "mschapv2", "md5"
    reason: str  # for the operator's trace; never a secret


class EapServer:
    def __init__(
        self,
        users: UserStore,
        methods: Sequence[str] = ("mschapv2", "md5"),
        identity: str | None = None,
        random: Callable[[int], bytes] = os.urandom,
        server_name: str = "ikebox",
    ) -> None:
        methods = tuple(methods)
        unknown = [m for m in methods if m not in _METHODS]
        if not methods or unknown:
            raise ValueError(f"EAP methods must be some of {sorted(_METHODS)}, got {methods}")
        self.users = users
        self.methods = methods
        self.random = random
        self.server_name = server_name
        self.identity = identity
        self._method: EapMethod | None = None
        self._method_rounds = 0
        self._switched = False
        self._next_id = random(1)[0]
        self._last_id: int | None = None
        self._expect_type: int | None = None
        self._done = False
        self.pending_failure: str | None = None
        """Set once the conversation can only fail (e.g. the MSCHAPv2 Failure Request is
        out): the reason to report if the client never answers."""

    @property
    def done(self) -> bool:
        return self._done

    @property
    def method_name(self) -> str:
        return self._method.name if self._method is not None else "identity"

    # -- driving ---------------------------------------------------------------------

    def start(self) -> bytes:
        if self._last_id is not None:
            raise EapError("EAP conversation already started")
        if self.identity is None:
            self._expect_type = EapType.IDENTITY
            return self._request(EapType.IDENTITY, b"")
        return self._start_method(self.methods[0])

    def receive(self, data: bytes) -> EapStep:
        if self._last_id is None:
            raise EapError("receive() before start()")
        if self._done:
            raise EapError("EAP conversation is over")
        try:
            pkt = parse(data)
        except EapError as e:
            return self._finish_failure(f"malformed EAP packet: {e}", self._last_id)
        if pkt.code != Code.RESPONSE:
            return self._finish_failure(
                f"client sent an EAP {pkt.describe()} where a Response was due", self._last_id
            )
        if pkt.identifier != self._last_id:
            return self._finish_failure(
                f"EAP Response identifier {pkt.identifier}, expected {self._last_id}",
                self._last_id,
            )
        assert pkt.type is not None
        if self._expect_type == EapType.IDENTITY:
            return self._on_identity(pkt)
        if pkt.type == EapType.NAK:
            return self._on_nak(pkt)
        if pkt.type != self._expect_type:
            return self._finish_failure(
                f"client answered an EAP {_label(self._expect_type or 0)} request with "
                f"{_describe_type(pkt)}",
                pkt.identifier,
            )
        assert self._method is not None
        self._method_rounds += 1
        result = self._method.receive(pkt.type_data, pkt.identifier, self._next_id)
        return self._apply(result, pkt.identifier)

    # -- steps -----------------------------------------------------------------------

    def _on_identity(self, pkt: EapPacket) -> EapStep:
        if pkt.type != EapType.IDENTITY:
            return self._finish_failure(
                f"client answered the EAP-Identity request with {_describe_type(pkt)}",
                pkt.identifier,
            )
        raw = pkt.type_data.rstrip(b"\x00")
        try:
            identity = raw.decode("utf-8")
        except UnicodeDecodeError:
            return self._finish_failure("EAP identity is not UTF-8 text", pkt.identifier)
        if not identity:
            return self._finish_failure("client sent an empty EAP identity", pkt.identifier)
        self.identity = identity
        log.debug("EAP identity %s", printable(identity))
        packet = self._start_method(self.methods[0])
        return self._step("continue", packet, None,
                          f"identity {printable(identity)}, offering "
                          f"{_label(self._expect_type or 0)}")

    def _on_nak(self, pkt: EapPacket) -> EapStep:
        assert self._method is not None
        refused = self._method.label
        desired = [t for t in pkt.type_data if t != 0]
        wanted = " or ".join(_label(t) for t in desired) or "nothing"
        head = f"client refused {refused} and asked for {wanted} (Nak)"
        if self._method_rounds > 0 or self._switched:
            return self._finish_failure(f"{head} after the method had begun", pkt.identifier)
        if not desired:
            return self._finish_failure(
                f"client refused {refused} and offered no alternative (Nak)", pkt.identifier
            )
        user = self._lookup()
        configured = {_METHODS[m][0].eap_type: m for m in self.methods}
        why_not = "which is not enabled here"
        for t in desired:
            name = configured.get(t)
            if name is None or name == self._method.name:
                continue
            if not _METHODS[name][1](user):
                if user is None:
                    why_not = f"but unknown user {printable(self.identity or '')}"
                else:
                    why_not = f"which user {user.name} may not use"
                continue
            self._switched = True
            packet = self._start_method(name)
            return self._step("continue", packet, None, head)
        return self._finish_failure(f"{head}, {why_not}", pkt.identifier)

    def _apply(self, result: MethodResult, response_id: int) -> EapStep:
        assert self._method is not None
        if result.outcome == "continue":
            assert result.type_data is not None
            self.pending_failure = result.reason if result.will_fail else None
            packet = self._request(self._method.eap_type, result.type_data)
            return self._step("continue", packet, None, result.reason, result.user)
        self._done = True
        self.pending_failure = None
        if result.outcome == "success":
            log.info("EAP %s succeeded: %s", self._method.label, result.reason)
            return self._step("success", success(response_id), result.msk, result.reason,
                              result.user)
        return self._finish_failure(result.reason, response_id, result.user)

    # -- helpers ---------------------------------------------------------------------

    def _lookup(self) -> User | None:
        try:
            self.users.reload_if_changed()
        except UserError as e:
            # Keep serving from the last good copy; the operator sees why.
            log.warning("user store not re-read: %s", e)
        name = self.identity or ""
        user = self.users.get(name)
        if user is None and "\\" in name:
            user = self.users.get(name.split("\\", 1)[1])
        return user

    def _start_method(self, name: str) -> bytes:
        cls = _METHODS[name][0]
        ctx = MethodContext(
            identity=self.identity or "",
            user=self._lookup(),
            random=self.random,
            server_name=self.server_name,
        )
        self._method = cls(ctx)
        self._method_rounds = 0
        self._expect_type = cls.eap_type
        identifier = self._next_id
        return self._request(cls.eap_type, self._method.start(identifier))

    def _request(self, eap_type: int, type_data: bytes) -> bytes:
        identifier = self._next_id
        self._last_id = identifier
        self._next_id = (identifier + 1) % 256
        return EapPacket(Code.REQUEST, identifier, eap_type, type_data).to_bytes()

    def _step(
        self, outcome: Outcome, packet: bytes, msk: bytes | None, reason: str,
        user: str | None = None,
    ) -> EapStep:
        claimed = user if user is not None else self.identity
        return EapStep(outcome, packet, msk, claimed, self.method_name, reason)

    def _finish_failure(
        self, reason: str, identifier: int, user: str | None = None
    ) -> EapStep:
        self._done = True
        self.pending_failure = None
        log.info("EAP %s failed: %s", self.method_name, reason)
        return self._step("failure", failure(identifier), None, reason, user)


def _describe_type(pkt: EapPacket) -> str:
    if pkt.type == EapType.EXPANDED:
        try:
            ex = pkt.expanded
        except EapError:
            return "a truncated expanded type"
        assert ex is not None
        return f"expanded type (vendor {ex.vendor_id}, type {ex.vendor_type})"
    return _label(pkt.type or 0)
