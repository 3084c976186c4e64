"""The daemon's control socket: JSON lines over a unix stream socket.

The protocol is described in docs/control-protocol.md. The server side runs in the
daemon's event loop; the client side is plain blocking sockets so the CLI, the web UI
and the LED service need no event loop of their own.
"""

from __future__ import annotations

import asyncio
import grp
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

log = logging.getLogger("ikebox.control")

DEFAULT_SOCKET = "/run/ikebox/control.sock"
MAX_LINE = 1 << 20
SUBSCRIBER_BACKLOG = 1 << 20

Handler = Callable[[str, dict[str, Any]], Awaitable[Any]]


class ControlError(Exception):
    """The daemon refused a command; the message is its plain-language reason."""


class DaemonUnreachable(ControlError):
    """No daemon answers on the control socket."""


def socket_path(configured: str | None = None) -> str:
    """Where the daemon listens when no path is given explicitly: $IKEBOX_CONTROL, else
    the config file's [control] socket, else the default."""
    return os.environ.get("IKEBOX_CONTROL") or configured or DEFAULT_SOCKET


class _Subscriber:
    def __init__(self, writer: asyncio.StreamWriter, trace_level: int) -> None:
        self.writer = writer
        self.trace_level = trace_level


class ControlServer:
    """Serves commands through `handler` and fans events out to subscribers.

    `snapshot` gives the status object a new subscriber receives first, so a process
    that (re)connects never has to guess the current state.
    """

    def __init__(self, path: str, handler: Handler,
                 snapshot: Callable[[], Any], group: str | None = None) -> None:
        self.path = path
        self.handler = handler
        self.snapshot = snapshot
        self.group = group
        self.subscribers: list[_Subscriber] = []
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        if os.path.exists(self.path):
            os.unlink(self.path)
        self._server = await asyncio.start_unix_server(
            self._serve, path=self.path, limit=MAX_LINE)
        os.chmod(self.path, 0o660)
        self._set_group()

    def _set_group(self) -> None:
        if not self.group:
            return
        try:
            os.chown(self.path, -1, grp.getgrnam(self.group).gr_gid)
        except KeyError:
            log.info("control socket: group %s does not exist; only root may use it",
                     self.group)

    async def close(self) -> None:
        if self._server:
            self._server.close()
            await self._server.wait_closed()
        for sub in list(self.subscribers):
            sub.writer.close()
        self.subscribers.clear()
        if os.path.exists(self.path):
            os.unlink(self.path)

    def publish(self, event: str, fields: dict[str, Any], trace_level: int = 0) -> None:
        """Send one event to every subscriber (trace records only to those asking)."""
        if not self.subscribers:
            return
        line = _encode({"event": event, "time": time.time(), **fields})
        for sub in list(self.subscribers):
            if trace_level > sub.trace_level:
                continue
            transport = sub.writer.transport
            if transport.is_closing() or \
                    transport.get_write_buffer_size() > SUBSCRIBER_BACKLOG:
                # A subscriber that stopped reading must not grow our memory.
                self.subscribers.remove(sub)
                sub.writer.close()
                continue
            sub.writer.write(line)

    async def _serve(self, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    raw = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    writer.write(_encode({"ok": False, "error": "request line too long"}))
                    break
                if not raw:
                    break
                reply = await self._answer(raw, writer)
                writer.write(_encode(reply))
                await writer.drain()
        except (ConnectionError, BrokenPipeError):
            pass
        finally:
            self.subscribers = [s for s in self.subscribers if s.writer is not writer]
            writer.close()

    async def _answer(self, raw: bytes, writer: asyncio.StreamWriter) -> dict[str, Any]:
        try:
            request = json.loads(raw)
            if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
                raise ValueError("a request is an object with a string 'cmd'")
            args = request.get("args") or {}
            if not isinstance(args, dict):
                raise ValueError("'args' must be an object")
        except (ValueError, RecursionError) as exc:
            return {"id": None, "ok": False, "error": f"bad request: {exc}"}

        rid = request.get("id")
        cmd = request["cmd"]
        if cmd == "subscribe":
            level = args.get("trace_level", 0)
            if not isinstance(level, int):
                return {"id": rid, "ok": False, "error": "trace_level must be a number"}
            self.subscribers.append(_Subscriber(writer, level))
            return {"id": rid, "ok": True, "result": self.snapshot()}
        try:
            result = await self.handler(cmd, args)
        except ControlError as exc:
            return {"id": rid, "ok": False, "error": str(exc)}
        except Exception:  # noqa: BLE001 - a bug must not take the daemon down
            log.exception("control command %s failed", cmd)
            return {"id": rid, "ok": False, "error": f"internal error running {cmd}"}
        return {"id": rid, "ok": True, "result": result}


def _encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode() + b"\n"


class ControlClient:
    """A blocking client: `call("show_sessions")`, `subscribe()` for events."""

    def __init__(self, path: str | None = None, timeout: float = 10.0) -> None:
        self.path = path or socket_path()  # an explicit path is used as given
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""
        self._next_id = 1

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock:
            self._sock.close()
            self._sock = None

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.path)
            except OSError as exc:
                sock.close()
                raise DaemonUnreachable(
                    f"the ikebox daemon does not answer on {self.path} ({exc.strerror})"
                ) from None
            self._sock = sock
        return self._sock

    def _send(self, cmd: str, args: dict[str, Any]) -> int:
        rid = self._next_id
        self._next_id += 1
        try:
            self._connect().sendall(_encode({"id": rid, "cmd": cmd, "args": args}))
        except OSError as exc:
            self.close()
            raise DaemonUnreachable(f"lost the ikebox daemon: {exc}") from None
        return rid

    def read_line(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next line from the daemon, or None when `timeout` passes first."""
        sock = self._connect()
        while b"\n" not in self._buf:
            sock.settimeout(timeout if timeout is not None else self.timeout)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return None
            except OSError as exc:
                self.close()
                raise DaemonUnreachable(f"lost the ikebox daemon: {exc}") from None
            if not chunk:
                self.close()
                raise DaemonUnreachable("the ikebox daemon closed the connection")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def call(self, cmd: str, **args: Any) -> Any:
        rid = self._send(cmd, args)
        while True:
            msg = self.read_line()
            if msg is None:
                raise DaemonUnreachable(f"the ikebox daemon did not answer {cmd} in time")
            if "event" in msg:
                continue
            if msg.get("id") != rid:
                continue
            if not msg.get("ok"):
                raise ControlError(msg.get("error") or f"{cmd} failed")
            return msg.get("result")

    def subscribe(self, trace_level: int = 0) -> Any:
        """Start the event stream; returns the status snapshot. Then use events()."""
        return self.call("subscribe", trace_level=trace_level)

    def events(self, timeout: float | None = None) -> Iterator[dict[str, Any] | None]:
        """Yields events; yields None whenever `timeout` passes without one."""
        while True:
            msg = self.read_line(timeout)
            if msg is None or "event" in msg:
                yield msg
