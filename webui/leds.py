"""A mirror of the box's three LEDs on the status page.

Derived from what the daemon reports, by the same rules the LED service follows
(docs/webui.md lists them): power says whether the daemon runs and is ready, tunnel
whether clients are connected or connecting, alert whether something needs a look.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

RECENT_FAILURE = 60.0  # seconds a failed attempt keeps the alert LED blinking


@dataclass(frozen=True)
class Led:
    name: str
    state: str      # "on", "blink" or "off"
    meaning: str


def mirror(status: dict[str, Any] | None, sessions: list[dict[str, Any]],
           failures: list[dict[str, Any]], now: float | None = None) -> list[Led]:
    now = time.time() if now is None else now
    if status is None:
        return [Led("power", "off", "the daemon does not answer"),
                Led("tunnel", "off", "no tunnels"),
                Led("alert", "on", "the daemon does not answer")]
    if status.get("ready"):
        power = Led("power", "on", "the VPN service is running")
    else:
        power = Led("power", "blink", "the VPN service is starting")

    if sessions:
        n = len(sessions)
        tunnel = Led("tunnel", "on", f"{n} client{'s' if n != 1 else ''} connected")
    elif status.get("half_open"):
        tunnel = Led("tunnel", "blink", "a client is connecting")
    else:
        tunnel = Led("tunnel", "off", "no clients connected")

    broken = [s for s in sessions if str(s.get("child_state", "")).startswith("install-failed")]
    recent = [f for f in failures if now - float(f.get("time") or 0) < RECENT_FAILURE]
    wan = status.get("wan") or {}
    if broken:
        alert = Led("alert", "on", "a tunnel could not be installed in the kernel")
    elif not wan.get("default_route", True):
        alert = Led("alert", "on", "no default route: the box is not online")
    elif recent:
        alert = Led("alert", "blink", "a connection attempt failed in the last minute")
    else:
        alert = Led("alert", "off", "nothing to report")
    return [power, tunnel, alert]
