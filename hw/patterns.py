"""What the status lights show, computed from the daemon's events and the time.

Pure and clocked from outside: feed it the subscription snapshot, events and
`now` (any monotonic seconds), ask `frame(now)` which lights are lit. Nothing here
sleeps, reads a socket or touches a pin, so every pattern is a plain unit test.

Three logical lights (docs/field-card.md is the technician's version of this):

power   slow even blink   daemon starting, unknown or unreachable
        steady            daemon ready, WAN has an address and a default route
        short flash       daemon ready but the WAN is down (no address or no route)
tunnel  off               no session, nothing negotiating
        fast blink        a client is negotiating and no session is up yet
        on, short dips    >= 1 session up and another client negotiating
        steady            >= 1 session up
alert   off               no fault in the last ALERT_HOLD seconds
        N blinks, pause   the most recent fault's class (FAULT_COUNTS), repeating
        steady            the daemon does not answer on its control socket
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("ikebox.leds")

ALERT_HOLD = 300.0  # how long a fault keeps the alert light counting

# Blink counts on the alert light, most common fault first so it is the easiest read.
FAULT_COUNTS: dict[str, int] = {
    "auth": 1,
    "proposal": 2,
    "cert": 3,
    "pool": 4,
    "protocol": 5,
    "kernel": 6,
}
# A class this version does not know still has to show something: count it as a
# protocol problem (the daemon's failure log names it exactly).
UNKNOWN_FAULT_COUNT = FAULT_COUNTS["protocol"]


class Light(enum.Enum):
    POWER = "power"
    TUNNEL = "tunnel"
    ALERT = "alert"


@dataclass(frozen=True)
class Pattern:
    """A repeating sequence of (lit, seconds) segments; one segment is steady."""

    # Frames land on segment edges give or take float noise (0.05 * 20 != 1.0);
    # nudging every sample forward makes an edge sample count as after the edge.
    EDGE_SLACK = 1e-6

    name: str
    segments: tuple[tuple[bool, float], ...]

    @property
    def period(self) -> float:
        return sum(seconds for _, seconds in self.segments)

    @property
    def steady(self) -> bool:
        return len({lit for lit, _ in self.segments}) == 1

    def lit(self, elapsed: float) -> bool:
        """Whether the light is on `elapsed` seconds after the pattern started."""
        if self.steady:
            return self.segments[0][0]
        t = (max(elapsed, 0.0) + self.EDGE_SLACK) % self.period
        for lit, seconds in self.segments:
            if t < seconds:
                return lit
            t -= seconds
        return self.segments[-1][0]


OFF = Pattern("off", ((False, 1.0),))
ON = Pattern("steady", ((True, 1.0),))
SLOW_BLINK = Pattern("slow blink", ((True, 1.0), (False, 1.0)))
SHORT_FLASH = Pattern("short flash", ((True, 0.2), (False, 1.8)))
FAST_BLINK = Pattern("fast blink", ((True, 0.25), (False, 0.25)))
ON_DIPS = Pattern("on with dips", ((True, 0.6), (False, 0.15)))

COUNT_ON = 0.3
COUNT_OFF = 0.3
COUNT_PAUSE = 1.8  # long enough that the next group reads as a new count


def count_pattern(n: int) -> Pattern:
    """n short blinks, then a pause; the pause replaces the last gap."""
    segments: list[tuple[bool, float]] = []
    for i in range(n):
        segments.append((True, COUNT_ON))
        segments.append((False, COUNT_PAUSE if i == n - 1 else COUNT_OFF))
    return Pattern(f"{n} blink{'s' if n > 1 else ''}", tuple(segments))


def fault_count(fault_class: str) -> int:
    return FAULT_COUNTS.get(fault_class, UNKNOWN_FAULT_COUNT)


@dataclass
class _Counted:
    """A number of things known by id, plus some known only as a count.

    The snapshot gives counts, events give ids; an end for an id we never saw
    start must still lower the count the snapshot gave.
    """

    ids: set[str] = field(default_factory=set)
    anonymous: int = 0

    def reset(self, n: int) -> None:
        self.ids.clear()
        self.anonymous = max(int(n), 0)

    def add(self, key: str | None) -> None:
        if key is None:
            self.anonymous += 1
        else:
            self.ids.add(key)

    def remove(self, key: str | None) -> None:
        if key is not None and key in self.ids:
            self.ids.discard(key)
        elif self.anonymous > 0:
            self.anonymous -= 1

    def __len__(self) -> int:
        return len(self.ids) + self.anonymous


@dataclass(frozen=True)
class Shown:
    """A pattern and the moment it started, so blinks keep a steady rhythm."""

    pattern: Pattern
    since: float

    def lit(self, now: float) -> bool:
        return self.pattern.lit(now - self.since)


class StatusLights:
    """The daemon's state as the LED process knows it, and the lights it means."""

    def __init__(self, alert_hold: float = ALERT_HOLD) -> None:
        self.alert_hold = alert_hold
        self.reachable = False
        self.ready = False
        self.wan_up = False
        self.sessions = _Counted()
        self.negotiating = _Counted()
        self.fault: tuple[str, float] | None = None  # (class, when)
        self._shown: dict[Light, Shown] = {}

    # -- inputs ---------------------------------------------------------------

    def unreachable(self, now: float) -> None:
        """The control socket does not answer: forget what we thought we knew."""
        self.reachable = False
        self.ready = False
        self.wan_up = False
        self.sessions.reset(0)
        self.negotiating.reset(0)

    def snapshot(self, status: dict[str, Any], now: float) -> None:
        """A status object (subscribe reply or `status`) replaces all counts."""
        self.reachable = True
        self.ready = bool(status.get("ready"))
        wan = status.get("wan") or {}
        # No WAN report counts as down: the power light must never claim more
        # than the daemon said.
        self.wan_up = bool(wan.get("address")) and bool(wan.get("default_route"))
        self.sessions.reset(_as_int(status.get("sessions")))
        self.negotiating.reset(_as_int(status.get("half_open")))

    def event(self, ev: dict[str, Any], now: float) -> None:
        kind = ev.get("event")
        if kind == "negotiation_started":
            self.negotiating.add(_key(ev.get("ike_sa")))
        elif kind == "negotiation_ended":
            self.negotiating.remove(_key(ev.get("ike_sa")))
        elif kind == "session_up":
            self.sessions.add(_key(ev.get("id")))
        elif kind == "session_down":
            session = ev.get("session") or {}
            self.sessions.remove(_key(session.get("id") if isinstance(session, dict)
                                      else None))
        elif kind == "failure":
            self.failure(str(ev.get("class") or "protocol"), now)

    def failure(self, fault_class: str, at: float) -> None:
        if fault_class not in FAULT_COUNTS:
            log.warning("unknown failure class %r: shown as %d blinks",
                        fault_class, UNKNOWN_FAULT_COUNT)
        if self.fault is None or at >= self.fault[1]:
            self.fault = (fault_class, at)

    # -- outputs --------------------------------------------------------------

    def patterns(self, now: float) -> dict[Light, Pattern]:
        return {light: pattern for light, (pattern, _) in self._choose(now).items()}

    def frame(self, now: float) -> dict[Light, bool]:
        """Which lights are lit at `now`; call it as often as the lights refresh."""
        lit = {}
        for light, (pattern, anchor) in self._choose(now).items():
            shown = self._shown.get(light)
            if anchor is None:
                # Keep the rhythm of a pattern that goes on; start a new one now.
                anchor = shown.since if shown and shown.pattern == pattern else now
            if shown is None or shown != Shown(pattern, anchor):
                shown = Shown(pattern, anchor)
                self._shown[light] = shown
            lit[light] = shown.lit(now)
        return lit

    def _choose(self, now: float) -> dict[Light, tuple[Pattern, float | None]]:
        """Each light's pattern and, where it matters, when its cycle starts."""
        alert: tuple[Pattern, float | None] = (self._alert(now), None)
        if self.reachable and self.fault and now - self.fault[1] < self.alert_hold:
            # Each new fault restarts the count at its first blink.
            alert = (alert[0], self.fault[1])
        return {
            Light.POWER: (self._power(), None),
            Light.TUNNEL: (self._tunnel(), None),
            Light.ALERT: alert,
        }

    def _power(self) -> Pattern:
        if not self.reachable or not self.ready:
            return SLOW_BLINK
        return ON if self.wan_up else SHORT_FLASH

    def _tunnel(self) -> Pattern:
        if not self.reachable:
            return OFF
        if len(self.sessions):
            return ON_DIPS if len(self.negotiating) else ON
        return FAST_BLINK if len(self.negotiating) else OFF

    def _alert(self, now: float) -> Pattern:
        if not self.reachable:
            return ON
        if self.fault and now - self.fault[1] < self.alert_hold:
            return count_pattern(fault_count(self.fault[0]))
        return OFF


