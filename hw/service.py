"""`ikebox leds`: drives the status lights from the daemon's event stream.

One loop, one thread: wait up to a tick for an event, fold it into the state,
compute the frame for the current time, write it to the pins. The daemon may go
away at any moment (restart, upgrade, crash); the lights then say so (alert steady,
power blinking) until a reconnect with backoff succeeds, and never keep showing
the last good state.

The lights are a subscriber like any other: they need read access to the control
socket (the `ikebox` group) and to /dev/gpiochip* (the `gpio` group), nothing else.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from typing import Any

from firmware.control import ControlClient, ControlError, DaemonUnreachable, socket_path
from hw import boards
from hw.leds import Lights, NoLights, open_lights
from hw.patterns import ALERT_HOLD, Light, Shown, StatusLights, lamp_test_steps

log = logging.getLogger("ikebox.leds")

DEFAULT_CONFIG = "/etc/ikebox/ikebox.toml"
TICK = 0.05  # frame interval; blink edges land within this
RESYNC = 10.0  # re-subscribe this often: WAN state has no event, and counts may drift
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 10.0
CALL_TIMEOUT = 2.0  # a daemon that takes longer than this counts as not answering
START_LAMP_TEST = 1.5  # all lights on at start, so a dead LED is noticed


class LedService:
    """The loop. `clock` is monotonic seconds, `wall` unix seconds (for fault ages)."""

    def __init__(self, lights: Lights, path: str, *,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 tick: float = TICK, resync: float = RESYNC,
                 backoff_max: float = BACKOFF_MAX,
                 call_timeout: float = CALL_TIMEOUT,
                 alert_hold: float = ALERT_HOLD) -> None:
        self.lights = lights
        self.path = path
        self.clock = clock
        self.wall = wall
        self.tick = tick
        self.resync = resync
        self.backoff_max = backoff_max
        self.call_timeout = call_timeout
        self.status = StatusLights(alert_hold)
        self.stop = threading.Event()
        self._client: ControlClient | None = None
        self._events: Iterator[dict[str, Any] | None] | None = None
        self._retry_at = 0.0
        self._backoff = BACKOFF_FIRST
        self._resync_at = 0.0
        self._logged: dict[Light, str] = {}
        self.status.unreachable(clock())

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.step()
        finally:
            self._drop()

    def step(self) -> None:
        """One turn of the loop: at most one event, then one frame."""
        now = self.clock()
        if self._client is None:
            if now >= self._retry_at:
                self._connect()
        elif now >= self._resync_at:
            self._connect()
        if self._events is not None:
            try:
                event = next(self._events)
            except (DaemonUnreachable, ValueError, StopIteration) as exc:
                self._lost(str(exc) or "connection closed")
            else:
                if event is not None:
                    log.debug("event %s", event.get("event"))
                    self.status.event(event, self.clock())
        else:
            self.stop.wait(self.tick)
        self.render()

    def render(self) -> None:
        now = self.clock()
        self.lights.show(self.status.frame(now))
        for light, pattern in self.status.patterns(now).items():
            if self._logged.get(light) != pattern.name:
                self._logged[light] = pattern.name
                log.info("%s light: %s", light.value, pattern.name)

    def _connect(self) -> None:
        """Subscribe on a fresh connection; its snapshot replaces what we knew.

        Re-subscribing is also how we resync: the reply and the events after it come
        in order on one connection, so nothing is counted twice or missed.
        """
        was_reachable = self.status.reachable
        client = ControlClient(self.path, timeout=self.call_timeout)
        try:
            if not was_reachable:
                self._recent_fault(client)
            snapshot = client.subscribe()
        except (ControlError, ValueError) as exc:
            client.close()
            if was_reachable or self._client is not None:
                self._lost(str(exc))
            else:
                log.debug("daemon still unreachable: %s", exc)
                self._retry_later()
            return
        self._drain_faults()
        self._drop()
        now = self.clock()
        self._client, self._events = client, client.events(self.tick)
        self.status.snapshot(snapshot if isinstance(snapshot, dict) else {}, now)
        self._backoff = BACKOFF_FIRST
        self._resync_at = now + self.resync
        if not was_reachable:
            log.info("subscribed to the daemon on %s", self.path)

    def _drain_faults(self) -> None:
        """Read what the old connection still holds before dropping it for a new one.

        Counts come from the new snapshot, but a failure is in no snapshot: one that
        arrived just before a resync would otherwise never be shown. (One published
        after the new subscribe arrives on both; counting it twice changes nothing.)
        """
        if self._client is None:
            return
        try:
            while (msg := self._client.read_line(0.001)) is not None:
                if msg.get("event") == "failure":
                    self.status.event(msg, self.clock())
        except (ControlError, ValueError):
            pass

    def _recent_fault(self, client: ControlClient) -> None:
        """After a (re)connect, show a fault the daemon logged while we were away."""
        try:
            recent = client.call("failures", limit=1)
        except DaemonUnreachable:
            raise
        except ControlError as exc:
            log.debug("no failure log: %s", exc)
            return
        if not recent or not isinstance(recent, list) or not isinstance(recent[0], dict):
            return
        try:
            age = max(self.wall() - float(recent[0]["time"]), 0.0)
        except (KeyError, TypeError, ValueError):
            return
        if age < self.status.alert_hold:
            self.status.failure(str(recent[0].get("class") or "protocol"),
                                self.clock() - age)

    def _lost(self, why: str) -> None:
        if self.status.reachable:
            log.warning("lost the daemon (%s): alert light steady until it is back", why)
        self._drop()
        self.status.unreachable(self.clock())
        self._retry_later()

    def _retry_later(self) -> None:
        self._retry_at = self.clock() + self._backoff
        self._backoff = min(self._backoff * 2, self.backoff_max)

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None
        self._events = None


def play(steps: list[Any], lights: Lights, *, clock: Callable[[], float] = time.monotonic,
         wait: Callable[[float], Any] = time.sleep, tick: float = TICK,
         say: Callable[[str], Any] = print) -> None:
    """Show each step's patterns for its duration (the lamp test)."""
    for step in steps:
        say(step.text)
        start = clock()
        shown = {light: Shown(pattern, start) for light, pattern in step.shown.items()}
        while True:
            now = clock()
            lights.show({light: s.lit(now) for light, s in shown.items()})
            left = step.seconds - (now - start)
            if left < 1e-3:  # a sub-millisecond rest would spin on float noise
                break
            wait(min(tick, left))


