"""The light patterns from event sequences, on a fake clock."""

from __future__ import annotations

import pytest

from hw.patterns import (
    ALERT_HOLD,
    COUNT_OFF,
    COUNT_ON,
    COUNT_PAUSE,
    FAST_BLINK,
    FAULT_COUNTS,
    OFF,
    ON,
    ON_DIPS,
    SHORT_FLASH,
    SLOW_BLINK,
    Light,
    StatusLights,
    count_pattern,
    lamp_test_steps,
)

READY = {"ready": True, "sessions": 0, "half_open": 0,
         "wan": {"address": "192.0.2.10", "default_route": True}}


def samples(lights: StatusLights, light: Light, start: float, seconds: float,
            step: float = 0.05) -> list[bool]:
    n = int(round(seconds / step))
    return [lights.frame(start + i * step)[light] for i in range(n)]


def blinks(states: list[bool]) -> int:
    """Rising edges in a sampled run (a run starting lit counts as one)."""
    return sum(1 for i, s in enumerate(states) if s and (i == 0 or not states[i - 1]))


def test_pattern_segments_and_edges():
    assert [SLOW_BLINK.lit(t) for t in (0, 0.5, 1.0, 1.5, 2.0)] == \
        [True, True, False, False, True]
    # A sample a hair before an edge, as float sums give, counts as past it.
    assert not SLOW_BLINK.lit(sum([0.1] * 10)) and SLOW_BLINK.lit(sum([0.1] * 20))
    assert ON.lit(123.4) and not OFF.lit(0)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
def test_count_pattern_blinks_n_times_then_pauses(n):
    p = count_pattern(n)
    assert p.period == pytest.approx(n * (COUNT_ON + COUNT_OFF) - COUNT_OFF + COUNT_PAUSE)
    states = [p.lit(i * 0.05) for i in range(int(round(p.period / 0.05)))]
    assert blinks(states) == n
    # The pause is the longest dark stretch, so groups read apart.
    assert not any(p.lit(p.period - COUNT_PAUSE + dt) for dt in (0.01, 0.9, 1.7))


def test_fault_counts_are_distinct_per_class():
    assert FAULT_COUNTS["auth"] == 1 and FAULT_COUNTS["proposal"] == 2
    assert len(set(FAULT_COUNTS.values())) == len(FAULT_COUNTS)
    assert set(FAULT_COUNTS) == {"auth", "proposal", "cert", "kernel", "pool", "protocol"}


def test_unknown_daemon_blinks_power_slowly_and_alert_steady():
    s = StatusLights()
    assert s.patterns(0) == {Light.POWER: SLOW_BLINK, Light.TUNNEL: OFF, Light.ALERT: ON}
    power = samples(s, Light.POWER, 0, 4)
    assert blinks(power) == 2 and power.count(True) == power.count(False)
    assert all(samples(s, Light.ALERT, 0, 4))


def test_power_steady_only_when_ready_with_wan_address_and_route():
    s = StatusLights()
    s.snapshot({**READY, "ready": False}, 0)
    assert s.patterns(0)[Light.POWER] is SLOW_BLINK
    s.snapshot(READY, 1)
    assert s.patterns(1)[Light.POWER] is ON
    assert all(samples(s, Light.POWER, 1, 3))
    s.snapshot({**READY, "wan": {"address": "192.0.2.10", "default_route": False}}, 5)
    assert s.patterns(5)[Light.POWER] is SHORT_FLASH
    s.snapshot({**READY, "wan": {"address": None, "default_route": True}}, 6)
    assert s.patterns(6)[Light.POWER] is SHORT_FLASH
    s.snapshot({k: v for k, v in READY.items() if k != "wan"}, 7)
    assert s.patterns(7)[Light.POWER] is SHORT_FLASH
    flash = samples(s, Light.POWER, 7, 4)
    assert blinks(flash) == 2 and flash.count(True) < flash.count(False) / 4


def test_tunnel_follows_negotiation_and_sessions():
    s = StatusLights()
    s.snapshot(READY, 0)
    assert not any(samples(s, Light.TUNNEL, 0, 1))
    s.event({"event": "negotiation_started", "ike_sa": "a", "peer": "p"}, 1)
    assert s.patterns(1)[Light.TUNNEL] is FAST_BLINK
    assert blinks(samples(s, Light.TUNNEL, 1, 1)) == 2
    s.event({"event": "negotiation_ended", "ike_sa": "a", "established": True}, 2)
    s.event({"event": "session_up", "id": "s1", "ike_sa": "a"}, 2)
    assert all(samples(s, Light.TUNNEL, 2, 2))
    s.event({"event": "session_up", "id": "s2"}, 4)
    s.event({"event": "session_up", "id": "s2"}, 4)  # a repeat is one session
    s.event({"event": "session_down", "session": {"id": "s1"}, "reason": "delete"}, 5)
    assert s.patterns(5)[Light.TUNNEL] is ON
    s.event({"event": "negotiation_started", "ike_sa": "b"}, 6)
    assert s.patterns(6)[Light.TUNNEL] is ON_DIPS
    dips = samples(s, Light.TUNNEL, 6, 1.5)
    assert dips.count(True) > 2 * dips.count(False) > 0
    s.event({"event": "negotiation_ended", "ike_sa": "b", "established": False}, 7)
    s.event({"event": "session_down", "session": {"id": "s2"}, "reason": "dpd"}, 8)
    assert s.patterns(8)[Light.TUNNEL] is OFF


