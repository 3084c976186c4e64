"""The thin gpiozero adapter: logical lights on, physical pins set.

Blinking is not left to gpiozero's background threads: the service computes every
frame from hw.patterns and writes plain on/off levels, so one clock drives all
lights and tests can drive it with a fake one.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from hw.boards import NONE, Board, wiring
from hw.patterns import Light

log = logging.getLogger("ikebox.leds")

# gpiozero factory class per name in Board.factories.
_FACTORIES = {
    "lgpio": ("gpiozero.pins.lgpio", "LGPIOFactory"),
    "rpigpio": ("gpiozero.pins.rpigpio", "RPiGPIOFactory"),
}


class Lights(Protocol):
    def show(self, lit: dict[Light, bool]) -> None: ...
    def close(self) -> None: ...


class NoLights:
    """No LED hardware (a PC, or board "none"): pattern changes go to the log."""

    def __init__(self) -> None:
        self._last: dict[Light, bool] = {}

    def show(self, lit: dict[Light, bool]) -> None:
        if lit != self._last:
            log.debug("lights %s", " ".join(
                f"{light.value}={'on' if on else 'off'}" for light, on in lit.items()))
            self._last = dict(lit)

    def close(self) -> None:
        pass


class GpioLights:
    """Three LEDs, or one RGB LED (red = alert, green = power, blue = tunnel)."""

    def __init__(self, board: Board, factory: Any) -> None:
        from gpiozero import LED

        self.board = board
        self._leds: dict[Light, Any] = {}
        try:
            for light, pin in board.pins.items():
                self._leds[light] = LED(pin, active_high=board.active_high,
                                        initial_value=False, pin_factory=factory)
        except Exception:
            self.close()
            raise
        self._state: dict[Light, bool] = {light: False for light in self._leds}

    def show(self, lit: dict[Light, bool]) -> None:
        if self.board.rgb and lit.get(Light.ALERT):
            # On one RGB LED the alert must read as pure red, not a mix.
            lit = {Light.ALERT: True, Light.POWER: False, Light.TUNNEL: False}
        for light, led in self._leds.items():
            want = bool(lit.get(light, False))
            if self._state[light] != want:
                led.value = want
                self._state[light] = want

    def close(self) -> None:
        for led in self._leds.values():
            try:
                led.off()
                led.close()
            except Exception:  # noqa: BLE001 - closing must not hide the first error
                log.debug("closing an LED failed", exc_info=True)
        self._leds.clear()


def pick_factory(board: Board) -> Any | None:
    """The first pin library in the board's list that loads, or None."""
    import importlib

    for name in board.factories:
        module_name, class_name = _FACTORIES[name]
        try:
            factory_class = getattr(importlib.import_module(module_name), class_name)
            factory = factory_class()
        except Exception as exc:  # noqa: BLE001 - missing library or no GPIO chip
            log.info("pin library %s unusable: %s", name, exc)
            continue
        log.info("pin library %s", name)
        return factory
    return None


def open_lights(board: Board, factory: Any | None = None) -> Lights:
    """Lights for `board`; NoLights when there is no board or no pin library.

    Running without LEDs beats crashing: the service then still logs what the
    lights would show.
    """
    if board is NONE or not board.pins:
        log.info("no LED board: running without LEDs")
        return NoLights()
    if factory is None:
        factory = pick_factory(board)
        if factory is None:
            log.warning("no usable pin library (%s) on %s: running without LEDs",
                        "/".join(board.factories), board.description)
            return NoLights()
    try:
        lights = GpioLights(board, factory)
    except Exception as exc:  # noqa: BLE001 - busy pin, no permission on /dev/gpiochip
        log.warning("cannot drive the LED pins (%s): running without LEDs", exc)
        return NoLights()
    log.info("LEDs on %s%s: %s", board.description, " (one RGB LED)" if board.rgb else "",
             "; ".join(wiring(board)))
    return lights
