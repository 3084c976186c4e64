"""The built image boots under qemu-system-aarch64 and does its job.

The image is flashed (provisioning.flash, with a seed) onto a plain file, booted with
the kernel and initrd taken from its own FAT partition and the root on virtio over a
qcow2 overlay that is 1 GiB larger than the card (so the first-boot resize has room).
`ikebox.smoke` on the kernel command line enables a unit that reports on the serial
console; the host then checks the web UI and sends an IKE_SA_INIT through qemu's
port forwards (bound to 127.0.0.1, guest network restricted).
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from provisioning.flash import boot_partition_offset, flash

REPO = Path(__file__).resolve().parents[2]
BOOT_TIMEOUT = int(os.environ.get("IKEBOX_BOOT_TIMEOUT", "900"))
WEBUI_PORT = int(os.environ.get("IKEBOX_WEBUI_PORT", "80"))
ADMIN_HASH = ("$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA"
              "$RdescudvJCsgt3ub+b+dWRWJTmaaJObG3ogzNz5Ub3M")
SEED = f"""
[box]
identity = "branch-042.example.org"

[wan]
dhcp = true

[webui]
admin_password_hash = "{ADMIN_HASH}"

[[users]]
name = "alice"
password = "image test password"
"""


def _image() -> Path:
    env = os.environ.get("IKEBOX_IMAGE")
    if env:
        return Path(env)
    import tomllib
    ver = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    return REPO / "build" / f"ikebox-{ver}-arm64.img"


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mcopy_out(card: Path, offset: int, name: str, dest: Path) -> None:
    subprocess.run(["mcopy", "-n", "-i", f"{card}@@{offset}", f"::/{name}", str(dest)],
                   check=True, env=dict(os.environ, MTOOLS_SKIP_CHECK="1"))


class Booted:
    def __init__(self, serial: Path, web: int, ike: int, proc: subprocess.Popen,
                 boot_seconds: float):
        self.serial, self.web, self.ike, self.proc = serial, web, ike, proc
        self.boot_seconds = boot_seconds

    def smoke(self) -> dict[str, str]:
        found = {}
        for line in self.serial.read_text(errors="replace").splitlines():
            m = re.search(r"IKEBOX-SMOKE (\S+) ?(.*)", line)
            if m:
                found.setdefault(m.group(1), m.group(2).strip())
        return found


@pytest.fixture(scope="module")
def booted(tmp_path_factory):
    image = _image()
    assert image.exists(), f"{image} is missing: `make test-image` builds it first"
    work = tmp_path_factory.mktemp("boot")
    seed = work / "seed.toml"
    seed.write_text(SEED)
    card = work / "card.img"
    flash(image, str(card), seed=seed, yes=True)

    offset = boot_partition_offset(card)
    _mcopy_out(card, offset, "config.txt", work / "config.txt")
    config = (work / "config.txt").read_text()
    kernel = re.search(r"^kernel=(\S+)", config, re.M).group(1)
    initrd = re.search(r"^initramfs (\S+)", config, re.M).group(1)
    _mcopy_out(card, offset, kernel, work / "vmlinuz")
    _mcopy_out(card, offset, initrd, work / "initrd.img")
    _mcopy_out(card, offset, "cmdline.txt", work / "cmdline.txt")
    cmdline = (work / "cmdline.txt").read_text().strip()

    overlay = work / "overlay.qcow2"
    size = card.stat().st_size + (1 << 30)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(card),
                    str(overlay), str(size)], check=True)
    web, ike = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)
    serial = work / "serial.log"
    cmd = ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-smp", "2",
           "-m", "2048", "-display", "none", "-monitor", "none", "-no-reboot",
           "-kernel", str(work / "vmlinuz"), "-initrd", str(work / "initrd.img"),
           # The card's own command line; the Pi's serial console is ttyS1, virt's
           # PL011 is ttyAMA0.
           "-append", f"{cmdline} console=ttyAMA0 ikebox.smoke",
           "-drive", f"file={overlay},if=virtio,format=qcow2",
           "-nic", f"user,model=virtio-net-pci,restrict=on,"
                   f"hostfwd=tcp:127.0.0.1:{web}-:{WEBUI_PORT},"
                   f"hostfwd=udp:127.0.0.1:{ike}-:500",
           "-serial", f"file:{serial}"]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while time.monotonic() - start < BOOT_TIMEOUT:
            if proc.poll() is not None:
                pytest.fail(f"qemu exited ({proc.returncode}): {proc.stdout.read()!r}\n"
                            f"serial tail: {serial.read_text(errors='replace')[-3000:]}")
            if serial.exists() and "IKEBOX-SMOKE done" in serial.read_text(errors="replace"):
                break
            time.sleep(2)
        else:
            pytest.fail(f"no smoke report within {BOOT_TIMEOUT} s; serial tail:\n"
                        f"{serial.read_text(errors='replace')[-3000:]}")
        b = Booted(serial, web, ike, proc, time.monotonic() - start)
        print(f"\nboot to smoke report: {b.boot_seconds:.0f} s")
        yield b
    finally:
        # Only the qemu this fixture started, by its process group.
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        keep = os.environ.get("IKEBOX_KEEP_SERIAL")
        if keep:
            Path(keep).write_bytes(serial.read_bytes())


def test_services_are_active(booted):
    smoke = booted.smoke()
    for unit in ("ikebox.service", "ikebox-webui.service", "ikebox-leds.service",
                 "ikebox-firstboot.service", "systemd-networkd.service"):
        assert smoke.get("unit") is not None
        line = [v for k, v in _all(booted, "unit") if v.startswith(unit + " ")]
        assert line == [f"{unit} active"], f"{unit}: {line}"
    assert smoke["failed-units"] == "", smoke["failed-units"]


def _all(booted, key):
    text = booted.serial.read_text(errors="replace")
    return [(key, m.group(1).strip())
            for m in re.finditer(rf"IKEBOX-SMOKE {key} (.*)", text)]


def test_first_boot_grew_root_and_set_identity(booted):
    smoke = booted.smoke()
    card_root_kib = None
    # The overlay is 1 GiB larger than the card: the root filesystem must have grown
    # by most of it.
    image = _image()
    from provisioning.assemble import partitions
    parts = partitions(image)
    card_root_kib = parts[1]["size"] * 512 // 1024
    assert int(smoke["root-size-kib"]) > card_root_kib + 900 * 1024 * 0.9
    assert smoke["machine-id"] == "1"
    assert smoke["journal-files-on-card"] == "0"
    assert smoke["swap"] == "0"


def test_seed_was_applied_and_deleted(booted):
    smoke = booted.smoke()
    assert smoke["seed-left"] == "0"
    assert smoke["admin-json"] == "ikebox-web 600"
    assert smoke["identity"] == '"branch-042.example.org"'
    assert smoke["users"] == "alice"
    assert "image test password" not in booted.serial.read_text(errors="replace")


def test_daemon_listens_for_ike(booted):
    smoke = booted.smoke()
    assert re.search(r"(^|\s)(0\.0\.0\.0|\*|\[::\]):500(\s|$)", smoke["listen-udp"]), \
        smoke["listen-udp"]


def test_webui_answers_through_the_port_forward(booted):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{booted.web}/", timeout=30) as r:
            status = r.status
    except urllib.error.HTTPError as exc:  # a redirect to a login page etc. is an answer
        status = exc.code
    assert 200 <= status < 500


def _ike_sa_init(spi_i: bytes) -> bytes:
    """A minimal IKE_SA_INIT request: AES-GCM-16-256, PRF-HMAC-SHA2-256, Curve25519."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    pub = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw,
                                                                 PublicFormat.Raw)
    transforms = (struct.pack("!BBHBBH", 3, 0, 12, 1, 0, 20) + struct.pack("!HH", 0x800E, 256)
                  + struct.pack("!BBHBBH", 3, 0, 8, 2, 0, 5)
                  + struct.pack("!BBHBBH", 0, 0, 8, 4, 0, 31))
    proposal = struct.pack("!BBHBBBB", 0, 0, 8 + len(transforms), 1, 1, 0, 3) + transforms
    sa = struct.pack("!BBH", 34, 0, 4 + len(proposal)) + proposal
    ke = struct.pack("!BBHHH", 40, 0, 8 + len(pub), 31, 0) + pub
    nonce_i = secrets.token_bytes(32)
    nonce = struct.pack("!BBH", 0, 0, 4 + len(nonce_i)) + nonce_i
    body = sa + ke + nonce
    header = spi_i + bytes(8) + struct.pack("!BBBBII", 33, 0x20, 34, 0x08, 0, 28 + len(body))
    return header + body


def test_ike_sa_init_is_answered(booted):
    spi_i = secrets.token_bytes(8)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        reply = None
        for _ in range(12):  # the first packets may meet a daemon still warming up
            s.sendto(_ike_sa_init(spi_i), ("127.0.0.1", booted.ike))
            try:
                reply, _ = s.recvfrom(65535)
                break
            except socket.timeout:
                continue
    assert reply is not None, "no answer to IKE_SA_INIT through the udp/500 forward"
    assert reply[:8] == spi_i
    _, version, exchange, flags, msg_id, length = struct.unpack("!BBBBII", reply[16:28])
    assert (version, exchange, msg_id, length) == (0x20, 34, 0, len(reply))
    assert flags & 0x20, "not flagged as a response"
    assert reply[8:16] != bytes(8) or reply[16] == 41, "no SPIr and no notify"
