"""The first-boot seed: `ikebox-seed.toml` on the card's FAT partition.

Whoever prepares a card (`make flash BOX=branch-042.toml`) can preset the box's
identity, its WAN addressing, the web UI's admin password (as an argon2id hash) and
VPN users. At first boot `python -m provisioning.seed apply FILE` validates the whole
file before touching anything; a bad file is renamed FILE.invalid, its reason is
logged, and nothing of it is applied. A good file is applied (all or nothing: any
failure restores every file it had changed) and then deleted, since it may hold
passwords. Format: docs/provisioning.md.

Error messages name fields, never their values: a value may be a password.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import logging
import os
import pwd
import re
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("ikebox.provisioning")

IKEBOX = "/opt/ikebox/venv/bin/ikebox"
CONFIG = "etc/ikebox/ikebox.toml"
NETWORK = "etc/systemd/network/10-ikebox-wan.network"
ADMIN = "var/lib/ikebox-webui/admin.json"
WEB_USER = "ikebox-web"

_ARGON2ID = re.compile(
    r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$[A-Za-z0-9+/]{11,}\$[A-Za-z0-9+/]{16,}$")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_NT_HASH = re.compile(r"^[0-9a-fA-F]{32}$")

_KEYS = {
    "box": {"identity"},
    "wan": {"dhcp", "address", "gateway", "dns"},
    "webui": {"admin_password_hash"},
}


class SeedError(Exception):
    """The seed is unusable; the message names the field and why (never a value)."""


@dataclasses.dataclass(frozen=True)
class Wan:
    dhcp: bool
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface | None = None
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    dns: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class SeedUser:
    name: str
    nt_hash: bytes | None = dataclasses.field(default=None, repr=False)
    password: str | None = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass(frozen=True)
class Seed:
    identity: str | None = None
    wan: Wan | None = None
    admin_password_hash: str | None = dataclasses.field(default=None, repr=False)
    users: tuple[SeedUser, ...] = ()


# --- validation ----------------------------------------------------------------------

def _identity(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise SeedError("[box] identity must be a non-empty string (a DNS name or address)")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    name = value.rstrip(".")
    if len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        raise SeedError("[box] identity is neither an IP address nor a valid DNS name")
    return name


def _wan(table: dict[str, Any]) -> Wan:
    dhcp = table.get("dhcp", False)
    if not isinstance(dhcp, bool):
        raise SeedError("[wan] dhcp must be true or false")
    dns_raw = table.get("dns", [])
    if not isinstance(dns_raw, list):
        raise SeedError("[wan] dns must be a list of addresses")
    try:
        dns = tuple(str(ipaddress.ip_address(d)) for d in dns_raw)
    except ValueError:
        raise SeedError("[wan] dns holds something that is not an IP address") from None
    if dhcp:
        if "address" in table or "gateway" in table:
            raise SeedError("[wan] dhcp = true excludes address and gateway")
        return Wan(True, dns=dns)
    if "address" not in table:
        raise SeedError("[wan] needs dhcp = true or an address (e.g. \"192.0.2.10/24\")")
    raw = table["address"]
    if not isinstance(raw, str) or "/" not in raw:
        raise SeedError("[wan] address must be an address with its prefix length, "
                        "e.g. \"192.0.2.10/24\"")
    try:
        address = ipaddress.ip_interface(raw)
    except ValueError:
        raise SeedError("[wan] address is not a valid address/prefix") from None
    net = address.network
    if net.num_addresses > 2 and address.ip in (net.network_address, net.broadcast_address):
        raise SeedError("[wan] address is the network's own or its broadcast address, not "
                        "one a host can use")
    # Without a gateway the box cannot answer clients beyond its own segment: the
    # seed would make a card that never works from the internet.
    if "gateway" not in table:
        raise SeedError("[wan] a static address needs a gateway (the branch router)")
    try:
        gateway = ipaddress.ip_address(table["gateway"])
    except (TypeError, ValueError):
        raise SeedError("[wan] gateway is not an IP address") from None
    if gateway.version != address.version or gateway not in net:
        raise SeedError("[wan] gateway is not inside the address's network")
    if gateway == address.ip:
        raise SeedError("[wan] gateway is the box's own address")
    return Wan(False, address, gateway, dns)


def _admin_hash(value: object) -> str:
    if not isinstance(value, str) or not _ARGON2ID.match(value):
        raise SeedError("[webui] admin_password_hash must be an argon2id hash "
                        "($argon2id$v=19$m=...,t=...,p=...$salt$hash), not a password")
    try:
        from argon2 import extract_parameters
        from argon2.exceptions import InvalidHashError
    except ImportError:  # the regex above already pinned the format
        return value
    try:
        extract_parameters(value)
    except InvalidHashError:
        raise SeedError("[webui] admin_password_hash is not a valid argon2id hash") from None
    return value


def _users(entries: object) -> tuple[SeedUser, ...]:
    from firmware.users import UserError, validate_name, validate_password
    if not isinstance(entries, list):
        raise SeedError("users must be written as [[users]] tables")
    users: list[SeedUser] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries, 1):
        where = f"[[users]] #{i}"
        if not isinstance(entry, dict):
            raise SeedError(f"{where} is not a table")
        unknown = set(entry) - {"name", "password", "password_nt_hash"}
        if unknown:
            raise SeedError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        try:
            name = validate_name(entry.get("name"))
        except UserError as exc:
            raise SeedError(f"{where}: {exc}") from None
        where = f"[[users]] {name}"
        if name in seen:
            raise SeedError(f"{where} appears twice")
        seen.add(name)
        has_pw, has_nt = "password" in entry, "password_nt_hash" in entry
        if has_pw == has_nt:
            raise SeedError(f"{where}: give exactly one of password or password_nt_hash")
        if has_nt:
            nt = entry["password_nt_hash"]
            if not isinstance(nt, str) or not _NT_HASH.match(nt):
                raise SeedError(f"{where}: password_nt_hash must be 32 hex digits")
            users.append(SeedUser(name, nt_hash=bytes.fromhex(nt)))
        else:
            try:
                users.append(SeedUser(name, password=validate_password(entry["password"])))
            except UserError as exc:
                raise SeedError(f"{where}: {exc}") from None
    return tuple(users)


def parse_seed(text: str) -> Seed:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # The decoder's message gives a line and column, not the content.
        raise SeedError(f"not valid TOML: {exc}") from None
    unknown = set(doc) - set(_KEYS) - {"users"}
    if unknown:
        raise SeedError(f"unknown sections: {', '.join(sorted(unknown))}")
    for section, keys in _KEYS.items():
        table = doc.get(section, {})
        if not isinstance(table, dict):
            raise SeedError(f"[{section}] must be a table")
        extra = set(table) - keys
        if extra:
            raise SeedError(f"[{section}] has unknown keys: {', '.join(sorted(extra))}")
    seed = Seed(
        identity=_identity(doc["box"]["identity"]) if "identity" in doc.get("box", {})
        else None,
        wan=_wan(doc["wan"]) if "wan" in doc else None,
        admin_password_hash=_admin_hash(doc["webui"]["admin_password_hash"])
        if "admin_password_hash" in doc.get("webui", {}) else None,
        users=_users(doc.get("users", [])),
    )
    if seed == Seed():
        raise SeedError("the seed sets nothing")
    return seed


def load_seed(path: Path) -> Seed:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SeedError(f"cannot read it: {exc.strerror}") from None
    try:
        return parse_seed(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise SeedError("not UTF-8 text") from None


# --- rendering -----------------------------------------------------------------------

def render_network(wan: Wan) -> str:
    lines = ["# Written by the first-boot seed (ikebox-seed.toml).", "[Match]",
             "Name=e*", "", "[Network]"]
    if wan.dhcp:
        lines.append("DHCP=yes")
    else:
        lines.append(f"Address={wan.address}")
        if wan.gateway:
            lines.append(f"Gateway={wan.gateway}")
    lines += [f"DNS={d}" for d in wan.dns]
    if wan.dhcp and wan.dns:
        lines += ["", "[DHCPv4]", "UseDNS=no"]
    return "\n".join(lines) + "\n"


def set_box_key(config_text: str, key: str, value: str) -> str:
    """config_text with [box] key set to a string, comments and everything else kept."""
    lines = config_text.splitlines()
    entry = f"{key} = {json.dumps(value)}"
    section = None
    box_at = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped.strip("[]").strip()
            if section == "box":
                box_at = i
            continue
        if section == "box" and re.match(rf"{key}\s*=", stripped):
            lines[i] = entry
            break
    else:
        if box_at is None:
            lines += ["", "[box]", entry]
        else:
            lines.insert(box_at + 1, entry)
    out = "\n".join(lines) + "\n"
    if tomllib.loads(out).get("box", {}).get(key) != value:
        raise SeedError(f"could not set [box] {key} in the config file")
    return out


# --- applying ------------------------------------------------------------------------

def _write_atomic(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, *owner)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _state_dir(config: Path) -> Path:
    try:
        doc = tomllib.loads(config.read_text()) if config.exists() else {}
    except tomllib.TOMLDecodeError:
        doc = {}
    return Path(doc.get("box", {}).get("state_dir", "/var/lib/ikebox"))


def _add_users(users: tuple[SeedUser, ...], config: Path, state_dir: Path,
               ikebox: list[str]) -> None:
    from firmware.users import UserStore
    store = UserStore(state_dir / "users.json")
    clash = [u.name for u in users if store.get(u.name) is not None]
    if clash:
        raise SeedError(f"[[users]] {', '.join(clash)} already exist on this box")
    # The CLI reads state_dir from its config; under a test root that path moves.
    cli_config = state_dir / ".seed-config.toml"
    text = config.read_text() if config.exists() else ""
    cli_config.write_text(set_box_key(text, "state_dir", str(state_dir)))
    try:
        _add_each(users, store, cli_config, ikebox)
    finally:
        cli_config.unlink()
    log.info("seed: %d VPN users added", len(users))


def _add_each(users: tuple[SeedUser, ...], store: Any, config: Path,
              ikebox: list[str]) -> None:
    from firmware.users import User
    for user in users:
        if user.password is not None:
            # Through the CLI as an operator would; the password goes over stdin,
            # never on a command line or into a log.
            res = subprocess.run([*ikebox, "--config", str(config), "user", "add",
                                  user.name, "--password-stdin"],
                                 input=user.password + "\n", capture_output=True, text=True,
                                 env=dict(os.environ, IKEBOX_CONTROL="/nonexistent"))
            if res.returncode != 0:
                raise SeedError(f"[[users]] {user.name}: `ikebox user add` failed: "
                                f"{res.stderr.strip()}")
        else:
            # Known gap: neither `ikebox user add` nor UserStore takes an NT hash yet,
            # so this uses the store's own locked write with a ready-made record.
            with store._locked():
                merged = dict(store._users)
                merged[user.name] = User(user.name, True, user.nt_hash)
                store._write(merged)


def apply_seed(seed: Seed, root: Path = Path("/"), *, web_user: str = WEB_USER,
               ikebox: list[str] | None = None,
               after_each: Callable[[str], None] | None = None) -> list[str]:
    """Apply a validated seed under root; all or nothing. Returns what was changed.

    after_each is a test hook called after each step (it may raise to prove the
    rollback).
    """
    config = root / CONFIG
    state_dir = root / _state_dir(config).relative_to("/")
    users_file = state_dir / "users.json"
    touched = [config, root / NETWORK, root / ADMIN, users_file,
               users_file.with_name(users_file.name + ".lock")]
    saved = {p: (p.read_bytes(), p.stat()) if p.exists() else None for p in touched}
    done: list[str] = []
    try:
        if seed.identity is not None:
            text = config.read_text() if config.exists() else ""
            text = set_box_key(text, "identity", seed.identity)
            _write_atomic(config, text.encode(), 0o644, None)
            done.append("identity")
            after_each and after_each("identity")
        if seed.wan is not None:
            _write_atomic(root / NETWORK, render_network(seed.wan).encode(), 0o644, None)
            done.append("wan")
            after_each and after_each("wan")
        if seed.admin_password_hash is not None:
            pw = pwd.getpwnam(web_user)
            admin = root / ADMIN
            admin.parent.mkdir(parents=True, exist_ok=True)
            os.chown(admin.parent, pw.pw_uid, pw.pw_gid)
            os.chmod(admin.parent, 0o700)
            body = json.dumps({"password_hash": seed.admin_password_hash}) + "\n"
            _write_atomic(admin, body.encode(), 0o600, (pw.pw_uid, pw.pw_gid))
            done.append("webui admin password")
            after_each and after_each("webui")
        if seed.users:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            _add_users(seed.users, config, state_dir, ikebox or [IKEBOX])
            done.append(f"{len(seed.users)} users")
            after_each and after_each("users")
    except BaseException:
        for path, old in saved.items():
            if old is None:
                if path.exists():
                    path.unlink()
            else:
                data, st = old
                _write_atomic(path, data, st.st_mode & 0o7777, (st.st_uid, st.st_gid))
        raise
    return done


def apply_file(path: Path, root: Path = Path("/"), **kw: Any) -> int:
    """First-boot entry: apply and delete, or rename to .invalid. Exit status."""
    if not path.exists():
        log.info("no seed at %s", path)
        return 0
    try:
        seed = load_seed(path)
        done = apply_seed(seed, root, **kw)
    except SeedError as exc:
        bad = path.with_name(path.name + ".invalid")
        os.replace(path, bad)
        log.error("seed %s refused, nothing applied, kept as %s: %s", path, bad.name, exc)
        return 1
    path.unlink()
    log.info("seed applied (%s) and deleted", ", ".join(done))
    return 0


def _print_hash(kind: str, ask: Callable[[str], str] | None = None) -> int:
    """The hashes a seed holds instead of passwords, made the way the box checks them.
    The password is read without echo and never printed."""
    import getpass
    ask = ask or getpass.getpass
    password = ask("Password: ")
    if password != ask("Again: "):
        print("the two passwords differ", file=sys.stderr)
        return 1
    if kind == "admin-hash":
        from webui.store import hash_password, password_problem
        problem = password_problem(password)
        if problem:
            print(problem, file=sys.stderr)
            return 1
        print(hash_password(password))
    else:
        from firmware.users import nt_password_hash
        print(nt_password_hash(password).hex())
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m provisioning.seed")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="validate a seed file")
    c.add_argument("file", type=Path)
    a = sub.add_parser("apply", help="apply and delete a seed file (first boot)")
    a.add_argument("file", type=Path)
    a.add_argument("--root", type=Path, default=Path("/"))
    sub.add_parser("admin-hash", help="ask for the web page's admin password and print "
                   "its argon2id hash, for [webui] admin_password_hash")
    sub.add_parser("nt-hash", help="ask for a VPN user's password and print its NT hash, "
                   "for [[users]] password_nt_hash")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if args.cmd in ("admin-hash", "nt-hash"):
        return _print_hash(args.cmd)
    if args.cmd == "check":
        try:
            load_seed(args.file)
        except SeedError as exc:
            print(f"{args.file}: {exc}", file=sys.stderr)
            return 1
        print(f"{args.file}: ok")
        return 0
    return apply_file(args.file, args.root)


if __name__ == "__main__":
    sys.exit(main())
