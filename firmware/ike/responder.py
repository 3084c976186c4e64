"""The IKEv2 responder: bytes and time in, actions out (RFC 7296).

`receive(datagram, remote, local, now)` handles one datagram; `tick(now)` runs the
timers (half-open expiry, retransmission of the box's own requests, liveness checks);
`install_result(...)` resumes an IKE_AUTH that waited for the kernel. Each returns a
list of actions (actions.py) for the host to carry out. Nothing here opens a socket,
reads a clock or touches the kernel, so every exchange is a plain unit test.

Per message the responder: finds the IKE SA by SPI, applies the message-ID window
(a retransmitted request gets the cached response, byte for byte), reassembles
fragments, decrypts, and hands the payloads to the exchange handler that the
(exchange, state) table names.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable
from typing import Any

from . import actions as act
from . import sk
from .constants import ExchangeType, Flags, Notify
from .fragments import MAX_FRAGMENTS, FragmentError, Reassembly
from .ike_sa import ChildSa, IkeSa, PendingRequest, State
from .message import (
    Header, Message, NotifyPayload, ParseError, Payload, SkfPayload, SkPayload,
    UnsupportedCritical, encode_message, parse_message, parse_payloads,
)
from .policy import ResponderPolicy
from .trace import describe_payloads

log = logging.getLogger("ikebox.ike")

RETRANSMIT_BASE = 2.0
RETRANSMIT_TRIES = 5


class ExchangeError(Exception):
    """An exchange step failed; the responder answers with `notify` (and ends the IKE
    SA when `fatal`). `klass` and `reason` feed the operator's failure list."""

    def __init__(self, notify: int, reason: str, klass: str = "protocol",
                 fatal: bool = True, data: bytes = b"") -> None:
        super().__init__(reason)
        self.notify = notify
        self.reason = reason
        self.klass = klass
        self.fatal = fatal
        self.data = data


# After a MOBIKE move, ESP from the old path for this long is taken as in flight.
MOBIKE_SETTLE_S = 10.0


