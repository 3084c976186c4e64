"""A mirror of the box's three LEDs on the status page.

The lights come from the LED service's own model (hw.patterns.StatusLights), fed with
what the daemon reports, so the page and the box can never disagree about what a
light means; the sentences follow the field card (docs/field-card.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from hw.patterns import FAULT_COUNTS, OFF, Light, Pattern, StatusLights

FAULT_WORDS = {
    "auth": "a client failed to authenticate",
    "proposal": "a client offered only algorithms this box refuses",
    "cert": "a certificate problem",
    "pool": "the address pool ran out",
    "protocol": "a client broke off or sent something malformed",
    "kernel": "a tunnel could not be installed in the kernel",
}


@dataclass(frozen=True)
class Led:
    name: str
    state: str      # "on", "blink" or "off"
    meaning: str
    pattern: str    # the pattern's own name, e.g. "3 blinks"


def mirror(status: dict[str, Any] | None, sessions: list[dict[str, Any]],
           failures: list[dict[str, Any]], now: float | None = None) -> list[Led]:
    now = time.time() if now is None else now
    lights = StatusLights()
    if status is None:
        lights.unreachable(now)
    else:
        lights.snapshot({**status, "sessions": max(len(sessions),
                                                   int(status.get("sessions") or 0))}, now)
        if failures:
            newest = failures[0]
            lights.failure(str(newest.get("class") or "protocol"),
                           float(newest.get("time") or 0))
    patterns = lights.patterns(now)
    fault = lights.fault[0] if lights.fault else None
    return [_led(light, patterns[light], lights, fault, len(sessions))
            for light in (Light.POWER, Light.TUNNEL, Light.ALERT)]


def _state(pattern: Pattern) -> str:
    if pattern == OFF:
        return "off"
    return "on" if pattern.steady else "blink"


def _led(light: Light, pattern: Pattern, lights: StatusLights, fault: str | None,
         sessions: int) -> Led:
    state = _state(pattern)
    if not lights.reachable:
        meaning = "the VPN service does not answer"
        if light is Light.TUNNEL:
            meaning = "unknown while the VPN service does not answer"
    elif light is Light.POWER:
        meaning = {"on": "the VPN service is running and the WAN is up",
                   "blink": "the VPN service is starting" if not lights.ready
                   else "the WAN has no address or no default route"}.get(state, "")
    elif light is Light.TUNNEL:
        meaning = {"off": "no clients connected",
                   "blink": "a client is connecting",
                   "on": f"{sessions} client{'s' if sessions != 1 else ''} connected"}[state]
    else:
        meaning = "nothing to report"
        if state == "blink" and fault:
            count = FAULT_COUNTS.get(fault, FAULT_COUNTS["protocol"])
            meaning = f"{count} blink{'s' if count > 1 else ''}: {FAULT_WORDS.get(fault, fault)}"
    return Led(light.value, state, meaning, pattern.name)
