"""The control socket: a real ControlServer on a unix socket, the blocking client."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from firmware.control import ControlClient, ControlError, ControlServer, DaemonUnreachable


class ServerThread:
    def __init__(self, path: str) -> None:
        self.path = path
        self.loop = asyncio.new_event_loop()
        self.server: ControlServer | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(5)

    async def handler(self, cmd, args):
        if cmd == "echo":
            return args
        if cmd == "boom":
            raise RuntimeError("bug")
        raise ControlError(f"unknown command {cmd!r}")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = ControlServer(self.path, self.handler, lambda: {"ready": True})
        self.loop.run_until_complete(self.server.start())
        self.ready.set()
        self.loop.run_forever()

    def publish(self, event, fields, level=0):
        done = threading.Event()

        def go():
            self.server.publish(event, fields, level)
            done.set()
        self.loop.call_soon_threadsafe(go)
        done.wait(5)

    def stop(self):
        fut = asyncio.run_coroutine_threadsafe(self.server.close(), self.loop)
        fut.result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def server(tmp_path):
    s = ServerThread(str(tmp_path / "c.sock"))
    yield s
    s.stop()


def test_call_and_errors(server):
    with ControlClient(server.path) as c:
        assert c.call("echo", a=1) == {"a": 1}
        with pytest.raises(ControlError, match="unknown command"):
            c.call("nope")
        with pytest.raises(ControlError, match="internal error running boom"):
            c.call("boom")
        assert c.call("echo", b=2) == {"b": 2}  # the connection survives errors
    assert oct(os.stat(server.path).st_mode & 0o777) == "0o660"


def test_bad_json_is_answered_not_fatal(server):
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.connect(server.path)
    s.sendall(b"{not json\n")
    assert b'"ok":false' in s.recv(1000)
    s.close()


def test_subscribe_gets_snapshot_then_events_and_trace_by_level(server):
    with ControlClient(server.path) as c:
        assert c.subscribe(trace_level=1) == {"ready": True}
        server.publish("trace", {"text": "deep"}, 3)
        server.publish("trace", {"text": "step"}, 1)
        server.publish("session_up", {"user": "alice"})
        events = c.events(timeout=2)
        first = next(events)
        second = next(events)
        assert (first["event"], first["text"]) == ("trace", "step")
        assert second["event"] == "session_up" and second["user"] == "alice"


def test_unreachable_daemon_is_a_clear_error(tmp_path):
    with pytest.raises(DaemonUnreachable, match="does not answer"):
        ControlClient(str(tmp_path / "none.sock")).call("status")
