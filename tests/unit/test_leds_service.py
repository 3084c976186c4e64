"""The LED service against a real ControlServer on a real unix socket.

The daemon side is firmware.control.ControlServer on its own event loop thread with
a scripted status and events; the service runs its real loop (real clock, short
tick) and drives gpiozero MockFactory pins, which the test samples.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from firmware.control import ControlError, ControlServer
from hw import boards, leds
from hw.patterns import Light, count_pattern
from hw.service import LedService, main
from tests.harness.leds import blink_groups, sample

REPO = Path(__file__).resolve().parents[2]


def good_status(**over):
    status = {"version": "test", "ready": True, "sessions": 0, "ike_sas": 0,
              "half_open": 0, "wan": {"address": "192.0.2.10", "default_route": True}}
    status.update(over)
    return status


class ScriptedDaemon:
    """A ControlServer with a status we set and events we publish."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.status = good_status()
        self.failures: list[dict] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: ControlServer | None = None
        self.thread: threading.Thread | None = None

    async def _handle(self, cmd, args):
        if cmd == "status":
            return dict(self.status)
        if cmd == "failures":
            return self.failures[: args.get("limit", 50)]
        raise ControlError(f"unknown command {cmd}")

    def start(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = ControlServer(self.path, self._handle, lambda: dict(self.status))
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(5)

    def publish(self, event: str, **fields) -> None:
        self.loop.call_soon_threadsafe(self.server.publish, event, fields)

    def subscribers(self) -> int:
        return len(self.server.subscribers) if self.server else 0

    def stop(self) -> None:
        if self.loop is None:
            return
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
        self.loop = self.server = None


@pytest.fixture
def sock(tmp_path):
    return str(tmp_path / "control.sock")


@pytest.fixture
def daemon(sock):
    d = ScriptedDaemon(sock)
    d.start()
    yield d
    d.stop()


class Running:
    def __init__(self, sock: str, **kw) -> None:
        self.factory = MockFactory()
        self.board = boards.BOARDS["pi4"]
        self.lights = leds.open_lights(self.board, self.factory)
        kw.setdefault("tick", 0.01)
        kw.setdefault("backoff_max", 0.2)
        self.service = LedService(self.lights, sock, **kw)
        self.thread = threading.Thread(target=self.service.run, daemon=True)
        self.thread.start()

    def pin(self, light: Light):
        return self.factory.pin(self.board.pins[light])

    def watch(self, light: Light, seconds: float) -> list[bool]:
        return sample(self.pin(light), seconds)

    def stop(self) -> None:
        self.service.stop.set()
        self.thread.join(5)
        assert not self.thread.is_alive()
        self.lights.close()
        self.factory.reset()


@pytest.fixture
def running(sock):
    made = []

    def start(**kw):
        made.append(Running(sock, **kw))
        return made[-1]

    yield start
    for r in made:
        r.stop()


def eventually(check, timeout=15.0):
    """Real threads and real time: generous, since it returns as soon as check holds
    and a loaded CI machine can be slow."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.01)
    raise AssertionError(f"not true within {timeout} s: {check.__doc__ or check}")


def rises(states: list[bool]) -> int:
    return sum(1 for a, b in zip(states, states[1:], strict=False) if b and not a)


def blinking(states: list[bool]) -> bool:
    return True in states and False in states


def test_lights_follow_the_snapshot_and_events(daemon, running):
    daemon.status = good_status(sessions=0)
    r = running()
    eventually(lambda: daemon.subscribers() == 1)
    eventually(lambda: all(r.watch(Light.POWER, 0.5)))
    assert not any(r.watch(Light.TUNNEL, 0.3)) and not any(r.watch(Light.ALERT, 0.3))

    daemon.publish("negotiation_started", ike_sa="1a/00", peer="192.0.2.50:500")
    eventually(lambda: blinking(r.watch(Light.TUNNEL, 0.6)))
    daemon.publish("negotiation_ended", ike_sa="1a/00", peer="192.0.2.50:500",
                   established=True)
    daemon.publish("session_up", id="s1", ike_sa="1a/00", user="alice")
    eventually(lambda: all(r.watch(Light.TUNNEL, 0.6)))

    daemon.publish("failure", **{"class": "proposal", "peer": "192.0.2.51:500",
                                 "user": None, "step": "IKE_SA_INIT", "reason": "DH 1"})
    period = count_pattern(2).period
    eventually(lambda: blink_groups(r.pin(Light.ALERT))[-2:] == [2, 2],
               timeout=3 * period + 1)

    daemon.publish("session_down", session={"id": "s1"}, reason="delete")
    eventually(lambda: not any(r.watch(Light.TUNNEL, 0.6)))
    assert all(r.watch(Light.POWER, 0.3))


def test_daemon_restart_shows_alert_steady_then_recovers(sock, daemon, running):
    daemon.status = good_status(sessions=1)
    r = running()
    eventually(lambda: r.service.status.reachable and r.pin(Light.TUNNEL).state)
    assert not any(r.watch(Light.ALERT, 0.3))

    daemon.stop()  # the daemon goes away: no stale "all good"
    eventually(lambda: all(r.watch(Light.ALERT, 1.2)))
    assert not any(r.watch(Light.TUNNEL, 0.5))
    assert blinking(r.watch(Light.POWER, 2.2))

    restarted = ScriptedDaemon(sock)
    restarted.status = good_status(sessions=2)
    restarted.start()
    try:
        eventually(lambda: restarted.subscribers() == 1, timeout=5)
        eventually(lambda: not any(r.watch(Light.ALERT, 0.5)))
        assert all(r.watch(Light.POWER, 0.5)) and all(r.watch(Light.TUNNEL, 0.5))
    finally:
        restarted.stop()


def test_starting_before_the_daemon_waits_for_it(sock, running):
    r = running()
    eventually(lambda: all(r.watch(Light.ALERT, 0.5)))
    d = ScriptedDaemon(sock)
    d.status = good_status(ready=False)
    d.start()
    try:
        eventually(lambda: not any(r.watch(Light.ALERT, 0.4)))
        assert blinking(r.watch(Light.POWER, 2.2))  # reachable, not ready: starting
    finally:
        d.stop()


def test_resubscribing_picks_up_a_lost_wan(daemon, running):
    r = running(resync=0.3)
    eventually(lambda: all(r.watch(Light.POWER, 0.5)))
    daemon.status = good_status(wan={"address": "192.0.2.10", "default_route": False})
    # One check watches two full periods (4.2 s); the first may still straddle the
    # change from steady to the WAN-down flash, so allow several.
    eventually(lambda: rises(r.watch(Light.POWER, 2.1)) == 1
               and r.watch(Light.POWER, 2.1).count(True) < 60, timeout=20.0)


def test_a_hung_daemon_is_not_shown_as_well(daemon, running):
    r = running(resync=0.3, call_timeout=0.5)
    eventually(lambda: all(r.watch(Light.POWER, 0.5)))
    # Freeze the daemon's event loop: the socket still accepts, nothing answers.
    daemon.loop.call_soon_threadsafe(time.sleep, 4.0)
    eventually(lambda: all(r.watch(Light.ALERT, 0.5)), timeout=8)
    eventually(lambda: not any(r.watch(Light.ALERT, 0.5)), timeout=8)  # thawed


def test_a_fault_just_before_a_resync_is_not_lost(daemon):
    # Driven step by step (no thread) so the fault lands exactly in the gap.
    service = LedService(leds.NoLights(), daemon.path, tick=0.01, resync=3600)
    service.step()
    assert service.status.reachable and service.status.fault is None
    daemon.publish("failure", **{"class": "cert", "peer": "192.0.2.7:500"})
    time.sleep(0.2)  # now in the old connection's socket buffer, unread
    service._resync_at = 0.0
    service.step()
    assert service.status.fault and service.status.fault[0] == "cert"
    service._drop()


def test_a_recent_fault_from_before_we_connected_is_shown(daemon, running):
    daemon.failures = [{"time": time.time() - 20, "peer": "192.0.2.9:4500",
                        "user": "bob", "class": "auth", "step": "EAP",
                        "reason": "wrong password"}]
    r = running()
    eventually(lambda: blink_groups(r.pin(Light.ALERT))[-2:] == [1, 1], timeout=8)


def test_an_old_fault_is_not_shown(daemon, running):
    daemon.failures = [{"time": time.time() - 3600, "class": "auth"}]
    r = running()
    eventually(lambda: r.service.status.reachable)
    assert not any(r.watch(Light.ALERT, 1.0))


def run_main(args, env_extra=None):
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    env.pop("IKEBOX_CONTROL", None)
    return subprocess.Popen([sys.executable, "-m", "hw.service", *args], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_main_follows_the_configured_socket_and_stops_on_sigterm(tmp_path, daemon):
    config = tmp_path / "ikebox.toml"
    config.write_text(f'[control]\nsocket = "{daemon.path}"\n[leds]\nboard = "none"\n')
    proc = run_main(["--config", str(config)])
    try:
        eventually(lambda: daemon.subscribers() == 1, timeout=10)
        daemon.publish("failure", **{"class": "pool"})
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "power light: steady" in err
    assert "alert light: 4 blinks" in err
    assert "no LED board" in err


def test_main_refuses_a_bad_leds_section(tmp_path):
    config = tmp_path / "ikebox.toml"
    config.write_text('[leds]\nboard = "pi4"\npower = 99\n')
    assert main(["--config", str(config)]) == 2
    config.write_text("[leds\n")
    assert main(["--config", str(config)]) == 2
    assert main(["--config", str(tmp_path / "missing.toml")]) == 2


def test_lamp_test_without_leds_says_so_instead_of_playing_to_nobody(tmp_path, caplog):
    start = time.monotonic()
    assert main(["--test", "--model-path", str(tmp_path / "no-model")]) == 1
    assert time.monotonic() - start < 5
    assert "no LEDs to drive" in caplog.text
