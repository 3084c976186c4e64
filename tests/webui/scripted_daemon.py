"""A stand-in daemon for the Flask-test-client tier: the real ControlServer on a real
unix socket, answering with the daemon's own validation code (config merge, user
store, PKI) but with sessions and failures the test scripts. The browser tier runs
the real daemon instead."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

from firmware import config as config_mod
from firmware.control import ControlError, ControlServer
from firmware.pki import Pki
from firmware.users import UserError, UserStore


class ScriptedDaemon:
    def __init__(self, workdir: str) -> None:
        self.dir = workdir
        self.socket = os.path.join(workdir, "control.sock")
        self.cfg = config_mod.defaults()
        self.cfg["box"]["state_dir"] = os.path.join(workdir, "state")
        os.makedirs(self.cfg["box"]["state_dir"], exist_ok=True)
        self.users = UserStore(os.path.join(workdir, "state", "users.json"))
        self.pki = Pki(self.cfg["box"]["state_dir"])
        self.pki.ensure([self.cfg["box"]["identity"]])
        self.cert_names: list[str] = [self.cfg["box"]["identity"]]
        self.sessions: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        self.commands: list[tuple[str, dict[str, Any]]] = []
        self.started = time.time()
        self.loop = asyncio.new_event_loop()
        self.server = ControlServer(self.socket, self._handle, self.status)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)

    def stop(self) -> None:
        if not self.thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def status(self) -> dict[str, Any]:
        return {"version": "test", "started": self.started,
                "uptime": round(time.time() - self.started, 1), "ready": True,
                "listen": ["0.0.0.0:500", "0.0.0.0:4500"],
                "identity": self.cfg["box"]["identity"], "sessions": len(self.sessions),
                "ike_sas": len(self.sessions), "half_open": 0,
                "wan": {"address": "192.0.2.10", "default_route": True}}

    def add_session(self, user: str, remote: str = "198.51.100.7:4500",
                    natt: bool = True) -> dict[str, Any]:
        n = len(self.sessions) + 1
        session = {"id": f"s{n}", "ike_sa": f"{n:016x}/{n + 100:016x}", "user": user,
                   "remote": remote, "natt": natt, "assigned": [f"10.99.0.{n + 1}"],
                   "ike_cipher": "AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519",
                   "esp_cipher": "AES_GCM_16_256", "established": time.time() - 75,
                   "bytes_in": 123456, "bytes_out": 654321, "packets_in": 100,
                   "packets_out": 200, "child_state": "installed"}
        self.sessions.append(session)
        return session

    async def _handle(self, cmd: str, args: dict[str, Any]) -> Any:
        self.commands.append((cmd, args))
        try:
            return getattr(self, f"cmd_{cmd}")(**args)
        except AttributeError:
            raise ControlError(f"unknown command {cmd!r}") from None
        except UserError as exc:
            raise ControlError(str(exc)) from None
        except config_mod.ConfigError as exc:
            raise ControlError(str(exc)) from None

    def cmd_status(self) -> dict[str, Any]:
        return self.status()

    def cmd_show_sessions(self) -> list[dict[str, Any]]:
        return self.sessions

    def cmd_disconnect(self, session: str | None = None, user: str | None = None) -> Any:
        hit = [s for s in self.sessions if s["id"] == session or s["user"] == user]
        if not hit:
            raise ControlError("no such session")
        self.sessions = [s for s in self.sessions if s not in hit]
        return {"closed": len(hit)}

    def cmd_user_list(self) -> list[dict[str, Any]]:
        return self.users.list()

    def cmd_user_add(self, name: str, password: str, enabled: bool = True) -> Any:
        self.users.add(name, password, enabled=enabled)
        return {}

    def cmd_user_del(self, name: str) -> Any:
        self.users.delete(name)
        return {}

    def cmd_user_set(self, name: str, password: str | None = None,
                     enabled: bool | None = None) -> Any:
        self.users.set(name, password=password, enabled=enabled)
        return {}

    def cmd_failures(self, limit: int = 50) -> list[dict[str, Any]]:
        return self.failures[:limit]

    def cmd_config_get(self) -> dict[str, Any]:
        return self.cfg

    def cmd_config_set(self, config: dict[str, Any]) -> Any:
        new = config_mod.merge(self.cfg, config)
        changed = config_mod.diff_sections(self.cfg, new)
        self.cfg = new
        return {"changed": changed}

    def cmd_cert_regenerate(self, names: list[str] | None = None) -> Any:
        names = names or [self.cfg["box"]["identity"]]
        for name in names:
            if config_mod._identity(name):  # noqa: SLF001 - the daemon's own rule
                raise ControlError(f"{name!r} is not a host name or address")
        creds = self.pki.regenerate(list(names))
        self.cert_names = list(names)
        return {"fingerprint": creds.fingerprint,
                "subject": creds.cert.subject.rfc4514_string(),
                "not_after": creds.cert.not_valid_after_utc.isoformat()}

    def cmd_ca_cert(self) -> Any:
        return {"pem": self.pki.ca_pem()}
