"""Configuration: defaults validate, bad values are refused with the field, writes are
atomic and round-trip."""

from __future__ import annotations

import os
import stat

import pytest

from firmware import config


def test_embedded_default_is_valid():
    cfg = config.load(None)
    assert cfg["pool"]["ipv4"] == "10.99.0.0/24"
    assert cfg["ike"]["proposals"] == "secure"


@pytest.mark.parametrize("change, field", [
    ({"ike": {"port": 70000}}, "ike.port"),
    ({"pool": {"ipv4": "10.0.0.1/24"}}, "pool.ipv4"),
    ({"pool": {"ipv4": "10.0.0.0/30"}}, "pool.ipv4"),
    ({"lan": {"subnets": ["not a net"]}}, "lan.subnets"),
    ({"lan": {"subnets": ["10.99.0.0/16"]}}, "lan.subnets"),
    ({"ike": {"proposals": "fast"}}, "ike.proposals"),
    ({"box": {"identity": "has space"}}, "box.identity"),
    ({"nope": {}}, "[nope]"),
    ({"ike": {"colour": 1}}, "ike.colour"),
    ({"ike": {"server_auth": "psk"}}, "ike.psk_file"),
])
def test_bad_values_name_the_field(change, field):
    with pytest.raises(config.ConfigError) as err:
        config.merge(config.defaults(), change)
    assert field in str(err.value)


def test_merge_leaves_the_original_untouched():
    base = config.defaults()
    config.merge(base, {"pool": {"dns": ["192.0.2.53"]}})
    assert base["pool"]["dns"] == []


def test_save_and_load_round_trip(tmp_path):
    path = str(tmp_path / "ikebox.toml")
    cfg = config.merge(config.defaults(), {"box": {"identity": "vpn.example.net"},
                                           "lan": {"subnets": ["192.168.1.0/24"],
                                                   "nat": False}})
    config.save(path, cfg)
    assert config.load(path) == cfg
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_broken_toml_is_refused_with_the_path(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[pool\nipv4 = 1")
    with pytest.raises(config.ConfigError) as err:
        config.load(str(path))
    assert "bad.toml" in str(err.value)


def test_restart_fields_are_detected():
    old = config.defaults()
    new = config.merge(old, {"ike": {"port": 1500}})
    assert config.needs_restart(old, new) == ["ike.port"]
    assert stat.S_IMODE(0o600) == 0o600


def test_two_lights_on_one_pin_are_refused():
    from firmware.config import ConfigError, defaults, merge
    with pytest.raises(ConfigError, match="leds.tunnel: pin 17 is already leds.power"):
        merge(defaults(), {"leds": {"power": 17, "tunnel": 17}})
    merge(defaults(), {"leds": {"power": 17, "tunnel": 27}})
