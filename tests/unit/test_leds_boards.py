"""Board detection from the device-tree model and the [leds] overrides."""

from __future__ import annotations

import pytest

from hw import boards
from hw.patterns import Light


def model_file(tmp_path, text: str | None):
    path = tmp_path / "model"
    if text is not None:
        # The kernel's file ends in a NUL, not a newline.
        path.write_bytes(text.encode() + b"\0")
    return str(path)


@pytest.mark.parametrize("model, board", [
    ("Raspberry Pi 5 Model B Rev 1.0", "pi5"),
    ("Raspberry Pi Compute Module 5 Rev 1.0", "pi5"),
    ("Raspberry Pi 4 Model B Rev 1.4", "pi4"),
    ("Raspberry Pi 400 Rev 1.0", "pi4"),
    ("Raspberry Pi Compute Module 4 Rev 1.0", "cm4"),
    ("Raspberry Pi Compute Module 4S Rev 1.0", "cm4"),
    ("Raspberry Pi 3 Model B Plus Rev 1.3", "pi3"),
    ("Raspberry Pi 3 Model B Rev 1.2", "pi3"),
    ("Raspberry Pi Zero 2 W Rev 1.0", "zero2w"),
    ("Raspberry Pi Zero W Rev 1.1", "none"),
    ("Pine64 RockPro64 v2.1", "none"),
])
def test_detect_from_device_tree_model(tmp_path, model, board):
    assert boards.detect(model_file(tmp_path, model)).name == board


def test_no_device_tree_means_no_leds(tmp_path):
    assert boards.detect(model_file(tmp_path, None)) is boards.NONE


def test_pi5_uses_lgpio_only_and_others_fall_back_to_rpigpio():
    assert boards.BOARDS["pi5"].factories == ("lgpio",)
    for name in ("pi3", "pi4", "cm4", "zero2w"):
        assert boards.BOARDS[name].factories == ("lgpio", "rpigpio")


def test_default_wiring_sits_beside_a_ground_pin():
    pins = boards.DEFAULT_PINS
    physical = sorted(boards.PHYSICAL_PIN[p] for p in pins.values())
    assert physical == [11, 13, 15]
    assert 9 in boards.GROUND_PINS
    assert boards.wiring(boards.BOARDS["pi4"]) == [
        "power: BCM 17 (header pin 11)", "tunnel: BCM 27 (header pin 13)",
        "alert: BCM 22 (header pin 15)"]


def test_config_board_and_pin_overrides(tmp_path):
    b = boards.from_config({"board": "zero2w", "alert": 5, "rgb": True},
                           model_file(tmp_path, None))
    assert b.name == "zero2w" and b.rgb
    assert b.pins == {Light.POWER: 17, Light.TUNNEL: 27, Light.ALERT: 5}
    auto = boards.from_config({}, model_file(tmp_path, "Raspberry Pi 5 Model B Rev 1.0"))
    assert auto.name == "pi5" and auto.pins == boards.DEFAULT_PINS and auto.active_high
    assert boards.from_config({"board": "none", "power": 4}, "/nonexistent") is boards.NONE
    assert boards.from_config({"board": "auto"}, str(tmp_path / "absent")) is boards.NONE


@pytest.mark.parametrize("leds, words", [
    ({"board": "pi6"}, "board must be one of"),
    ({"power": 1}, "power = 1"),
    ({"tunnel": 40}, "tunnel = 40"),
    ({"alert": "22"}, "alert must be a BCM pin"),
    ({"alert": True}, "alert must be a BCM pin"),
    ({"power": 27}, "same pin"),
    ({"rgb": "yes"}, "rgb must be true or false"),
    ({"colour": 1}, "unknown key(s): colour"),
])
def test_bad_leds_section_is_refused_with_the_key(tmp_path, leds, words):
    with pytest.raises(boards.BoardError, match="leds") as err:
        boards.from_config({"board": "pi4", **leds}, model_file(tmp_path, None))
    assert words in str(err.value)
