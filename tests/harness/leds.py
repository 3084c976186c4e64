"""Reading gpiozero's mock pins in LED tests."""

from __future__ import annotations

from hw.patterns import COUNT_OFF, COUNT_ON, COUNT_PAUSE


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
