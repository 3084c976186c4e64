"""The gpiozero adapter against gpiozero's MockFactory, on a fake clock.

MockPin records (seconds since the previous change, level) using
gpiozero.pins.mock.monotonic; patching that to the fake clock makes the recorded
history the exact pattern timing.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import gpiozero.pins.mock as gpio_mock
import pytest
from gpiozero.pins.mock import MockFactory

from hw import boards, leds
from hw.patterns import COUNT_OFF, COUNT_ON, COUNT_PAUSE, Light, StatusLights
from hw.service import play

READY = {"ready": True, "sessions": 0, "half_open": 0,
         "wan": {"address": "192.0.2.10", "default_route": True}}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    c = FakeClock()
    monkeypatch.setattr(gpio_mock, "monotonic", c)
    return c


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.reset()


def pins(factory, board=boards.BOARDS["pi4"]):
    return {light: factory.pin(pin) for light, pin in board.pins.items()}


def run(status: StatusLights, lights, clock: FakeClock, seconds: float,
        tick: float = 0.05) -> None:
    end = clock.now + seconds
    while clock.now < end - 1e-9:
        lights.show(status.frame(clock.now))
        clock.sleep(tick)


def history(pin) -> list[tuple[float, bool]]:
    """Changes as (seconds held before this change, new level), rounded to ticks."""
    return [(round(t, 2), s) for t, s in pin.states[1:]]


def test_show_drives_each_pin_and_close_turns_them_off(factory):
    lights = leds.open_lights(boards.BOARDS["pi4"], factory)
    assert isinstance(lights, leds.GpioLights)
    p = pins(factory)
    assert not any(pin.state for pin in p.values())
    lights.show({Light.POWER: True, Light.TUNNEL: False, Light.ALERT: True})
    assert (p[Light.POWER].state, p[Light.TUNNEL].state, p[Light.ALERT].state) == \
        (True, False, True)
    lights.close()
    assert p[Light.POWER].function == "input"  # released


def test_active_low_wiring_inverts_the_level(factory):
    board = replace(boards.BOARDS["pi3"], active_high=False)
    lights = leds.open_lights(board, factory)
    p = pins(factory, board)
    lights.show({Light.POWER: True, Light.TUNNEL: False, Light.ALERT: False})
    assert p[Light.POWER].state is False and p[Light.TUNNEL].state is True


def test_slow_blink_then_steady_on_the_power_pin(factory, clock):
    lights = leds.open_lights(boards.BOARDS["pi5"], factory)
    status = StatusLights()
    status.unreachable(clock.now)
    run(status, lights, clock, 4.0)
    status.snapshot(READY, clock.now)
    run(status, lights, clock, 3.0)
    power = pins(factory)[Light.POWER]
    # Two 1 s on / 1 s off cycles, then on for good.
    assert history(power) == [(0.0, True), (1.0, False), (1.0, True), (1.0, False),
                              (1.0, True)]
    assert power.state is True
    assert pins(factory)[Light.ALERT].states[-1].state is False  # steady, then off


def test_auth_failure_blinks_the_alert_pin_once_per_group(factory, clock):
    lights = leds.open_lights(boards.BOARDS["zero2w"], factory)
    status = StatusLights()
    status.snapshot(READY, clock.now)
    run(status, lights, clock, 0.5)
    status.event({"event": "failure", "class": "auth"}, clock.now)
    run(status, lights, clock, 2 * (COUNT_ON + COUNT_PAUSE) - 0.01)
    alert = pins(factory)[Light.ALERT]
    assert history(alert) == [(0.5, True), (COUNT_ON, False), (COUNT_PAUSE, True),
                              (COUNT_ON, False)]


def test_proposal_failure_blinks_twice_per_group(factory, clock):
    lights = leds.open_lights(boards.BOARDS["cm4"], factory)
    status = StatusLights()
    status.snapshot(READY, clock.now)
    status.event({"event": "failure", "class": "proposal"}, clock.now)
    run(status, lights, clock, 2 * (2 * COUNT_ON + COUNT_OFF + COUNT_PAUSE))
    alert = pins(factory)[Light.ALERT]
    group = [(COUNT_ON, False), (COUNT_OFF, True), (COUNT_ON, False), (COUNT_PAUSE, True)]
    assert history(alert) == [(0.0, True)] + group + group[:-1]


def test_tunnel_pin_blinks_while_negotiating_and_holds_with_a_session(factory, clock):
    lights = leds.open_lights(boards.BOARDS["pi4"], factory)
    status = StatusLights()
    status.snapshot(READY, clock.now)
    status.event({"event": "negotiation_started", "ike_sa": "1"}, clock.now)
    run(status, lights, clock, 1.0)
    status.event({"event": "negotiation_ended", "ike_sa": "1", "established": True},
                 clock.now)
    status.event({"event": "session_up", "id": "s"}, clock.now)
    run(status, lights, clock, 2.0)
    status.event({"event": "session_down", "session": {"id": "s"}}, clock.now)
    run(status, lights, clock, 0.5)
    assert history(pins(factory)[Light.TUNNEL]) == [
        (0.0, True), (0.25, False), (0.25, True), (0.25, False), (0.25, True),
        (2.0, False)]


def test_rgb_led_shows_alert_as_pure_red(factory):
    board = replace(boards.BOARDS["pi4"], rgb=True)
    lights = leds.open_lights(board, factory)
    p = pins(factory, board)  # power = green leg, tunnel = blue leg, alert = red leg
    lights.show({Light.POWER: True, Light.TUNNEL: True, Light.ALERT: False})
    assert [p[light].state for light in Light] == [True, True, False]
    lights.show({Light.POWER: True, Light.TUNNEL: True, Light.ALERT: True})
    assert [p[light].state for light in Light] == [False, False, True]


def test_lamp_test_drives_every_pin(factory, clock):
    from hw.patterns import lamp_test_steps

    lights = leds.open_lights(boards.BOARDS["pi4"], factory)
    said = []
    play(lamp_test_steps(), lights, clock=clock, wait=clock.sleep, say=said.append)
    p = pins(factory)
    assert said[0] == "all lights on" and said[-1].startswith("all lights off")
    for light in Light:
        assert len(p[light].states) > 4, light  # switched on and off several times
        assert p[light].state is False
    # Alert shows 1..6 blinks twice each, then steady: 2*21 rising edges + lamp + steady.
    rises = sum(1 for _, s in p[Light.ALERT].states[1:] if s)
    assert rises == 1 + 2 * 21 + 1


def test_a_pc_without_pin_library_runs_without_leds(caplog):
    caplog.set_level(logging.INFO, "ikebox.leds")
    board = replace(boards.BOARDS["pi4"], factories=("lgpio", "rpigpio"))
    lights = leds.open_lights(board)
    assert isinstance(lights, leds.NoLights)
    lights.show({light: True for light in Light})  # harmless
    assert any(r.levelno == logging.WARNING and "running without LEDs" in r.message
               for r in caplog.records)


def test_busy_pin_runs_without_leds_and_frees_the_others(factory, caplog):
    from gpiozero import LED

    taken = LED(27, pin_factory=factory)  # the tunnel pin
    lights = leds.open_lights(boards.BOARDS["pi4"], factory)
    assert isinstance(lights, leds.NoLights)
    assert "cannot drive the LED pins" in caplog.text
    LED(17, pin_factory=factory).close()  # power pin was released again
    taken.close()


def test_board_none_needs_no_factory():
    assert isinstance(leds.open_lights(boards.NONE), leds.NoLights)
