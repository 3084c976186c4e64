"""The box's configuration: an embedded default, a TOML file over it, validation.

Every value is checked before any of it is used; a bad file or a bad change is refused
with the field and the reason, and the running configuration stays as it was. Writes
are atomic (temporary file, fsync, rename). docs/config.md describes each field.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import tomllib
from collections.abc import Callable
from typing import Any

DEFAULT_PATH = "/etc/ikebox/ikebox.toml"

Validator = Callable[[Any], str | None]


class ConfigError(ValueError):
    """The configuration is refused; the message names the field and why."""


def _port(v: Any) -> str | None:
    return None if isinstance(v, int) and 1 <= v <= 65535 else "must be a port (1-65535)"


def _positive(v: Any) -> str | None:
    return None if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 \
        else "must be a positive number"


def _non_negative(v: Any) -> str | None:
    return None if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 \
        else "must be zero or more"


def _identity(v: Any) -> str | None:
    if not isinstance(v, str) or not v or len(v) > 253 or any(c.isspace() for c in v):
        return "must be a host name or an IP address (no spaces)"
    return None


def _addresses(v: Any) -> str | None:
    if not isinstance(v, list) or not v:
        return "must be a non-empty list of IP addresses"
    for item in v:
        try:
            ipaddress.ip_address(item)
        except (ValueError, TypeError):
            return f"{item!r} is not an IP address"
    return None


def _ipv4_pool(v: Any) -> str | None:
    if v == "":
        return None
    try:
        net = ipaddress.IPv4Network(v, strict=True)
    except (ValueError, TypeError) as exc:
        return f"{v!r} is not an IPv4 network ({exc})"
    if net.prefixlen > 29:
        return f"{v} is too small: use /29 or larger"
    return None


def _ipv6_pool(v: Any) -> str | None:
    if v == "":
        return None
    try:
        net = ipaddress.IPv6Network(v, strict=True)
    except (ValueError, TypeError) as exc:
        return f"{v!r} is not an IPv6 network ({exc})"
    if net.prefixlen > 126:
        return f"{v} is too small"
    return None


def _dns(v: Any) -> str | None:
    if not isinstance(v, list):
        return "must be a list of IP addresses"
    return None if not v else _addresses(v)


def _subnets(v: Any) -> str | None:
    if not isinstance(v, list) or not v:
        return "must be a non-empty list of networks such as \"192.168.1.0/24\""
    for item in v:
        try:
            ipaddress.ip_network(item, strict=True)
        except (ValueError, TypeError) as exc:
            return f"{item!r} is not a network ({exc})"
    return None


def _choice(*options: str) -> Validator:
    def check(v: Any) -> str | None:
        return None if v in options else f"must be one of {', '.join(options)}"
    return check


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def _string(v: Any) -> str | None:
    return None if isinstance(v, str) else "must be a string"


def _path(v: Any) -> str | None:
    return None if isinstance(v, str) and (v == "" or v.startswith("/")) else \
        "must be an absolute path"


def _pin(v: Any) -> str | None:
    # BCM 0 and 1 carry the HAT ID EEPROM, so 0 can mean "the board default".
    if isinstance(v, int) and not isinstance(v, bool) and (v == 0 or 2 <= v <= 27):
        return None
    return "must be a BCM pin 2-27 (0 = the board default)"


def _fragment(v: Any) -> str | None:
    return None if isinstance(v, int) and 576 <= v <= 65000 else "must be 576-65000 bytes"


SCHEMA: dict[str, dict[str, tuple[Any, Validator]]] = {
    "box": {
        "identity": ("ikebox.local", _identity),
        "state_dir": ("/var/lib/ikebox", _path),
        "key_type": ("ecdsa", _choice("ecdsa", "rsa")),
    },
    "ike": {
        "addresses": (["0.0.0.0", "::"], _addresses),
        "port": (500, _port),
        "natt_port": (4500, _port),
        "proposals": ("secure", _choice("secure", "legacy-windows")),
        "server_auth": ("cert", _choice("cert", "psk")),
        "psk_file": ("", _path),
        "eap_methods": (["mschapv2", "md5"], lambda v: None if isinstance(v, list) and v and
                        set(v) <= {"mschapv2", "md5"} else "must list mschapv2 and/or md5"),
        "half_open_timeout": (30, _positive),
        "eap_timeout": (120, _positive),
        "dpd_interval": (30, _non_negative),
        # The box rekeys a CHILD_SA the client has not rekeyed after this many seconds
        # (clients usually rekey after an hour); 0 = never, and no kernel lifetimes.
        "child_rekey_time": (14400, lambda v: None if isinstance(v, int) and
                             (v == 0 or 60 <= v <= 7 * 86400)
                             else "must be 0 or 60-604800 seconds"),
        "fragment_size": (1280, _fragment),
    },
    "pool": {
        "ipv4": ("10.99.0.0/24", _ipv4_pool),
        "ipv6": ("", _ipv6_pool),
        "dns": ([], _dns),
    },
    "lan": {
        "subnets": (["0.0.0.0/0"], _subnets),
        "nat": (True, _bool),
    },
    "control": {
        "socket": ("/run/ikebox/control.sock", _path),
        "group": ("ikebox", _string),
    },
    "leds": {
        "board": ("auto", _choice("auto", "pi3", "pi4", "pi5", "cm4", "zero2w", "none")),
        "power": (0, _pin),
        "tunnel": (0, _pin),
        "alert": (0, _pin),
        "rgb": (False, _bool),          # one RGB LED stands in for the three
        "active_high": (True, _bool),   # false for a common-anode RGB LED
    },
}

# Changing these needs a restart of the daemon (sockets, files already open).
RESTART_FIELDS = {("ike", "addresses"), ("ike", "port"), ("ike", "natt_port"),
                  ("control", "socket"), ("box", "state_dir")}


def defaults() -> dict[str, dict[str, Any]]:
    return {section: {key: copy.deepcopy(spec[0]) for key, spec in fields.items()}
            for section, fields in SCHEMA.items()}


def merge(base: dict[str, dict[str, Any]], changes: Any) -> dict[str, dict[str, Any]]:
    """Returns base with `changes` laid over it, validated; raises ConfigError."""
    if not isinstance(changes, dict):
        raise ConfigError("the configuration must be a table of sections")
    result = copy.deepcopy(base)
    for section, values in changes.items():
        if section not in SCHEMA:
            raise ConfigError(f"[{section}]: unknown section (known: {', '.join(SCHEMA)})")
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] must be a table")
        for key, value in values.items():
            if key not in SCHEMA[section]:
                raise ConfigError(f"{section}.{key}: unknown setting")
            result[section][key] = value
    validate(result)
    return result


def validate(cfg: dict[str, dict[str, Any]]) -> None:
    for section, fields in SCHEMA.items():
        for key, (_default, check) in fields.items():
            problem = check(cfg[section][key])
            if problem:
                raise ConfigError(f"{section}.{key}: {problem}")
    if not cfg["pool"]["ipv4"] and not cfg["pool"]["ipv6"]:
        raise ConfigError("pool: configure an IPv4 or an IPv6 pool (or both)")
    if cfg["ike"]["port"] == cfg["ike"]["natt_port"]:
        raise ConfigError("ike.natt_port: must differ from ike.port")
    if cfg["ike"]["server_auth"] == "psk" and not cfg["ike"]["psk_file"]:
        raise ConfigError("ike.psk_file: server_auth = \"psk\" needs a PSK file")
    pins = [(k, cfg["leds"][k]) for k in ("power", "tunnel", "alert") if cfg["leds"][k]]
    for i, (key, pin) in enumerate(pins):
        for other, other_pin in pins[:i]:
            if pin == other_pin:
                raise ConfigError(f"leds.{key}: pin {pin} is already leds.{other}")
    pool4 = cfg["pool"]["ipv4"]
    if pool4:
        pool_net = ipaddress.IPv4Network(pool4)
        for sub in cfg["lan"]["subnets"]:
            net = ipaddress.ip_network(sub)
            if net.version == 4 and net.prefixlen > 0 and net.overlaps(pool_net):
                raise ConfigError(f"lan.subnets: {sub} overlaps the client pool {pool4}")


def load(path: str | None) -> dict[str, dict[str, Any]]:
    """The embedded default merged with the file at `path` (a missing file is fine)."""
    if path is None or not os.path.exists(path):
        cfg = defaults()
        validate(cfg)
        return cfg
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return merge(defaults(), data)


def dumps(cfg: dict[str, dict[str, Any]]) -> str:
    """TOML for our flat schema (strings, numbers, booleans, lists of strings)."""
    lines = ["# ikebox configuration; see docs/config.md. Written by ikebox.", ""]
    for section, values in cfg.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {value!r} to TOML")


def save(path: str, cfg: dict[str, dict[str, Any]]) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(dumps(cfg))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def diff_sections(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> list[str]:
    return [s for s in new if old.get(s) != new[s]]


def needs_restart(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> list[str]:
    return [f"{s}.{k}" for s, k in sorted(RESTART_FIELDS) if old[s][k] != new[s][k]]
