"""What the web UI keeps on its own disk: the admin password hash, the setup stamp,
the session secret and the audit log. Everything else belongs to the daemon.

Files live in the web UI's state directory (default /var/lib/ikebox-webui), created
0700; secrets in it are written 0600 and never logged.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

log = logging.getLogger("ikebox.webui")

# argon2-cffi's defaults are argon2id with RFC 9106's low-memory profile (64 MiB),
# which a Raspberry Pi 3 can afford for the rare login.
_hasher = PasswordHasher()
MIN_PASSWORD = 10
AUDIT_MAX = 1 << 20  # bytes; then audit.log becomes audit.log.1


class AdminExists(Exception):
    """Someone set the admin password first (two visitors racing the wizard)."""


def _write_new(path: str, data: bytes, exclusive: bool) -> None:
    """Writes `path` 0600: atomically via rename, or only if it does not exist yet."""
    if exclusive:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def hash_password(password: str) -> str:
    """The admin password as admin.json keeps it (argon2id)."""
    return _hasher.hash(password)


def password_problem(password: str, confirm: str | None = None) -> str | None:
    if len(password) < MIN_PASSWORD:
        return f"The password needs at least {MIN_PASSWORD} characters."
    if confirm is not None and password != confirm:
        return "The two passwords differ."
    return None


class StateDir:
    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(path, mode=0o700, exist_ok=True)
        self._audit_lock = threading.Lock()

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    # --- the session secret ------------------------------------------------------

    def secret_key(self) -> bytes:
        """Made once; a restart keeps sessions valid, a new card invalidates them."""
        path = self.file("secret_key")
        try:
            with open(path, "rb") as fh:
                key = fh.read()
            if len(key) >= 32:
                return key
        except FileNotFoundError:
            pass
        key = secrets.token_bytes(32)
        try:
            _write_new(path, key, exclusive=True)
        except FileExistsError:
            with open(path, "rb") as fh:
                return fh.read()
        return key

    # --- the admin password -----------------------------------------------------------

    def admin_hash(self) -> str | None:
        try:
            with open(self.file("admin.json")) as fh:
                value = json.load(fh).get("password_hash")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, AttributeError):
            # A damaged file must not open the wizard's password step to anyone.
            log.error("%s is unreadable; fix or remove it", self.file("admin.json"))
            return "!unreadable"
        return value if isinstance(value, str) and value else "!unreadable"

    def has_admin(self) -> bool:
        return self.admin_hash() is not None

    def set_admin_password(self, password: str, first: bool) -> None:
        data = json.dumps({"password_hash": hash_password(password)}).encode()
        try:
            _write_new(self.file("admin.json"), data, exclusive=first)
        except FileExistsError:
            raise AdminExists() from None

    def check_admin_password(self, password: str) -> bool:
        stored = self.admin_hash()
        if not stored or stored.startswith("!"):
            return False
        try:
            _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False
        if _hasher.check_needs_rehash(stored):
            self.set_admin_password(password, first=False)
        return True

    # --- the setup wizard -----------------------------------------------------------

    def setup_done(self) -> bool:
        return os.path.exists(self.file("setup.json"))

    def mark_setup_done(self, identity: str) -> None:
        data = json.dumps({"completed": time.time(), "identity": identity}).encode()
        _write_new(self.file("setup.json"), data, exclusive=False)

    # --- the audit log -----------------------------------------------------------------

    def audit(self, user: str, action: str, target: str = "", result: str = "ok",
              client: str = "", **extra: Any) -> None:
        """One JSON line per change: who, what, on what, and whether it was applied.

        Callers pass names, never passwords; `extra` carries only plain facts such as
        the daemon's refusal reason or a certificate fingerprint.
        """
        record = {"time": round(time.time(), 3), "user": user, "action": action,
                  "target": target, "result": result, "client": client, **extra}
        line = json.dumps(record, separators=(",", ":")) + "\n"
        path = self.file("audit.log")
        with self._audit_lock:
            # An SD card is small and login floods are cheap: keep two generations.
            try:
                if os.path.getsize(path) > AUDIT_MAX:
                    os.replace(path, f"{path}.1")
            except FileNotFoundError:
                pass
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                         0o600)
            with os.fdopen(fd, "a") as fh:
                fh.write(line)
