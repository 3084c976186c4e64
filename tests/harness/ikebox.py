"""`ikebox daemon` in a namespace, with its own config, state directory and socket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from firmware import config as config_mod
from firmware.control import ControlClient, DaemonUnreachable

from .netns import Netns, stop_process

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Box:
    def __init__(self, ns: Netns, workdir: str, identity: str = "ikebox.test",
                 **sections: dict[str, Any]) -> None:
        self.ns = ns
        self.dir = workdir
        self.socket = os.path.join(workdir, "control.sock")
        self.config_path = os.path.join(workdir, "ikebox.toml")
        self.log_path = os.path.join(workdir, "daemon.log")
        cfg = config_mod.defaults()
        cfg["box"]["identity"] = identity
        cfg["box"]["state_dir"] = os.path.join(workdir, "state")
        cfg["control"]["socket"] = self.socket
        cfg["ike"]["addresses"] = ["0.0.0.0"]
        for section, values in sections.items():
            cfg[section].update(values)
        config_mod.validate(cfg)
        config_mod.save(self.config_path, cfg)
        self.proc: subprocess.Popen | None = None

    def start(self, debug: bool = True, wait: float = 30) -> None:
        env = dict(os.environ, PYTHONPATH=ROOT)
        cmd = [sys.executable, "-m", "firmware.cli", "--config", self.config_path, "daemon"]
        if debug:
            cmd.append("--debug")
        self._log = open(self.log_path, "a")
        self.proc = self.ns.popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                  cwd=ROOT)
        deadline = time.time() + wait
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ikebox daemon exited ({self.proc.returncode}):\n"
                                   f"{self.log()}")
            try:
                with self.client() as c:
                    if c.call("status")["ready"]:
                        return
            except DaemonUnreachable:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"ikebox daemon not ready after {wait} s:\n{self.log()}")
            time.sleep(0.1)

    def client(self) -> ControlClient:
        return ControlClient(self.socket)

    def call(self, cmd: str, **args: Any) -> Any:
        with self.client() as c:
            return c.call(cmd, **args)

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        env = dict(os.environ, PYTHONPATH=ROOT, IKEBOX_CONTROL=self.socket)
        return subprocess.run([sys.executable, "-m", "firmware.cli", "--config",
                               self.config_path, *args], capture_output=True, text=True,
                              env=env, input=input, timeout=60, cwd=ROOT)

    def add_user(self, name: str, password: str, **kw: Any) -> None:
        self.call("user_add", name=name, password=password, **kw)

    def ca_pem(self) -> str:
        return self.call("ca_cert")["pem"]

    def log(self) -> str:
        try:
            with open(self.log_path) as fh:
                return fh.read()
        except OSError:
            return ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(15)

    def stop(self) -> None:
        stop_process(self.proc, 15)
        if getattr(self, "_log", None):
            self._log.close()
