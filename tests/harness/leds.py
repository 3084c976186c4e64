"""Reading gpiozero's mock pins in LED tests."""

from __future__ import annotations

import time

from hw.patterns import COUNT_OFF, COUNT_ON, COUNT_PAUSE


def sample(pin, seconds: float) -> list[bool]:
    """A mock pin's level every 5 ms for `seconds` (real time: the service runs)."""
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out.append(pin.state)
        time.sleep(0.005)
    return out


def blink_groups(pin) -> list[int]:
    """Blinks per group in a mock pin's recorded history, split at the long pauses.

    MockPin.states holds (seconds the previous level was held, new level), so the
    history gives exact segment lengths whatever the sampling. The first group may
    be partial; compare the last ones.
    """
    states = list(pin.states)
    groups, count = [], 0
    for prev, cur in zip(states, states[1:], strict=False):
        if prev.state and abs(cur.timestamp - COUNT_ON) < 0.1:
            count += 1
        elif prev.state:
            count = 0  # a steady stretch is no blink
        elif cur.timestamp > (COUNT_OFF + COUNT_PAUSE) / 2:
            groups.append(count)
            count = 0
    return groups
