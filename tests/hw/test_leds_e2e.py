"""The status lights end to end: the real daemon, a real strongSwan client.

The box (ikebox daemon) and the client (Debian's charon) run in their own network
namespaces (prefix ikbxl-) built with the shared harness; the LED service runs here
with its real loop and gpiozero MockFactory pins, subscribed to the daemon's control
socket (a unix socket is reached through the file system, whatever the namespace).
"""

from __future__ import annotations

import os
import shutil
import threading
import time

import pytest
from gpiozero.pins.mock import MockFactory

from hw import boards, leds
from hw.patterns import FAULT_COUNTS, Light, count_pattern
from hw.service import LedService
from tests.harness.ikebox import Box
from tests.harness.leds import blink_groups, sample
from tests.harness.netns import Topology
from tests.harness.strongswan import Charon, Conn

pytestmark = pytest.mark.netns

PASSWORD = "leds-Secret-4711"


class LedTopology(Topology):
    """The shared topology, with this area's namespace prefix (ikbxl-)."""

    def _ns(self, name: str):
        return super()._ns("ikbxl-" + name.split("-", 2)[2])


class Lights:
    """The LED service in a thread, driving mock pins the test samples."""

    def __init__(self, socket: str) -> None:
        self.factory = MockFactory()
        self.board = boards.BOARDS["pi4"]
        self.lights = leds.open_lights(self.board, self.factory)
        self.service = LedService(self.lights, socket, tick=0.01, backoff_max=0.5)
        self.thread = threading.Thread(target=self.service.run, daemon=True)
        self.thread.start()

    def pin(self, light: Light):
        return self.factory.pin(self.board.pins[light])

    def watch(self, light: Light, seconds: float) -> list[bool]:
        return sample(self.pin(light), seconds)

    def stop(self) -> None:
        self.service.stop.set()
        self.thread.join(5)
        self.lights.close()
        self.factory.reset()


class Lab:
    def __init__(self, tmp: str) -> None:
        self.topo = LedTopology("leds")
        self.box = Box(self.topo.box, os.path.join(tmp, "box"), identity="ikebox.test",
                       pool={"ipv4": "198.18.200.0/24", "dns": []})
        self.charon: Charon | None = None
        self.lights: Lights | None = None

    def start(self) -> None:
        self.box.start()
        self.box.add_user("alice", PASSWORD)
        self.charon = Charon(self.topo.client, os.path.join(os.path.dirname(self.box.dir),
                                                            "client"),
                             ca_pem=self.box.ca_pem())
        self.charon.start()
        self.lights = Lights(self.box.socket)

    def connect(self, password: str = PASSWORD) -> None:
        self.charon.load(Conn(remote_addr=self.topo.box_ip, password=password,
                              remote_ts=f"{self.topo.lan_ip}/32"))
        self.charon.initiate()

    def close(self) -> None:
        if self.lights:
            self.lights.stop()
        if self.charon:
            self.charon.stop()
        self.box.stop()
        self.topo.close()

    def explain(self) -> str:
        return (f"--- charon log ---\n{self.charon.log() if self.charon else ''}\n"
                f"--- daemon log ---\n{self.box.log()[-4000:]}")


@pytest.fixture
def lab(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    if not shutil.which("swanctl") or not os.path.exists("/usr/lib/ipsec/charon"):
        pytest.skip("needs strongSwan (deps/apt/core.txt)")
    made = Lab(str(tmp_path))
    try:
        made.start()
        yield made
    finally:
        made.close()


def eventually(check, timeout: float = 10.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_tunnel_light_follows_a_strongswan_session(lab):
    lights = lab.lights
    # Ready, with a WAN address and default route in the box's namespace.
    eventually(lambda: all(lights.watch(Light.POWER, 0.5)), what="power steady")
    assert not any(lights.watch(Light.TUNNEL, 0.3))
    assert not any(lights.watch(Light.ALERT, 0.3))

    lab.connect()
    assert lab.charon.ike_state() == "ESTABLISHED", lab.explain()
    eventually(lambda: all(lights.watch(Light.TUNNEL, 0.5)), what="tunnel steady")
    session = lab.box.call("show_sessions")[0]
    if session["child_state"] != "installed":
        # This host's kernel has no ESP: the daemon reports a kernel fault, and the
        # alert light must name it while the tunnel light still shows the session.
        n = FAULT_COUNTS["kernel"]
        eventually(lambda: blink_groups(lights.pin(Light.ALERT))[-2:] == [n, n],
                   timeout=3 * count_pattern(n).period + 1, what="kernel fault count")

    out = lab.charon.terminate()
    assert lab.charon.ike_state() is None, out.stdout + out.stderr
    eventually(lambda: not any(lights.watch(Light.TUNNEL, 0.5)), what="tunnel off")
    assert lab.box.call("status")["sessions"] == 0


def test_wrong_password_blinks_the_auth_count(lab):
    lights = lab.lights
    eventually(lambda: all(lights.watch(Light.POWER, 0.5)), what="power steady")
    lab.connect(password="not-the-password")
    assert lab.charon.ike_state() != "ESTABLISHED", lab.explain()
    assert lab.box.call("failures", limit=1)[0]["class"] == "auth"
    period = count_pattern(FAULT_COUNTS["auth"]).period
    # One blink per group, repeating.
    eventually(lambda: blink_groups(lights.pin(Light.ALERT))[-2:] == [1, 1],
               timeout=3 * period + 1, what="one blink per group")
    assert not any(lights.watch(Light.TUNNEL, 0.5))


def test_stopping_the_daemon_sets_alert_steady_and_a_restart_recovers(lab):
    lights = lab.lights
    eventually(lambda: all(lights.watch(Light.POWER, 0.5)), what="power steady")
    lab.connect()
    eventually(lambda: all(lights.watch(Light.TUNNEL, 0.5)), what="tunnel steady")

    lab.box.stop()
    eventually(lambda: all(lights.watch(Light.ALERT, 1.0)), timeout=5, what="alert steady")
    assert not any(lights.watch(Light.TUNNEL, 0.5))  # no stale "session up"
    power = lights.watch(Light.POWER, 2.1)
    assert True in power and False in power  # slow blink: unknown

    lab.box.start()
    eventually(lambda: all(lights.watch(Light.POWER, 0.5)), what="power steady again")
    # The earlier kernel fault (no ESP here) may still be counting; a steady alert
    # would mean the daemon is still seen as gone.
    alert = lights.watch(Light.ALERT, 2.5)
    assert False in alert, "alert still steady after the daemon came back"
    assert not any(lights.watch(Light.TUNNEL, 0.5))  # the client's session is gone
    assert lab.box.call("status")["sessions"] == 0
