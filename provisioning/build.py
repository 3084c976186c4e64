"""`make image`: build/ikebox-<version>-arm64.img with its .bmap and .sha256.

The cached base rootfs (provisioning/rootfs.py) is unpacked, ikebox is layered on it
on the host (the package is pure Python, so no emulation is needed for this part),
and the tree becomes a partitioned image (provisioning/assemble.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from . import assemble, rootfs
from .rootfs import VENV, BuildError, run

log = logging.getLogger("ikebox.provisioning")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SITE = f"{VENV}/lib/python3.11/site-packages"
UNITS = ["ikebox.service", "ikebox-webui.service", "ikebox-leds.service",
         "ikebox-firstboot.service", "ikebox-smoke.service"]
ENABLE = [*UNITS, "systemd-networkd.service", "systemd-resolved.service",
          "systemd-timesyncd.service"]


def version() -> str:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def _requirements_met() -> None:
    """requirements.txt must be satisfied by the pins that go on the image."""
    from packaging.requirements import Requirement
    pinned = {}
    for line in rootfs.pins():
        name, _, ver = line.partition("==")
        pinned[name.lower().replace("_", "-")] = ver
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        ver = pinned.get(req.name.lower().replace("_", "-"))
        if ver is None or not req.specifier.contains(ver, prereleases=True):
            raise BuildError(f"provisioning/pins.txt does not satisfy {line!r}: "
                             "run `make image-pins`")


def install_ikebox(root: Path, work: Path) -> None:
    """The ikebox package into the image's venv, on the host, byte-compiled."""
    if sys.version_info[:2] != (3, 11):
        # The .pyc files below must match the image's Python (bookworm: 3.11).
        raise BuildError("build the image with Python 3.11 (the image's version)")
    # Build from a copy: setuptools leaves build/ and *.egg-info behind in its source.
    src = work / "src"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "requirements.txt", "README.md"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, src / name)
    for pkg in ("firmware", "hw", "webui", "provisioning"):
        shutil.copytree(REPO / pkg, src / pkg,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wheels = work / "wheel"
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels),
         str(src)], stdout=subprocess.DEVNULL)
    (wheel,) = wheels.glob("ikebox-*.whl")
    site = root / SITE.lstrip("/")
    if not site.is_dir():
        raise BuildError(f"the base rootfs has no {SITE}")
    run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--no-compile", "--upgrade", "--target", str(site), str(wheel)],
        stdout=subprocess.DEVNULL)
    shutil.rmtree(site / "bin", ignore_errors=True)  # host-style scripts; ours follow
    for pkg in ("firmware", "hw", "webui", "provisioning"):
        if (site / pkg).is_dir():
            run([sys.executable, "-m", "compileall", "-q", "-j", "0",
                 "-s", str(root), "-p", "/", str(site / pkg)])
    script = root / VENV.lstrip("/") / "bin" / "ikebox"
    script.write_text(f"#!{VENV}/bin/python3\nimport sys\nfrom firmware.cli import main\n"
                      "sys.exit(main())\n")
    script.chmod(0o755)


def _copy_tree(src: Path, dest: Path) -> None:
    for path in sorted(src.rglob("*")):
        target = dest / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or target.exists():
                target.unlink()
            shutil.copy2(path, target)


def layer(root: Path, work: Path, image_version: str) -> None:
    install_ikebox(root, work)
    _copy_tree(HERE / "overlay", root)
    unit_dir = root / "usr/lib/systemd/system"
    for unit in UNITS:
        shutil.copy2(HERE / "systemd" / unit, unit_dir / unit)
    lib = root / "usr/lib/ikebox"
    lib.mkdir(parents=True, exist_ok=True)
    shutil.copy2(HERE / "firstboot.sh", lib / "firstboot")
    shutil.copy2(HERE / "smoke.sh", lib / "smoke")
    # systemctl works on an offline tree without running anything from it.
    run(["systemctl", "--root", str(root), "--quiet", "enable", *ENABLE],
        stderr=subprocess.DEVNULL)
    # Per-box identity is made at first boot, not baked in.
    (root / "etc/machine-id").write_text("")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    dbus_id = root / "var/lib/dbus/machine-id"
    if dbus_id.exists() or dbus_id.is_symlink():
        dbus_id.unlink()
    resolv = root / "etc/resolv.conf"
    if resolv.exists() or resolv.is_symlink():
        resolv.unlink()
    resolv.symlink_to("../run/systemd/resolve/stub-resolv.conf")
    shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True)
    for log_file in (root / "var/log").rglob("*"):
        if log_file.is_file():
            log_file.unlink()
    (root / "etc/ikebox-release").write_text(
        f"IKEBOX_VERSION={image_version}\n"
        f"BUILT={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")


def build(out_dir: Path, cache: Path, ssh: bool = False) -> Path:
    _requirements_met()
    ver = version()
    extra = ["openssh-server"] if ssh else []
    t0 = time.monotonic()
    base = rootfs.build_base(cache, extra)
    t1 = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    image = out_dir / f"ikebox-{ver}-arm64.img"
    work = Path(tempfile.mkdtemp(prefix="ikebox-image.", dir=out_dir))
    try:
        root = work / "root"
        rootfs.extract(base, root)
        layer(root, work, ver)
        layout = assemble.assemble(root, image, work_dir=work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    bmap, sha = assemble.write_bmap_and_sha256(image)
    t2 = time.monotonic()
    log.info("image %s: %d MiB (root %d MiB); base %.0f s, layer+assemble %.0f s",
             image, layout.size >> 20, layout.root_size >> 20, t1 - t0, t2 - t1)
    print(f"{image}\n{bmap}\n{sha}")
    return image


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m provisioning.build")
    p.add_argument("--out", type=Path, default=Path("build"))
    p.add_argument("--cache", type=Path,
                   default=Path(os.environ.get("IKEBOX_IMAGE_CACHE",
                                               "/var/cache/ikebox-image")))
    p.add_argument("--ssh", action="store_true", help="include openssh-server")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(message)s")
    try:
        build(args.out, args.cache, args.ssh)
    except BuildError as exc:
        print(f"make image: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