def load_config(path: str | None) -> dict[str, Any]:
    """The TOML config; a missing default file means defaults, a missing named one is
    an error."""
    if path is None:
        if not os.path.exists(DEFAULT_CONFIG):
            return {}
        path = DEFAULT_CONFIG
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise boards.BoardError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise boards.BoardError(f"{path} is not valid TOML: {exc}") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ikebox leds",
        description="Drive the status LEDs from the ikebox daemon's events.")
    p.add_argument("--config", metavar="PATH",
                   help=f"TOML config; reads [leds] and [control] (default {DEFAULT_CONFIG})")
    p.add_argument("--socket", metavar="PATH",
                   help="the daemon's control socket (default: config, IKEBOX_CONTROL)")
    p.add_argument("--test", action="store_true",
                   help="lamp test: show every pattern once, then exit")
    p.add_argument("--model-path", default=boards.MODEL_PATH, help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="store_true", help="log every event")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        config = load_config(args.config)
        board = boards.from_config(config.get("leds", {}), args.model_path)
        control = config.get("control", {})
        if not isinstance(control, dict) or not isinstance(control.get("socket", ""), str):
            raise boards.BoardError("[control] socket must be a path")
    except boards.BoardError as exc:
        log.error("%s", exc)
        return 2
    path = args.socket or socket_path(control.get("socket") or None)

    lights = open_lights(board)
    try:
        if args.test:
            if isinstance(lights, NoLights):
                log.error("lamp test: no LEDs to drive (see the messages above)")
                return 1
            play(lamp_test_steps(), lights)
            return 0
        service = LedService(lights, path)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: service.stop.set())
        lights.show({light: True for light in Light})
        service.stop.wait(START_LAMP_TEST)
        log.info("following the daemon on %s", path)
        service.run()
        return 0
    finally:
        lights.show({light: False for light in Light})
        lights.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
