"""Which board we run on and which header pins drive the status lights.

Every supported board has the same 40-pin header, so the default wiring is the same
everywhere (docs/field-card.md draws it); the table is per board anyway because the
pin library differs (the Pi 5's RP1 chip works only through lgpio) and a carrier
with its own header would get its own row.

The board comes from /proc/device-tree/model (path injectable for tests); the
config's [leds] section may name the board and move any light to another pin.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from hw.patterns import Light

log = logging.getLogger("ikebox.leds")

MODEL_PATH = "/proc/device-tree/model"

# BCM number -> physical pin on the 40-pin header (only the ones we may use).
PHYSICAL_PIN = {
    2: 3, 3: 5, 4: 7, 5: 29, 6: 31, 7: 26, 8: 24, 9: 21, 10: 19, 11: 23, 12: 32,
    13: 33, 14: 8, 15: 10, 16: 36, 17: 11, 18: 12, 19: 35, 20: 38, 21: 40, 22: 15,
    23: 16, 24: 18, 25: 22, 26: 37, 27: 13,
}
GROUND_PINS = (6, 9, 14, 20, 25, 30, 34, 39)

# BCM 17, 27, 22 are physical pins 11, 13, 15: one row, with ground on pin 9 beside
# them, and clear of I2C, SPI, UART, PCM and the HAT ID EEPROM that add-ons use.
DEFAULT_PINS = {Light.POWER: 17, Light.TUNNEL: 27, Light.ALERT: 22}


class BoardError(ValueError):
    """A bad [leds] setting; the message names the key and why."""


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    pins: dict[Light, int]
    factories: tuple[str, ...]  # pin libraries to try, in order
    rgb: bool = False  # one common-cathode RGB LED on the three pins
    active_high: bool = True  # False for a common-anode RGB LED or sinking wiring


BOARDS: dict[str, Board] = {
    "pi3": Board("pi3", "Raspberry Pi 3", DEFAULT_PINS, ("lgpio", "rpigpio")),
    "pi4": Board("pi4", "Raspberry Pi 4 / 400", DEFAULT_PINS, ("lgpio", "rpigpio")),
    # RPi.GPIO cannot drive the Pi 5's RP1 GPIO block.
    "pi5": Board("pi5", "Raspberry Pi 5", DEFAULT_PINS, ("lgpio",)),
    "cm4": Board("cm4", "Compute Module 4 on a carrier with the 40-pin header",
                 DEFAULT_PINS, ("lgpio", "rpigpio")),
    "zero2w": Board("zero2w", "Raspberry Pi Zero 2 W", DEFAULT_PINS,
                    ("lgpio", "rpigpio")),
}
NONE = Board("none", "no LEDs", {}, ())
BOARD_NAMES = ("auto", *BOARDS, "none")

# (substring of the device-tree model, board), most specific first.
_MODELS = (
    ("Raspberry Pi Compute Module 5", "pi5"),  # same RP1 GPIO as the Pi 5
    ("Raspberry Pi 5", "pi5"),
    ("Raspberry Pi Compute Module 4", "cm4"),
    ("Raspberry Pi 400", "pi4"),
    ("Raspberry Pi 4", "pi4"),
    ("Raspberry Pi 3", "pi3"),
    ("Raspberry Pi Zero 2", "zero2w"),
)


def read_model(path: str = MODEL_PATH) -> str | None:
    try:
        with open(path, "rb") as f:
            raw = f.read(256)
    except OSError:
        return None
    return raw.split(b"\0", 1)[0].decode("ascii", "replace").strip() or None


def board_for_model(model: str | None) -> Board:
    if model:
        for needle, name in _MODELS:
            if needle in model:
                return BOARDS[name]
    return NONE


def detect(path: str = MODEL_PATH) -> Board:
    model = read_model(path)
    board = board_for_model(model)
    if model is None:
        log.info("no %s: not a Raspberry Pi, running without LEDs", path)
    elif board is NONE:
        log.warning("unsupported board %r: running without LEDs (set [leds] board)",
                    model)
    else:
        log.info("board %r: %s", model, board.description)
    return board


def from_config(leds: dict[str, Any], model_path: str = MODEL_PATH) -> Board:
    """The board and pins the [leds] section asks for; BoardError when it is wrong."""
    if not isinstance(leds, dict):
        raise BoardError("[leds] must be a table")
    known = {"board", "rgb", "active_high", *(light.value for light in Light)}
    unknown = sorted(set(leds) - known)
    if unknown:
        raise BoardError(f"[leds] has unknown key(s): {', '.join(unknown)}")

    name = leds.get("board", "auto")
    if name not in BOARD_NAMES:
        raise BoardError(f"[leds] board must be one of {', '.join(BOARD_NAMES)}, "
                         f"not {name!r}")
    board = detect(model_path) if name == "auto" else BOARDS.get(name, NONE)

    pins = dict(board.pins or DEFAULT_PINS)
    for light in Light:
        value = leds.get(light.value, 0)
        if isinstance(value, bool) or not isinstance(value, int):
            raise BoardError(f"[leds] {light.value} must be a BCM pin number")
        if value == 0:
            continue
        if value not in PHYSICAL_PIN:
            raise BoardError(f"[leds] {light.value} = {value}: use a BCM pin from 2 to "
                             "27 (0 and 1 belong to the HAT ID EEPROM)")
        pins[light] = value
    if len(set(pins.values())) != len(pins):
        raise BoardError("[leds] two lights are set to the same pin")

    flags = {}
    for key in ("rgb", "active_high"):
        if key in leds:
            if not isinstance(leds[key], bool):
                raise BoardError(f"[leds] {key} must be true or false")
            flags[key] = leds[key]
    if board is NONE:
        return NONE
    return replace(board, pins=pins, **flags)


def wiring(board: Board) -> list[str]:
    """One line per light: the BCM pin and its physical header pin."""
    return [f"{light.value}: BCM {pin} (header pin {PHYSICAL_PIN[pin]})"
            for light, pin in board.pins.items()]
