"""The browser tier's lab: the real daemon in a namespace, Debian's strongSwan as a
client in another, the web UI on loopback and headless Chromium driving the page.

Namespaces carry this area's prefix `ikbxw-` and are removed afterwards; every process
is stopped by its PID.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from tests.harness.ikebox import Box
from tests.harness.netns import Netns, link
from tests.harness.strongswan import Charon

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCREENSHOTS = os.path.join(ROOT, "test-output", "screenshots")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """client ns --veth-- box ns (daemon); the web UI and Chromium on the host's lo."""

    def __init__(self, tmp: str) -> None:
        self.tmp = tmp
        pid = os.getpid()
        k = pid % 120 + 1
        self.namespaces: list[Netns] = []
        self.box_ns = self._ns(f"ikbxw-{pid}-box")
        self.client_ns = self._ns(f"ikbxw-{pid}-cli")
        self.box_ip, self.client_ip = f"10.{k}.7.1", f"10.{k}.7.2"
        self.lan_ip = f"10.{k}.8.1"
        self.box_ns.run("ip", "addr", "add", f"{self.lan_ip}/32", "dev", "lo")
        link(self.box_ns, f"{self.box_ip}/24", self.client_ns, f"{self.client_ip}/24",
             f"w{pid % 10000}")
        self.client_ns.run("ip", "route", "add", "default", "via", self.box_ip)
        self.box_ns.run("ip", "route", "add", "default", "via", self.client_ip)
        self.box = Box(self.box_ns, os.path.join(tmp, "box"), identity="ikebox.local")
        self.webui: subprocess.Popen | None = None
        self.webui_log = os.path.join(tmp, "webui.log")
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.charon: Charon | None = None

    def _ns(self, name: str) -> Netns:
        ns = Netns(name)
        self.namespaces.append(ns)
        return ns

    def start(self) -> None:
        self.box.start()
        self._log = open(self.webui_log, "w")
        self.webui = subprocess.Popen(
            [sys.executable, "-m", "webui.app", "--config", self.box.config_path,
             "--state-dir", os.path.join(self.tmp, "webui"),
             "--listen", f"127.0.0.1:{self.port}", "--redirect", "off"],
            cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONPATH=ROOT))
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.webui.poll() is not None or time.time() > deadline:
                    raise RuntimeError(
                        f"web UI did not start:\n{self.webui_output()}") from None
                time.sleep(0.2)

    def client(self, ca_pem: str) -> Charon:
        self.charon = Charon(self.client_ns, os.path.join(self.tmp, "client"), ca_pem=ca_pem)
        self.charon.start()
        return self.charon

    def webui_output(self) -> str:
        try:
            with open(self.webui_log) as fh:
                return fh.read()
        except OSError:
            return ""

    def explain(self) -> str:
        return (f"--- charon ---\n{self.charon.log() if self.charon else ''}\n"
                f"--- daemon ---\n{self.box.log()[-6000:]}\n"
                f"--- web UI ---\n{self.webui_output()[-4000:]}")

    def close(self) -> None:
        if self.charon:
            self.charon.stop()
        if self.webui and self.webui.poll() is None:
            self.webui.send_signal(signal.SIGTERM)
            try:
                self.webui.wait(15)
            except subprocess.TimeoutExpired:
                self.webui.kill()
                self.webui.wait(5)
        if getattr(self, "_log", None):
            self._log.close()
        self.box.stop()
        for ns in self.namespaces:
            ns.delete()


def launch_browser(playwright: Any) -> Any:
    if not os.path.exists(CHROMIUM):
        raise RuntimeError(f"{CHROMIUM} is missing: install Debian's chromium "
                           "(deps/apt/webui.txt)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def screenshot(page: Any, name: str) -> str:
    os.makedirs(SCREENSHOTS, exist_ok=True)
    path = os.path.join(SCREENSHOTS, f"{name}.png")
    page.screenshot(path=path, full_page=True)
    return path