class Responder:
    def __init__(self, policy: ResponderPolicy,
                 random: Callable[[int], bytes] = os.urandom) -> None:
        self.policy = policy
        self.random = random
        self.sas: dict[bytes, IkeSa] = {}
        self.half_open: dict[tuple[bytes, str], bytes] = {}
        self.cookie_secret = random(32)
        self.now = 0.0
        self._out: list[act.Action] = []
        # While a request is handled: (remote, local) it came from and is answered to.
        self.reply_to: tuple[act.Endpoint, act.Endpoint] | None = None
        self._next_reqid = policy.reqid_base
        self._spis_in: set[bytes] = set()

    # --- entry points --------------------------------------------------------------

    def receive(self, data: bytes, remote: act.Endpoint, local: act.Endpoint,
                now: float) -> list[act.Action]:
        self.now = now
        try:
            self._receive(data, remote, local)
        except ParseError as exc:
            self._trace(None, None, "", "drop", f"dropped a malformed datagram from "
                        f"{_ep(remote)}: {exc}", level=2)
        return self._flush()

    def tick(self, now: float) -> list[act.Action]:
        from .exchanges import informational
        self.now = now
        for ike_sa in list(self.sas.values()):
            if ike_sa.state in (State.HALF_OPEN, State.EAP, State.AUTH_FINAL) and \
                    now >= ike_sa.deadline:
                step = {State.HALF_OPEN: "IKE_AUTH", State.EAP: "EAP",
                        State.AUTH_FINAL: "final AUTH"}[ike_sa.state]
                known = getattr(ike_sa.eap, "pending_failure", None)
                reason = known or (f"the client did not send its {step} message in time; it "
                                   f"may have given up (for example over an untrusted "
                                   f"certificate)")
                self._fail(ike_sa, "auth" if known else "protocol", step, reason)
                self._remove(ike_sa, reason)
            elif ike_sa.pending is not None:
                self._retransmit(ike_sa)
            elif ike_sa.state == State.DELETING and now >= ike_sa.deadline:
                # A rekeyed IKE SA whose DELETE never came: nothing hangs off it any more.
                self._remove(ike_sa, ike_sa.close_reason or "replaced")
            elif ike_sa.state == State.ESTABLISHED and self.policy.dpd_interval > 0 and \
                    now - ike_sa.last_heard >= self.policy.dpd_interval:
                informational.send_liveness(self, ike_sa)
            elif ike_sa.state == State.ESTABLISHED and (ike_sa.deletes_due or any(
                    c.rekey_due or c.delete_due for c in ike_sa.children)):
                self._start_due_work(ike_sa)
        return self._flush()

    def next_deadline(self) -> float | None:
        deadlines = []
        for ike_sa in self.sas.values():
            if ike_sa.state in (State.HALF_OPEN, State.EAP, State.AUTH_FINAL):
                deadlines.append(ike_sa.deadline)
            elif ike_sa.pending is not None:
                deadlines.append(ike_sa.pending.sent + _backoff(ike_sa.pending.tries))
            elif ike_sa.state == State.DELETING:
                deadlines.append(ike_sa.deadline)
            elif ike_sa.state == State.ESTABLISHED and self.policy.dpd_interval > 0:
                deadlines.append(ike_sa.last_heard + self.policy.dpd_interval)
        return min(deadlines) if deadlines else None

    def install_result(self, ike_sa_name: str, reqid: int, error: str | None,
                       now: float) -> list[act.Action]:
        """The host installed (error None) or failed to install a CHILD_SA; the response
        that waited for it goes out now."""
        self.now = now
        ike_sa = self.find(ike_sa_name)
        waiter = ike_sa.install_waiter if ike_sa is not None else None
        if ike_sa is not None and waiter is None:
            # Not for a response: a CHILD_SA the box itself rekeyed.
            from .exchanges import child_rekey
            child = next((c for c in ike_sa.children if c.reqid == reqid and
                          not c.installed and c.rekey_of is not None), None)
            if child is not None:
                child_rekey.installed(self, ike_sa, child, error)
            return self._flush()
        if ike_sa is None or waiter is None or waiter[2].reqid != reqid:
            return self._flush()
        ike_sa.install_waiter = None
        header, msg_id, child, finish = waiter
        if error is None:
            child.installed = True
            self._follow(ike_sa, child)  # the client may have moved while it installed
        else:
            child.install_error = error
        payloads = finish(error)
        self._respond(ike_sa, Header(header.spi_i, header.spi_r, 0, header.exchange,
                                     header.flags, msg_id), payloads)
        return self._flush()

    def await_install(self, ike_sa: IkeSa, header: Header, msg_id: int, child: ChildSa,
                      finish: Callable[[str | None], list[Payload]]) -> None:
        """Asks the host to install `child`; `finish(error)` builds the response."""
        ike_sa.install_waiter = (header, msg_id, child, finish)
        self.install_child(ike_sa, child)

    def install_child(self, ike_sa: IkeSa, child: ChildSa) -> None:
        """Hand `child` to the host; it reports back through install_result."""
        child.where = (ike_sa.local, ike_sa.remote)
        self._out.append(act.InstallChild(ike_sa.name, child, ike_sa.local, ike_sa.remote))

    def disconnect(self, ike_sa_name: str, reason: str, now: float) -> list[act.Action]:
        """Ends a session from the box's side: kernel state and lease go at once, then a
        DELETE tells the client."""
        from .exchanges import informational
        self.now = now
        ike_sa = self.find(ike_sa_name)
        if ike_sa is not None:
            informational.send_delete(self, ike_sa, reason)
        return self._flush()

    def shutdown(self, now: float) -> list[act.Action]:
        """The daemon is stopping: tell every client, free everything."""
        for ike_sa in list(self.sas.values()):
            self.disconnect(ike_sa.name, "the box is shutting down", now)
        for ike_sa in list(self.sas.values()):
            self._remove(ike_sa, "the box is shutting down")
        return self._flush()

    def find(self, name: str) -> IkeSa | None:
        """An IKE SA by its "spi_i/spi_r" name, or the live one of a session id."""
        if "/" in name:
            try:
                return self.sas.get(bytes.fromhex(name.split("/")[-1]))
            except ValueError:
                return None
        # After an IKE rekey the old SA (DELETING) shares the session id for a while.
        matches = [s for s in self.sas.values() if s.session_id == name]
        live = [s for s in matches if s.state not in (State.DELETING, State.DEAD)]
        return (live or matches or [None])[0]

    # --- dispatch ------------------------------------------------------------------

    def _receive(self, data: bytes, remote: act.Endpoint, local: act.Endpoint) -> None:
        from .exchanges import ike_sa_init
        header = Header.parse(data)
        if header.version >> 4 != 2:
            self._trace(None, header.msg_id, header.exchange_name, "drop",
                        f"{_ep(remote)} speaks IKE version {header.version >> 4}; this box "
                        f"speaks IKEv2 only", level=1)
            return
        if header.exchange == ExchangeType.IKE_SA_INIT:
            if header.is_response or header.spi_r != bytes(8) or header.msg_id != 0:
                return
            ike_sa_init.handle(self, data, remote, local)
            return

        ike_sa = self.sas.get(header.spi_r)
        if ike_sa is None or ike_sa.spi_i != header.spi_i or ike_sa.keys is None:
            self._trace(None, header.msg_id, header.exchange_name, "drop",
                        f"{_ep(remote)} sent {header.exchange_name} for an IKE SA this box "
                        f"does not know ({header.spi_i.hex()}/{header.spi_r.hex()}); the "
                        f"box may have restarted", level=1)
            return
        if not header.is_initiator:
            return  # the original initiator always sets the I flag (§3.1)
        if header.is_response:
            self._receive_response(ike_sa, header, data, remote, local)
            return
        self._receive_request(ike_sa, header, data, remote, local)

    def _receive_request(self, ike_sa: IkeSa, header: Header, data: bytes,
                         remote: act.Endpoint, local: act.Endpoint) -> None:
        if header.msg_id == ike_sa.next_msg_id - 1 and ike_sa.last_response is not None:
            self._resend_cached(ike_sa, header, data, remote, local)
            return
        if header.msg_id != ike_sa.next_msg_id or ike_sa.install_waiter is not None:
            self._trace(ike_sa, header.msg_id, header.exchange_name, "drop",
                        f"message ID {header.msg_id} is outside the window (expected "
                        f"{ike_sa.next_msg_id})", level=2)
            return

        inner = self._open(ike_sa, header, data)
        if inner is None:
            return
        ike_sa.last_heard = self.now
        # The answer goes where this request came from (RFC 7296 §2.11), whether or
        # not the IKE SA moves there.
        self.reply_to = (remote, local)
        if (remote, local) != (ike_sa.remote, ike_sa.local):
            self._moved_request(ike_sa, header, remote, local)
        try:
            self._parse_and_dispatch(ike_sa, header, inner, data)
        finally:
            self.reply_to = None

    def _moved_request(self, ike_sa: IkeSa, header: Header, remote: act.Endpoint,
                       local: act.Endpoint) -> None:
        """An authenticated, new message (a request, or the answer to the box's own)
        from another address or port. The switch to
        the NAT-T port always moves the IKE SA; otherwise it follows only a client
        behind NAT (RFC 7296 §2.23) that has not agreed MOBIKE: with MOBIKE the client
        moves its SA itself, and a request from elsewhere may be a path test (RFC 4555
        §3.8), answered there but moving nothing."""
        to_natt = ike_sa.local[1] == 500 and local[1] != 500 and \
            (remote[0], local[0]) == (ike_sa.remote[0], ike_sa.local[0])
        if to_natt or (ike_sa.nat and not ike_sa.mobike):
            self._float(ike_sa, remote, local)
            return
        why = "MOBIKE: the client moves its session itself" if ike_sa.mobike else \
            "the client is not behind NAT"
        self._trace(ike_sa, header.msg_id, header.exchange_name, "float",
                    f"request from {_ep(remote)}; answering there, the session stays at "
                    f"{ike_sa.peer} ({why})", level=2)

    def _parse_and_dispatch(self, ike_sa: IkeSa, header: Header, inner: Any,
                            data: bytes) -> None:
        try:
            payloads = parse_payloads(inner[0], inner[1])
        except UnsupportedCritical as exc:
            self._respond(ike_sa, header, [NotifyPayload(
                Notify.UNSUPPORTED_CRITICAL_PAYLOAD, bytes([exc.payload_type]))])
            self._trace(ike_sa, header.msg_id, header.exchange_name, "reject",
                        f"the client sent an unknown critical payload {exc.payload_type}")
            return
        except ParseError as exc:
            self._answer_syntax_error(ike_sa, header, str(exc))
            return
        message = Message(header, tuple(payloads), data)
        self._trace(ike_sa, header.msg_id, header.exchange_name, "request",
                    f"received {header.exchange_name} request",
                    level=3, detail=describe_payloads(payloads))
        self._dispatch(ike_sa, message)

    def _dispatch(self, ike_sa: IkeSa, message: Message) -> None:
        from .exchanges import create_child_sa, ike_auth, informational
        table: dict[tuple[int, State], Callable[[Responder, IkeSa, Message],
                                                list[Payload] | None]] = {
            (ExchangeType.IKE_AUTH, State.HALF_OPEN): ike_auth.first_request,
            (ExchangeType.IKE_AUTH, State.EAP): ike_auth.eap_round,
            (ExchangeType.IKE_AUTH, State.AUTH_FINAL): ike_auth.final_auth,
            (ExchangeType.CREATE_CHILD_SA, State.ESTABLISHED): create_child_sa.handle,
        }
        for state in (State.EAP, State.AUTH_FINAL, State.ESTABLISHED, State.DELETING):
            table[(ExchangeType.INFORMATIONAL, state)] = informational.handle
        header = message.header
        handler = table.get((header.exchange, ike_sa.state))
        if handler is None:
            self._trace(ike_sa, header.msg_id, header.exchange_name, "reject",
                        f"{header.exchange_name} is not expected while the IKE SA is "
                        f"{ike_sa.state.value}")
            self._answer_syntax_error(ike_sa, header, f"unexpected {header.exchange_name}",
                                      fatal=ike_sa.state != State.ESTABLISHED)
            return
        try:
            reply = handler(self, ike_sa, message)
        except ExchangeError as exc:
            self._exchange_failed(ike_sa, header, exc)
            return
        if reply is not None:
            self._respond(ike_sa, header, reply)

    def _exchange_failed(self, ike_sa: IkeSa, header: Header, exc: ExchangeError) -> None:
        step = _step_name(ike_sa, header)
        self._trace(ike_sa, header.msg_id, header.exchange_name, "fail", exc.reason)
        self._respond(ike_sa, header, [NotifyPayload(exc.notify, exc.data)])
        if exc.fatal:
            self._fail(ike_sa, exc.klass, step, exc.reason)
            self._remove(ike_sa, exc.reason)

    def _answer_syntax_error(self, ike_sa: IkeSa, header: Header, why: str,
                             fatal: bool = True) -> None:
        # §2.21.2: a malformed IKE_AUTH ends the IKE SA; later exchanges keep it.
        fatal = fatal and ike_sa.state != State.ESTABLISHED
        self._exchange_failed(ike_sa, header, ExchangeError(
            Notify.INVALID_SYNTAX, f"the client sent a malformed message: {why}",
            fatal=fatal))

    # --- encryption, fragments, retransmits --------------------------------------

    def _open(self, ike_sa: IkeSa, header: Header,
              data: bytes) -> tuple[int, bytes] | None:
        """Decrypts a request (gathering fragments); None while fragments are missing
        or when the message fails its integrity check (then it is dropped, §2.21.2)."""
        assert ike_sa.keys is not None
        try:
            message = parse_message(data)
        except ParseError as exc:
            self._trace(ike_sa, header.msg_id, header.exchange_name, "drop",
                        f"dropped a malformed message: {exc}", level=2)
            return None
        last = message.payloads[-1] if message.payloads else None
        try:
            if isinstance(last, SkPayload):
                return last.first_inner, sk.open_encrypted(ike_sa.keys, data, last.data)
            if isinstance(last, SkfPayload) and ike_sa.fragmentation:
                return self._gather(ike_sa, header, data, last)
        except sk.DecryptError as exc:
            self._trace(ike_sa, header.msg_id, header.exchange_name, "drop",
                        f"dropped a message that failed its integrity check: {exc}")
            return None
        self._trace(ike_sa, header.msg_id, header.exchange_name, "drop",
                    "dropped an unencrypted message for an existing IKE SA", level=2)
        return None

    def _gather(self, ike_sa: IkeSa, header: Header, data: bytes,
                frag: SkfPayload) -> tuple[int, bytes] | None:
        assert ike_sa.keys is not None
        exchange = header.exchange_name
        if frag.total > MAX_FRAGMENTS:
            self._trace(ike_sa, header.msg_id, exchange, "drop", f"message announced "
                        f"{frag.total} fragments; at most {MAX_FRAGMENTS} are accepted")
            return None
        body = struct.pack("!HH", frag.number, frag.total) + frag.data
        plain = sk.open_encrypted(ike_sa.keys, data, body, aad_extra=4)
        partial = ike_sa.reassembly
        if partial is None or partial.msg_id != header.msg_id:
            partial = ike_sa.reassembly = Reassembly(header.msg_id, frag.total)
        try:
            whole = partial.add(frag.number, frag.total, frag.first_inner, plain)
        except FragmentError as exc:
            ike_sa.reassembly = None
            self._trace(ike_sa, header.msg_id, exchange, "drop",
                        f"dropped a fragmented message: {exc}")
            return None
        if not whole:
            self._trace(ike_sa, header.msg_id, exchange, "fragment",
                        f"received fragment {frag.number} of {frag.total}", level=2)
            return None
        ike_sa.reassembly = None
        first, joined = partial.joined()
        self._trace(ike_sa, header.msg_id, exchange, "fragment",
                    f"reassembled {frag.total} fragments ({len(joined)} bytes)", level=2)
        return first, joined

    def _resend_cached(self, ike_sa: IkeSa, header: Header, data: bytes,
                       remote: act.Endpoint, local: act.Endpoint) -> None:
        assert ike_sa.last_response is not None
        message = _quiet_parse(data)
        if message is not None and message.payloads and \
                isinstance(message.payloads[-1], SkfPayload) and \
                message.payloads[-1].number != 1:
            return  # RFC 7383 §2.6.1: answer a retransmitted fragmented request once
        _msg_id, datagrams = ike_sa.last_response
        self._trace(ike_sa, header.msg_id, header.exchange_name, "retransmit",
                    "the client repeated its request; sending the same response again",
                    level=2)
        # To where this copy came from (RFC 7296 §2.11): if the client's NAT changed its
        # mapping meanwhile, the old one is dead. A retransmission moves nothing, though:
        # it may be an old packet replayed.
        self._out.append(act.Send(datagrams, remote, local))

    def _respond(self, ike_sa: IkeSa, request: Header, payloads: list[Payload]) -> None:
        header = Header(ike_sa.spi_i, ike_sa.spi_r, 0, request.exchange, Flags.RESPONSE,
                        request.msg_id)
        datagrams = self._seal(ike_sa, header, payloads)
        ike_sa.last_response = (request.msg_id, datagrams)
        ike_sa.next_msg_id = request.msg_id + 1
        self._trace(ike_sa, request.msg_id, request.exchange_name, "response",
                    f"sent {request.exchange_name} response"
                    + (f" in {len(datagrams)} fragments" if len(datagrams) > 1 else ""),
                    level=3, detail=describe_payloads(payloads))
        remote, local = self.reply_to or (ike_sa.remote, ike_sa.local)
        self._out.append(act.Send(datagrams, remote, local))

    def send_request(self, ike_sa: IkeSa, exchange: int, payloads: list[Payload],
                     purpose: str, context: Any = None) -> None:
        header = Header(ike_sa.spi_i, ike_sa.spi_r, 0, exchange, 0, ike_sa.our_msg_id)
        datagrams = self._seal(ike_sa, header, payloads)
        ike_sa.pending = PendingRequest(ike_sa.our_msg_id, datagrams, purpose, self.now,
                                        context=context)
        ike_sa.our_msg_id += 1
        self._out.append(act.Send(datagrams, ike_sa.remote, ike_sa.local))

    def _seal(self, ike_sa: IkeSa, header: Header, payloads: list[Payload]) -> tuple[bytes, ...]:
        assert ike_sa.keys is not None
        whole = sk.seal(ike_sa.keys, header, payloads)
        budget = self.policy.fragment_size - (4 if ike_sa.local[1] != 500 else 0)
        if ike_sa.fragmentation and len(whole) > budget and \
                header.exchange != ExchangeType.IKE_SA_INIT:
            return tuple(sk.seal_fragments(ike_sa.keys, header, payloads, budget))
        return (whole,)

    def _retransmit(self, ike_sa: IkeSa) -> None:
        from .exchanges import informational
        pending = ike_sa.pending
        assert pending is not None
        if self.now < pending.sent + _backoff(pending.tries):
            return
        if pending.tries >= RETRANSMIT_TRIES:
            ike_sa.pending = None
            informational.peer_silent(self, ike_sa, pending)
            return
        pending.tries += 1
        pending.sent = self.now
        self._out.append(act.Send(pending.datagrams, ike_sa.remote, ike_sa.local))

    def _receive_response(self, ike_sa: IkeSa, header: Header, data: bytes,
                          remote: act.Endpoint, local: act.Endpoint) -> None:
        from .exchanges import informational
        pending = ike_sa.pending
        if pending is None or header.msg_id != pending.msg_id:
            return
        inner = self._open(ike_sa, header, data)
        if inner is None:
            return
        try:
            payloads = parse_payloads(inner[0], inner[1])
        except ParseError:
            payloads = []
        ike_sa.pending = None
        ike_sa.last_heard = self.now
        if (remote, local) != (ike_sa.remote, ike_sa.local):
            self._moved_request(ike_sa, header, remote, local)
        informational.response_received(self, ike_sa, pending, payloads)
        if ike_sa.pending is None and self.sas.get(ike_sa.spi_r) is ike_sa:
            self._start_due_work(ike_sa)

    def esp_moved(self, spi_in: int, remote: act.Endpoint, now: float) -> list[act.Action]:
        """The kernel saw authenticated ESP-in-UDP for our inbound SA spi_in arrive from
        `remote`, not from where the SA expects it: the client's NAT made a new
        mapping (after a timeout, a NAT reboot). IKE and ESP share the client's port
        4500, so the IKE SA follows too (RFC 7296 section 2.23). This holds for MOBIKE
        clients as well (as in strongSwan): a client cannot see its NAT rebind, and
        waiting for it to notice through a liveness check leaves the tunnel dark."""
        self.now = now
        for ike_sa in self.sas.values():
            child = next((c for c in ike_sa.children if c.installed
                          and int.from_bytes(c.spi_in, "big") == spi_in), None)
            if child is None:
                continue
            if child.encap is None or child.where is None:
                break  # no NAT-T: nothing reports mappings
            if (child.where[1][0], child.encap[1]) == remote:
                break  # already there: more packets raced the kernel update
            if child.move_failed_at is not None and now - child.move_failed_at < 5:
                break  # the kernel just refused this move; every packet would retry it
            # Right after a MOBIKE move, ESP still in flight on the old path is no news.
            just_moved = ike_sa.mobike_moved_at is not None and \
                now - ike_sa.mobike_moved_at < MOBIKE_SETTLE_S
            if not ike_sa.peer_behind_nat or just_moved:
                why = "the client just moved its session (MOBIKE)" if just_moved else \
                    "the client is not behind NAT"
                self._trace(ike_sa, None, "", "float", f"ESP arrived from {_ep(remote)}, "
                            f"but {why}: staying at {ike_sa.peer}", level=2)
                break
            if remote != ike_sa.remote:
                self._float(ike_sa, remote, ike_sa.local, cause="ESP")
            else:
                self._follow(ike_sa, child)  # the IKE SA is there; this child lagged
            break
        return self._flush()

    def child_expired(self, spi: int, hard: bool, now: float,
                      reqid: int | None = None) -> list[act.Action]:
        """The kernel says one of a child's SAs reached its soft lifetime (the box
        rekeys the child, unless the client did) or its hard one (the kernel dropped
        it: the child ends, and the client is told)."""
        from .exchanges import child_rekey
        self.now = now
        for ike_sa in self.sas.values():
            # The kernel names an SA by reqid and SPI; SPIs alone may repeat across
            # clients (each side picks its own).
            child = next((c for c in ike_sa.children if c.installed and
                          (reqid is None or c.reqid == reqid) and spi in
                          (int.from_bytes(c.spi_in, "big"),
                           int.from_bytes(c.spi_out, "big"))), None)
            if child is None:
                continue
            if hard:
                child_rekey.expired(self, ike_sa, child)
                self._start_due_work(ike_sa)
            elif not child.rekeying and not child_rekey.superseded(ike_sa, child):
                child.rekey_due = True
                self._start_due_work(ike_sa)
            break
        return self._flush()

    def _start_due_work(self, ike_sa: IkeSa) -> None:
        """Box-initiated exchanges wait for a free request slot (window size 1)."""
        from .exchanges import child_rekey
        if ike_sa.state != State.ESTABLISHED or ike_sa.pending is not None or \
                ike_sa.install_waiter is not None:
            return
        child_rekey.next_due(self, ike_sa)

    def move_failed(self, ike_sa_name: str, child: ChildSa, old_local: act.Endpoint,
                    old_remote: act.Endpoint, old_encap: tuple[int, int] | None,
                    now: float, moved_to: tuple[act.Endpoint, act.Endpoint] | None = None
                    ) -> list[act.Action]:
        """The host could not move `child` and put it back where it was: keep that
        view, so deletes find it and a later report can try again. moved_to is where
        the failed move was going; a failure of an older move than the child's latest
        changes nothing."""
        self.now = now
        if moved_to is not None and child.where != moved_to:
            return self._flush()
        child.where = (old_local, old_remote)
        child.encap = old_encap
        child.move_failed_at = now
        ike_sa = self.find(ike_sa_name)
        if ike_sa is not None:
            self._trace(ike_sa, None, "", "float", f"the kernel could not move CHILD_SA "
                        f"{child.spi_in.hex()} to {ike_sa.peer}; it stays at "
                        f"{_ep(old_remote)} for now", level=1)
        return self._flush()

    def _float(self, ike_sa: IkeSa, remote: act.Endpoint, local: act.Endpoint,
               cause: str = "IKE") -> None:
        old = ike_sa.peer
        ike_sa.remote, ike_sa.local = remote, local
        if local[1] != 500 and ike_sa.nat:
            text = (f"the client moved from {old} to {ike_sa.peer} (its NAT changed the "
                    f"mapping; seen in {cause})")
        else:
            text = f"the client now talks from {ike_sa.peer} (was {old})"
        self._trace(ike_sa, None, "", "float", text, level=1)

        for child in ike_sa.children:
            if child.installed:
                self._follow(ike_sa, child)

    def _follow(self, ike_sa: IkeSa, child: ChildSa) -> None:
        """Point an installed child's kernel state at the IKE SA's endpoints. An IKE
        message on another port than ESP's says nothing about ESP's mapping, so that
        case leaves the child alone."""
        old_local, old_remote = child.where or (ike_sa.local, ike_sa.remote)
        old_encap = child.encap
        if old_encap is not None:
            if ike_sa.local[1] != old_encap[0]:
                return
            child.encap = (ike_sa.local[1], ike_sa.remote[1])
        if (old_local[0], old_remote[0], old_encap) == \
                (ike_sa.local[0], ike_sa.remote[0], child.encap):
            child.where = (ike_sa.local, ike_sa.remote)
            return
        self.move_child(ike_sa, child, (old_local, old_remote), old_encap)

    def move_child(self, ike_sa: IkeSa, child: ChildSa,
                   old_where: tuple[act.Endpoint, act.Endpoint],
                   old_encap: tuple[int, int] | None) -> None:
        """Ask the host to move an installed child from where the kernel has it to the
        IKE SA's endpoints and the child's (new) encapsulation."""
        child.where = (ike_sa.local, ike_sa.remote)
        child.move_failed_at = None
        self._out.append(act.MoveChild(ike_sa.name, child, old_where[0], old_where[1],
                                       old_encap, ike_sa.local, ike_sa.remote))

    # --- bookkeeping ---------------------------------------------------------------

    def child_lifetimes(self) -> tuple[int, int]:
        """(soft, hard) kernel lifetimes for a new CHILD_SA. The soft one is spread a
        little, so children made together do not all rekey at once; the hard one leaves
        time for a rekey that needs retransmissions."""
        rekey = self.policy.child_rekey_time
        if not rekey:
            return 0, 0
        spread = int.from_bytes(self.random(2), "big") % max(1, rekey // 10)
        return rekey - spread, rekey + max(60, rekey // 10)

    def new_reqid(self) -> int:
        """The next free reqid, cycling inside the range the kernel layer owns."""
        base, span = self.policy.reqid_base, self.policy.reqid_count
        in_use = {c.reqid for s in self.sas.values() for c in s.children}
        for _ in range(span):
            reqid = self._next_reqid
            self._next_reqid = base + (reqid - base + 1) % span
            if reqid not in in_use:
                return reqid
        raise ExchangeError(Notify.TEMPORARY_FAILURE, "every reqid is in use",
                            fatal=False)

    def release_spi(self, spi: bytes) -> None:
        self._spis_in.discard(spi)

    def new_spi_in(self) -> bytes:
        while True:
            spi = self.random(4)
            if int.from_bytes(spi, "big") >= 256 and spi not in self._spis_in:
                self._spis_in.add(spi)
                return spi

    def emit_send(self, ike_sa: IkeSa, datagrams: tuple[bytes, ...]) -> None:
        self._out.append(act.Send(datagrams, ike_sa.remote, ike_sa.local))

    def emit(self, action: act.Action) -> None:
        self._out.append(action)

    def _flush(self) -> list[act.Action]:
        out, self._out = self._out, []
        return out

    def _fail(self, ike_sa: IkeSa | None, klass: str, step: str, reason: str) -> None:
        peer = ike_sa.peer if ike_sa else ""
        user = ike_sa.user if ike_sa else None
        log.info("connection from %s failed at %s: %s", peer or "?", step, reason)
        self._out.append(act.Failure(klass, peer, user, step, reason))

    def fail(self, ike_sa: IkeSa | None, klass: str, step: str, reason: str) -> None:
        self._fail(ike_sa, klass, step, reason)

    def _remove(self, ike_sa: IkeSa, reason: str) -> None:
        """Forgets an IKE SA and everything hanging off it."""
        if ike_sa.spi_r not in self.sas:
            return
        del self.sas[ike_sa.spi_r]
        self.half_open.pop((ike_sa.spi_i, ike_sa.remote[0]), None)
        reserved = getattr(ike_sa.pending.context if ike_sa.pending else None, "spi_in", None)
        if reserved is not None:
            self.release_spi(reserved)  # a rekey of the box's own that never finished
        for child in ike_sa.children:
            self.drop_child(ike_sa, child)
        ike_sa.children.clear()
        was_up = ike_sa.established is not None
        if ike_sa.lease is not None and self.policy.pool is not None:
            self.policy.pool.release(ike_sa.lease.owner)
        if ike_sa.close_reason == "rekeyed":
            pass  # the session lives on in the new IKE SA
        elif was_up:
            log.info("session %s of %s from %s ended: %s", ike_sa.session_id, ike_sa.user,
                     ike_sa.peer, reason)
            self._out.append(act.SessionDown(session_info(ike_sa), reason))
        else:
            self._out.append(act.NegotiationEnded(ike_sa.name, ike_sa.peer, False))
        ike_sa.state = State.DEAD
        self._trace(ike_sa, None, "", "removed", f"IKE SA removed: {reason}", level=2)

    def remove(self, ike_sa: IkeSa, reason: str) -> None:
        self._remove(ike_sa, reason)

    def drop_child(self, ike_sa: IkeSa, child: ChildSa) -> None:
        self._spis_in.discard(child.spi_in)
        if child.installed:
            local, remote = child.where or (ike_sa.local, ike_sa.remote)
            self._out.append(act.DeleteChild(ike_sa.name, child, local, remote))
            child.installed = False

    def _trace(self, ike_sa: IkeSa | None, msg_id: int | None, exchange: str, event: str,
               text: str, level: int = 1, detail: Any = None) -> None:
        record = {
            "time": self.now, "level": level,
            "ike_sa": ike_sa.name if ike_sa else None,
            "peer": ike_sa.peer if ike_sa else None,
            "msg_id": msg_id, "exchange": exchange,
            "state": ike_sa.state.value if ike_sa else None,
            "step": event, "text": text,
        }
        if detail is not None:
            record["detail"] = detail
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s %s: %s", record["ike_sa"] or "-", exchange or "-", event, text)
        self._out.append(act.Trace(record))

    def trace(self, ike_sa: IkeSa | None, msg_id: int | None, exchange: str, event: str,
              text: str, level: int = 1, detail: Any = None) -> None:
        self._trace(ike_sa, msg_id, exchange, event, text, level, detail)

    def send_unprotected(self, request: Header, payloads: list[Payload],
                         remote: act.Endpoint, local: act.Endpoint,
                         spi_r: bytes = bytes(8)) -> bytes:
        header = Header(request.spi_i, spi_r, 0, request.exchange, Flags.RESPONSE,
                        request.msg_id)
        data = encode_message(header, payloads)
        self._out.append(act.Send((data,), remote, local))
        return data

    # --- views for the operator ----------------------------------------------------

    def sessions(self) -> list[dict[str, Any]]:
        return [session_info(s) for s in self.sas.values() if s.established is not None and
                s.state != State.DEAD]

    def ike_sas(self, detail: bool = False) -> list[dict[str, Any]]:
        return [ike_sa_info(s, self.now, detail) for s in self.sas.values()]

    def counts(self) -> dict[str, int]:
        states = [s.state for s in self.sas.values()]
        return {"ike_sas": len(states),
                "sessions": sum(1 for s in self.sas.values() if s.established is not None),
                "half_open": sum(1 for st in states if st in (
                    State.HALF_OPEN, State.EAP, State.AUTH_FINAL, State.INSTALLING))}


def _backoff(tries: int) -> float:
    return RETRANSMIT_BASE * (2 ** (tries - 1))


def _ep(endpoint: act.Endpoint) -> str:
    host, port = endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _quiet_parse(data: bytes) -> Message | None:
    try:
        return parse_message(data)
    except ParseError:
        return None


def _step_name(ike_sa: IkeSa, header: Header) -> str:
    if header.exchange == ExchangeType.IKE_AUTH:
        return {State.HALF_OPEN: "IKE_AUTH", State.EAP: "EAP",
                State.AUTH_FINAL: "final AUTH"}.get(ike_sa.state, "IKE_AUTH")
    return header.exchange_name


def session_info(ike_sa: IkeSa) -> dict[str, Any]:
    child = ike_sa.children[0] if ike_sa.children else None
    if child is None:
        child_state = "none"
    elif child.install_error:
        child_state = f"install-failed: {child.install_error}"
    else:
        child_state = "installed" if child.installed else "pending"
    return {
        "id": ike_sa.session_id,
        "ike_sa": ike_sa.name,
        "user": ike_sa.user,
        "remote": ike_sa.peer,
        "natt": ike_sa.nat,
        "assigned": [str(a) for a in ike_sa.lease.addresses] if ike_sa.lease else [],
        "ike_cipher": ike_sa.chosen.describe() if ike_sa.chosen else "",
        "esp_cipher": child.describe() if child else "",
        "established": ike_sa.established,
        "auth": ike_sa.eap_method or "psk",
        "client_version": ike_sa.client_version,
        "child_state": child_state,
        "reqids": [c.reqid for c in ike_sa.children],
        "bytes_in": 0, "bytes_out": 0, "packets_in": 0, "packets_out": 0,
    }


def ike_sa_info(ike_sa: IkeSa, now: float, detail: bool) -> dict[str, Any]:
    info: dict[str, Any] = {
        "name": ike_sa.name,
        "session": ike_sa.session_id,
        "state": ike_sa.state.value,
        "role": "responder",
        "local": _ep(ike_sa.local),
        "remote": ike_sa.peer,
        "user": ike_sa.user,
        "cipher": ike_sa.chosen.describe() if ike_sa.chosen else "",
        "nat": {"peer_behind_nat": ike_sa.peer_behind_nat,
                "box_behind_nat": ike_sa.box_behind_nat},
        "created": ike_sa.created,
        "established": ike_sa.established,
        "age": round(now - ike_sa.created, 1),
        "children": len(ike_sa.children),
    }
    if detail:
        info.update({
            "spi_i": ike_sa.spi_i.hex(), "spi_r": ike_sa.spi_r.hex(),
            "auth_local": ike_sa.auth_local,
            "auth_remote": f"eap-{ike_sa.eap_method}" if ike_sa.eap_method else "psk",
            "id_local": _id_text(ike_sa.id_r_body),
            "id_remote": _id_text(ike_sa.id_i_body),
            "msg_id_expected": ike_sa.next_msg_id, "msg_id_next_own": ike_sa.our_msg_id,
            "fragmentation": ike_sa.fragmentation,
            "mobike": ike_sa.mobike,
            "assigned": [str(a) for a in ike_sa.lease.addresses] if ike_sa.lease else [],
            "last_heard": round(now - ike_sa.last_heard, 1) if ike_sa.last_heard else None,
            "client_version": ike_sa.client_version,
            "child_sas": [{
                "reqid": c.reqid, "spi_in": c.spi_in.hex(), "spi_out": c.spi_out.hex(),
                "cipher": c.describe(), "encap": list(c.encap) if c.encap else None,
                "ts_i": [t.describe() for t in c.ts_i],
                "ts_r": [t.describe() for t in c.ts_r],
                "installed": c.installed, "install_error": c.install_error,
            } for c in ike_sa.children],
        })
    return info


def _id_text(body: bytes) -> str:
    from .message import describe_id
    return describe_id(body[0], body[4:]) if len(body) >= 4 else ""


