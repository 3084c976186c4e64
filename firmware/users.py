"""The user store: who may log in with EAP, kept in one JSON file (mode 0600).

Per user the file keeps the NT hash (MD4 of the UTF-16LE password), which is all
EAP-MSCHAPv2 needs. EAP-MD5 cannot work from a hash: it needs the cleartext password.
So the cleartext password is stored ONLY for users created with ``allow_md5=True``, and
anyone who can read the file can read those passwords. The file is root-only (0600).
The NT hash itself is password-equivalent for MSCHAPv2, so it is just as secret.

Names: 1-64 characters, printable, no whitespace and no backslash (a backslash is the
Windows DOMAIN\\user separator; MSCHAPv2 strips the domain part before hashing, so a
name containing one could never authenticate). Passwords: 1-256 characters.

Writes are atomic (temp file in the same directory, fsync, rename, fsync of the
directory) and serialised with an flock on ``<path>.lock``, so the daemon and the CLI
can both edit the file. Every write first re-reads the file if it changed on disk, so
an edit by one process is never lost by the other. A file that does not parse raises
UserError and is never overwritten.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from Crypto.Hash import MD4

log = logging.getLogger("ikebox.users")

NAME_MAX = 64
PASSWORD_MAX = 256
FILE_VERSION = 1


class UserError(Exception):
    """Bad input or a bad user file; the message is fit to show the operator."""


@dataclasses.dataclass(frozen=True)
class User:
    name: str
    enabled: bool
    nt_hash: bytes = dataclasses.field(repr=False)
    md5_password: str | None = dataclasses.field(default=None, repr=False)

    @property
    def methods(self) -> list[str]:
        return ["mschapv2", "md5"] if self.md5_password is not None else ["mschapv2"]


def nt_password_hash(password: str) -> bytes:
    """NtPasswordHash of RFC 2759 §8.3: MD4 over the UTF-16LE password."""
    return MD4.new(password.encode("utf-16-le")).digest()


def validate_name(name: object) -> str:
    if not isinstance(name, str):
        raise UserError("user name must be a string")
    if not 1 <= len(name) <= NAME_MAX:
        raise UserError(f"user name must be 1 to {NAME_MAX} characters long")
    for ch in name:
        if ch.isspace() or not ch.isprintable():
            raise UserError("user name must not contain spaces or control characters")
        if ch == "\\":
            raise UserError("user name must not contain a backslash (domain separator)")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError("user name is not valid Unicode text") from None
    return name


def validate_password(password: object) -> str:
    # The messages never quote the password: they may end up in a log or a web page.
    if not isinstance(password, str):
        raise UserError("password must be a string")
    if not password:
        raise UserError("password must not be empty")
    if len(password) > PASSWORD_MAX:
        raise UserError(f"password must be at most {PASSWORD_MAX} characters long")
    try:
        password.encode("utf-16-le")
    except UnicodeEncodeError:
        raise UserError("password is not valid Unicode text") from None
    return password


class UserStore:
    """Users in a JSON file. A missing file is an empty store, created on first write."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._users: dict[str, User] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._load()

    # -- reading -------------------------------------------------------------------

    def get(self, name: str) -> User | None:
        return self._users.get(name)

    def list(self) -> list[dict[str, Any]]:
        return [
            {"name": u.name, "enabled": u.enabled, "methods": u.methods}
            for u in sorted(self._users.values(), key=lambda u: u.name)
        ]

    def __len__(self) -> int:
        return len(self._users)

    def reload_if_changed(self) -> bool:
        """Re-read the file if it changed on disk (another process edited it).

        Returns True if it was re-read. On a corrupt file raises UserError and keeps
        the users loaded before.
        """
        if self._file_stamp() == self._stamp:
            return False
        self._load()
        log.info("user store %s re-read: %d users", self.path, len(self._users))
        return True

    # -- writing -------------------------------------------------------------------

    def add(
        self, name: str, password: str, enabled: bool = True, allow_md5: bool = False
    ) -> None:
        validate_name(name)
        validate_password(password)
        with self._locked():
            if name in self._users:
                raise UserError(f"user {name} already exists")
            users = dict(self._users)
            users[name] = User(
                name=name,
                enabled=bool(enabled),
                nt_hash=nt_password_hash(password),
                md5_password=password if allow_md5 else None,
            )
            self._write(users)
        log.info("user %s added (enabled=%s, md5=%s)", name, bool(enabled), allow_md5)

    def delete(self, name: str) -> None:
        with self._locked():
            if name not in self._users:
                raise UserError(f"no such user: {name}")
            users = dict(self._users)
            del users[name]
            self._write(users)
        log.info("user %s deleted", name)

    def set(self, name: str, password: str | None = None, enabled: bool | None = None) -> None:
        """Change a password and/or the enabled flag.

        A user allowed EAP-MD5 keeps that permission and gets the new cleartext stored.
        """
        if password is not None:
            validate_password(password)
        with self._locked():
            old = self._users.get(name)
            if old is None:
                raise UserError(f"no such user: {name}")
            new = old
            if password is not None:
                new = dataclasses.replace(
                    new,
                    nt_hash=nt_password_hash(password),
                    md5_password=password if old.md5_password is not None else None,
                )
            if enabled is not None:
                new = dataclasses.replace(new, enabled=bool(enabled))
            users = dict(self._users)
            users[name] = new
            self._write(users)
        changes = []
        if password is not None:
            changes.append("password")
        if enabled is not None:
            changes.append(f"enabled={bool(enabled)}")
        log.info("user %s changed (%s)", name, ", ".join(changes) or "nothing")

    # -- file handling -------------------------------------------------------------

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _load(self) -> None:
        stamp = self._file_stamp()
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            self._users, self._stamp = {}, None
            return
        except OSError as e:
            raise UserError(f"cannot read user file {self.path}: {e.strerror}") from None
        users = _parse(raw, self.path)
        self._users, self._stamp = users, stamp

    @contextmanager
    def _locked(self) -> Iterator[None]:
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # Another process may have written since we last looked: start from its
            # version, and refuse to go on (and overwrite) if the file is corrupt.
            self.reload_if_changed()
            yield
        finally:
            os.close(fd)

    def _write(self, users: dict[str, User]) -> None:
        doc = {
            "version": FILE_VERSION,
            "users": {
                u.name: _user_record(u) for u in sorted(users.values(), key=lambda u: u.name)
            },
        }
        data = (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        directory = self.path.parent
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        try:
            # mkstemp already creates 0600; fchmod makes it explicit whatever the umask.
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._users = users
        self._stamp = self._file_stamp()


def _user_record(u: User) -> dict[str, Any]:
    rec: dict[str, Any] = {"enabled": u.enabled, "nt_hash": u.nt_hash.hex()}
    if u.md5_password is not None:
        rec["md5_password"] = u.md5_password
    return rec


def _parse(raw: bytes, path: Path) -> dict[str, User]:
    def bad(why: str) -> UserError:
        return UserError(f"user file {path} is corrupt ({why}); fix or remove it by hand")

    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        # JSONDecodeError's message names a position, never the content.
        raise bad(f"not JSON: {e.__class__.__name__} at byte {getattr(e, 'pos', '?')}") from None
    if not isinstance(doc, dict) or doc.get("version") != FILE_VERSION:
        raise bad(f"expected an object with version {FILE_VERSION}")
    records = doc.get("users")
    if not isinstance(records, dict):
        raise bad("'users' is not an object")
    users: dict[str, User] = {}
    for name, rec in records.items():
        try:
            validate_name(name)
        except UserError as e:
            raise bad(f"bad user name: {e}") from None
        if not isinstance(rec, dict):
            raise bad(f"user {name} is not an object")
        enabled = rec.get("enabled")
        nt_hex = rec.get("nt_hash")
        md5_password = rec.get("md5_password")
        if not isinstance(enabled, bool):
            raise bad(f"user {name}: 'enabled' is not true/false")
        try:
            nt_hash = bytes.fromhex(nt_hex) if isinstance(nt_hex, str) else b""
        except ValueError:
            nt_hash = b""
        if len(nt_hash) != 16:
            raise bad(f"user {name}: 'nt_hash' is not 32 hex digits")
        if md5_password is not None and not (isinstance(md5_password, str) and md5_password):
            raise bad(f"user {name}: 'md5_password' is not a non-empty string")
        users[name] = User(name, enabled, nt_hash, md5_password)
    return users