def _key(value: Any) -> str | None:
    return None if value is None else str(value)


def _as_int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


# -- the lamp test: every pattern, one light at a time -------------------------

@dataclass(frozen=True)
class TestStep:
    text: str  # what the technician should see
    shown: dict[Light, Pattern]
    seconds: float


def lamp_test_steps() -> list[TestStep]:
    """The sequence `ikebox leds --test` plays so every pattern can be checked."""
    all_off = {light: OFF for light in Light}
    steps = [TestStep("all lights on", {light: ON for light in Light}, 2.0),
             TestStep("all lights off", all_off, 1.0)]

    def one(light: Light, pattern: Pattern, seconds: float, meaning: str) -> None:
        shown = dict(all_off)
        shown[light] = pattern
        steps.append(TestStep(f"{light.value}: {pattern.name} = {meaning}", shown,
                              seconds))

    one(Light.POWER, SLOW_BLINK, 4.0, "daemon starting or not answering")
    one(Light.POWER, ON, 2.0, "ready, WAN up")
    one(Light.POWER, SHORT_FLASH, 4.0, "ready, WAN down")
    one(Light.TUNNEL, FAST_BLINK, 3.0, "a client is negotiating")
    one(Light.TUNNEL, ON, 2.0, "at least one session up")
    one(Light.TUNNEL, ON_DIPS, 3.0, "sessions up, another client negotiating")
    for fault_class, n in sorted(FAULT_COUNTS.items(), key=lambda kv: kv[1]):
        pattern = count_pattern(n)
        one(Light.ALERT, pattern, pattern.period * 2, f"last fault: {fault_class}")
    one(Light.ALERT, ON, 2.0, "daemon not answering")
    steps.append(TestStep("all lights off: test done", all_off, 0.5))
    return steps
