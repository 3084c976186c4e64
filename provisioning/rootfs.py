"""The image's root filesystem: a cached Debian base, with ikebox layered on top.

The base (bookworm arm64, the kernel, raspi-firmware, Python and ikebox's pinned
dependencies in /opt/ikebox/venv) takes minutes under emulation, so it is built once
per content key and kept as a tarball. The layer (the ikebox package, its units, the
first-boot script and the overlay files) is pure Python and text and is added on the
host without emulation, so a rebuild after an ikebox-only change takes seconds.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

log = logging.getLogger("ikebox.provisioning")

HERE = Path(__file__).resolve().parent
BASE_DIR = HERE / "base"
PINS = HERE / "pins.txt"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
IMAGE_PYTHON = "python3.11"
VENV = "/opt/ikebox/venv"
# Wheels that run on the image: aarch64, glibc up to bookworm's 2.36.
PLATFORM_ARGS = [arg for tag in ("manylinux2014_aarch64", "manylinux_2_17_aarch64",
                                 "manylinux_2_28_aarch64", "manylinux_2_34_aarch64",
                                 "manylinux_2_36_aarch64", "any")
                 for arg in ("--platform", tag)]
# On the image only: the pin library gpiozero drives the LEDs with on a Pi 3/4/5
# (/dev/gpiochip*). The hosts that run the tests use gpiozero's mock pins instead.
IMAGE_EXTRAS = ["lgpio"]
# Bump when the base recipe below changes in a way the hashed files do not show.
BASE_RECIPE = "4"


class BuildError(Exception):
    """A build step failed; the message says which and why."""


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    log.debug("run %s", shlex.join(cmd))
    try:
        return subprocess.run(cmd, check=True, **kw)
    except subprocess.CalledProcessError as exc:
        raise BuildError(f"{shlex.join(cmd[:3])}... failed with status {exc.returncode}") \
            from None


def packages() -> list[str]:
    words: list[str] = []
    for line in (BASE_DIR / "packages.txt").read_text().splitlines():
        words += line.split("#", 1)[0].split()
    return words


def pins() -> list[str]:
    return [ln.strip() for ln in PINS.read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]


def base_key(extra_packages: list[str]) -> str:
    """Hash of everything that goes into the base: package list, pins, base files."""
    h = hashlib.sha256()
    h.update(f"recipe {BASE_RECIPE} {SUITE}\n".encode())
    h.update(" ".join(sorted(packages() + extra_packages)).encode() + b"\n")
    h.update("\n".join(pins()).encode() + b"\n")
    for path in sorted(BASE_DIR.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(BASE_DIR)).encode() + b"\0")
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def ensure_binfmt() -> None:
    """Make arm64 binaries run on this host (qemu-user through binfmt_misc)."""
    # No systemd runs on build machines, so nobody mounted binfmt_misc.
    if not os.path.exists("/proc/sys/fs/binfmt_misc/register"):
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"])
    if not os.path.exists("/proc/sys/fs/binfmt_misc/qemu-aarch64"):
        run(["update-binfmts", "--enable", "qemu-aarch64"])
    res = subprocess.run(["arch-test", "arm64"], capture_output=True, text=True)
    if res.returncode != 0:
        raise BuildError(f"this host cannot run arm64 binaries: {res.stdout.strip()}"
                         " (install qemu-user-static and binfmt-support)")


def download_wheels(cache: Path) -> Path:
    """arm64 wheels of the pinned dependencies, fetched on the host (fast, cached)."""
    key = hashlib.sha256("\n".join(pins()).encode()).hexdigest()[:16]
    dest = cache / f"wheels-{key}"
    if (dest / ".complete").exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(dest),
         "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
         *PLATFORM_ARGS, *pins()])
    (dest / ".complete").touch()
    return dest


def _hook(*lines: str) -> str:
    # mmdebstrap runs each hook with sh -c and the rootfs as $1.
    return "set -e; " + "; ".join(lines)


def build_base(cache: Path, extra_packages: list[str]) -> Path:
    """The base rootfs tarball for this content key, built if not cached."""
    key = base_key(extra_packages)
    tarball = cache / f"base-{key}.tar"
    if tarball.exists():
        log.info("base rootfs cached: %s", tarball)
        return tarball
    ensure_binfmt()
    cache.mkdir(parents=True, exist_ok=True)
    debs = cache / "debs"
    debs.mkdir(exist_ok=True)
    wheels = download_wheels(cache)
    pkgs = packages() + extra_packages
    b = shlex.quote(str(BASE_DIR))
    stub = "#!/bin/sh\\necho update-initramfs deferred by the ikebox build >&2\\n"
    setup = [
        # Downloaded .debs survive between builds (mmdebstrap's documented cache recipe).
        _hook('mkdir -p "$1/var/cache/apt/archives"'),
        f"sync-in {shlex.quote(str(debs))} /var/cache/apt/archives",
        # Configure raspi-firmware and initramfs-tools before their packages arrive.
        _hook('mkdir -p "$1/etc/default" "$1/etc/initramfs-tools/conf.d"',
              f'cp {b}/raspi-firmware "$1/etc/default/raspi-firmware"',
              f'cp {b}/initramfs-tools/conf.d/ikebox.conf "$1/etc/initramfs-tools/conf.d/"',
              f'cp {b}/initramfs-tools/modules "$1/etc/initramfs-tools/modules"'),
    ]
    essential = [
        # mkinitramfs under emulation takes minutes and package installs would run it
        # twice: divert it to a stub now and run the real one once at the end.
        _hook('chroot "$1" dpkg-divert --quiet --local --rename --add '
              '/usr/sbin/update-initramfs',
              f'printf "{stub}" > "$1/usr/sbin/update-initramfs"',
              'chmod 755 "$1/usr/sbin/update-initramfs"'),
    ]
    customize = [
        _hook('rm -f "$1/usr/sbin/update-initramfs"',
              'chroot "$1" dpkg-divert --quiet --local --rename --remove '
              '/usr/sbin/update-initramfs',
              'ver=$(ls "$1/lib/modules" | sort -V | tail -n1)',
              'chroot "$1" update-initramfs -c -k "$ver"',
              # Copies the kernel, initrd and device trees to /boot/firmware and
              # writes config.txt and cmdline.txt from /etc/default/raspi-firmware.
              'DEB_MAINT_PARAMS=configure chroot "$1" '
              '/etc/kernel/postinst.d/z50-raspi-firmware "$ver"'),
        _hook('mkdir -p "$1/tmp/wheels"'),
        f"copy-in {shlex.quote(str(wheels))}/. /tmp/wheels",
        _hook(f'chroot "$1" python3 -m venv {VENV}',
              f'chroot "$1" {VENV}/bin/pip install -q --no-index --no-cache-dir '
              f'--disable-pip-version-check --find-links /tmp/wheels '
              + " ".join(shlex.quote(p) for p in pins()),
              'rm -rf "$1/tmp/wheels"'),
        _hook(f'install -m 0644 {b}/sysusers.conf "$1/usr/lib/sysusers.d/ikebox.conf"',
              'chroot "$1" systemd-sysusers',
              f'install -m 0644 {b}/99-gpio.rules "$1/etc/udev/rules.d/99-gpio.rules"'),
        f"sync-out /var/cache/apt/archives {shlex.quote(str(debs))}",
        _hook('rm -f "$1"/var/cache/apt/archives/*.deb'),
    ]
    cmd = ["mmdebstrap", "--mode=root", "--architectures=arm64", "--variant=apt",
           "--components=main non-free-firmware", "--skip=download/empty",
           "--skip=essential/unlink", "--include=" + ",".join(pkgs),
           # Our /etc/default/raspi-firmware and initramfs module list are in place
           # before their packages: keep them, never prompt.
           "--dpkgopt=force-confold", "--dpkgopt=force-confdef"]
    for h in setup:
        cmd.append(f"--setup-hook={h}")
    for h in essential:
        cmd.append(f"--essential-hook={h}")
    for h in customize:
        cmd.append(f"--customize-hook={h}")
    fd, tmp = tempfile.mkstemp(prefix=f"base-{key}.", suffix=".tar", dir=cache)
    os.close(fd)
    cmd += [SUITE, tmp, MIRROR]
    log.info("building base rootfs %s (several minutes under emulation)", key)
    try:
        run(cmd)
        os.replace(tmp, tarball)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return tarball


def extract(tarball: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    run(["tar", "-C", str(dest), "--numeric-owner", "--xattrs", "-xf", str(tarball)])