def test_counts_from_snapshot_are_lowered_by_events_for_unseen_ids():
    s = StatusLights()
    s.snapshot({**READY, "sessions": 2, "half_open": 1}, 0)
    assert s.patterns(0)[Light.TUNNEL] is ON_DIPS
    s.event({"event": "negotiation_ended", "ike_sa": "x", "established": False}, 1)
    s.event({"event": "session_down", "session": {"id": "old1"}}, 1)
    assert s.patterns(1)[Light.TUNNEL] is ON
    s.event({"event": "session_down", "session": {"id": "old2"}}, 2)
    s.event({"event": "session_down", "session": {"id": "old3"}}, 2)  # never below 0
    assert s.patterns(2)[Light.TUNNEL] is OFF
    s.event({"event": "session_up", "id": "n"}, 3)
    assert s.patterns(3)[Light.TUNNEL] is ON


@pytest.mark.parametrize("fault_class", sorted(FAULT_COUNTS))
def test_alert_counts_the_fault_class_for_the_hold_time(fault_class):
    s = StatusLights()
    s.snapshot(READY, 0)
    s.event({"event": "failure", "class": fault_class, "peer": "p", "user": None,
             "step": "IKE_AUTH", "reason": "r"}, 10.0)
    n = FAULT_COUNTS[fault_class]
    period = count_pattern(n).period
    assert blinks(samples(s, Light.ALERT, 10.0, period)) == n
    # Still counting near the end of the hold, starting each group with blink one.
    late = 10.0 + ALERT_HOLD - 2 * period
    start = 10.0 + period * int((late - 10.0) / period + 1)
    assert blinks(samples(s, Light.ALERT, start, period)) == n
    assert not any(samples(s, Light.ALERT, 10.0 + ALERT_HOLD, 5))


def test_newest_fault_wins_and_restarts_the_count():
    s = StatusLights()
    s.snapshot(READY, 0)
    s.event({"event": "failure", "class": "pool"}, 1.0)
    s.event({"event": "failure", "class": "auth"}, 1.7)
    assert s.patterns(1.7)[Light.ALERT] == count_pattern(1)
    assert s.frame(1.7)[Light.ALERT]  # the first blink comes at once
    assert blinks(samples(s, Light.ALERT, 1.7, count_pattern(1).period)) == 1


def test_unknown_fault_class_still_alerts():
    s = StatusLights()
    s.snapshot(READY, 0)
    s.event({"event": "failure", "class": "gremlins"}, 1)
    assert s.patterns(1)[Light.ALERT] == count_pattern(FAULT_COUNTS["protocol"])


def test_losing_the_daemon_forgets_state_instead_of_showing_it_stale():
    s = StatusLights()
    s.snapshot({**READY, "sessions": 3}, 0)
    s.event({"event": "failure", "class": "cert"}, 1)
    s.unreachable(2)
    assert s.patterns(2) == {Light.POWER: SLOW_BLINK, Light.TUNNEL: OFF, Light.ALERT: ON}
    assert all(samples(s, Light.ALERT, 2, 3))
    s.snapshot(READY, 10)  # back: the fault is still recent, sessions are gone
    assert s.patterns(10) == {Light.POWER: ON, Light.TUNNEL: OFF,
                              Light.ALERT: count_pattern(FAULT_COUNTS["cert"])}


def test_blink_rhythm_continues_across_unrelated_events():
    s = StatusLights()
    s.snapshot({**READY, "half_open": 1}, 0)
    s.frame(0)
    s.event({"event": "failure", "class": "auth"}, 0.1)
    # Fast blink started at 0: at 0.3 it is in its dark half whatever happened at 0.1.
    assert not s.frame(0.3)[Light.TUNNEL]
    assert s.frame(0.55)[Light.TUNNEL]


def test_lamp_test_shows_every_pattern():
    steps = lamp_test_steps()
    seen = {(light, p.name) for step in steps for light, p in step.shown.items()}
    for light, pattern in [(Light.POWER, SLOW_BLINK), (Light.POWER, ON),
                           (Light.POWER, SHORT_FLASH), (Light.TUNNEL, FAST_BLINK),
                           (Light.TUNNEL, ON), (Light.TUNNEL, ON_DIPS), (Light.ALERT, ON)]:
        assert (light, pattern.name) in seen
    for n in FAULT_COUNTS.values():
        assert (Light.ALERT, count_pattern(n).name) in seen
    assert all(step.text for step in steps)
    assert steps[0].shown == {light: ON for light in Light}
