"""Write the ikebox image to an SD card (or a plain file), refusing anything risky.

`python -m provisioning.flash DEVICE [--seed branch-042.toml] [--yes]`

The checks come before any write: the target must be a whole, removable (or USB/MMC)
block device that is big enough, has nothing mounted, is not the running system's
disk and is not held by device-mapper or RAID. A plain file is accepted as a target
(for tests and for writing with another tool later). bmaptool writes only the blocks
the image uses and checks their sha256 as it goes; afterwards the same ranges are read
back from the card and compared with the block map (unmapped blocks keep whatever the
card held, so a whole-card compare would fail by design).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import shlex
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("ikebox.provisioning")

SEED_NAME = "ikebox-seed.toml"


class FlashRefused(Exception):
    """The target is unsafe or unusable; the message says why, nothing was written."""


class FlashFailed(Exception):
    """Writing or verifying failed after writing began."""


@dataclasses.dataclass(frozen=True)
class Target:
    path: Path
    is_file: bool
    size: int
    model: str = ""
    serial: str = ""
    transport: str = ""

    def describe(self) -> str:
        if self.is_file:
            return f"{self.path}: plain file"
        gib = self.size / 2**30
        return (f"{self.path}: {self.model or 'unknown model'}, {gib:.1f} GiB, "
                f"serial {self.serial or 'unknown'}, via {self.transport or 'unknown'}")


def run_lsblk(device: str) -> str:
    res = subprocess.run(
        ["lsblk", "-J", "-b", "-o",
         "NAME,PATH,SIZE,RM,TRAN,TYPE,MODEL,SERIAL,MOUNTPOINTS,MAJ:MIN", device],
        capture_output=True, text=True)
    if res.returncode != 0:
        raise FlashRefused(f"{device}: lsblk cannot describe it ({res.stderr.strip()})")
    return res.stdout


def _flag(value: object) -> bool:
    # lsblk -J gives booleans on newer util-linux, "0"/"1" strings on older ones.
    return value in (True, 1, "1")


def _mountpoints(node: dict) -> list[str]:
    points = node.get("mountpoints") or []
    if node.get("mountpoint"):
        points.append(node["mountpoint"])
    found = [p for p in points if p]
    for child in node.get("children") or []:
        found += _mountpoints(child)
    return found


def _disk_of_dev(dev: int, sysfs: Path) -> str | None:
    """Kernel name of the whole disk that holds device number dev (or None)."""
    link = sysfs / "dev" / "block" / f"{os.major(dev)}:{os.minor(dev)}"
    try:
        real = Path(os.path.realpath(link))
    except OSError:
        return None
    if not real.exists():
        return None
    if (real / "partition").exists():
        return real.parent.name
    return real.name


def check_target(device: str, image_size: int, *, sysfs: Path = Path("/sys"),
                 lsblk: Callable[[str], str] = run_lsblk,
                 root_dev: int | None = None) -> Target:
    """Return the target if it is safe to overwrite, else raise FlashRefused."""
    path = Path(device)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if str(path).startswith("/dev/"):
            raise FlashRefused(f"{device}: no such device (is the card reader plugged "
                               "in?)") from None
        if not path.parent.is_dir():
            raise FlashRefused(f"{device}: directory {path.parent} does not exist") from None
        return Target(path, True, 0)
    if stat.S_ISREG(st.st_mode):
        return Target(path, True, st.st_size)
    if not stat.S_ISBLK(st.st_mode):
        raise FlashRefused(f"{device}: neither a block device nor a plain file")

    block = sysfs / "dev" / "block" / f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    real = Path(os.path.realpath(block))
    if not real.exists():
        raise FlashRefused(f"{device}: not found in {sysfs}/dev/block")
    name = real.name
    if (real / "partition").exists():
        raise FlashRefused(f"{device} is a partition of {real.parent.name}: give the whole "
                           f"card, e.g. /dev/{real.parent.name}")
    try:
        info = json.loads(lsblk(str(path)))["blockdevices"][0]
    except (ValueError, KeyError, IndexError) as exc:
        raise FlashRefused(f"{device}: unreadable lsblk output ({exc})") from None
    if info.get("type") != "disk":
        raise FlashRefused(f"{device} is a {info.get('type')}, not a whole disk")
    transport = (info.get("tran") or "").lower()
    if not (_flag(info.get("rm")) or transport in ("usb", "mmc")
            or name.startswith("mmcblk")):
        raise FlashRefused(f"{device} ({info.get('model') or 'unknown model'}) is a fixed "
                           "disk: not removable, not USB, not an SD/MMC slot")
    mounted = _mountpoints(info)
    if mounted:
        raise FlashRefused(f"{device} has mounted partitions ({', '.join(mounted)}): "
                           "unmount them first")
    if root_dev is None:
        root_dev = os.stat("/").st_dev
    if _disk_of_dev(root_dev, sysfs) == name:
        raise FlashRefused(f"{device} holds the running system's root filesystem")
    holders = [h.name for h in (real / "holders").glob("*")]
    for part in real.iterdir():
        if (part / "partition").exists():
            holders += [h.name for h in (part / "holders").glob("*")]
    if holders:
        raise FlashRefused(f"{device} is in use by {', '.join(sorted(holders))} "
                           "(device-mapper, RAID or LVM)")
    size = int(info.get("size") or 0)
    if size < image_size:
        raise FlashRefused(f"{device} is too small: {size} bytes, the image needs "
                           f"{image_size}")
    return Target(path, False, size, (info.get("model") or "").strip(),
                  (info.get("serial") or "").strip(), transport)


# --- the block map -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class BlockMap:
    image_size: int
    block_size: int
    ranges: list[tuple[int, int, str]]  # first block, last block, sha256 hex


def read_bmap(path: Path) -> BlockMap:
    root = ET.parse(path).getroot()
    ctype = (root.findtext("ChecksumType") or "").strip()
    if ctype != "sha256":
        raise FlashFailed(f"{path}: checksum type {ctype or 'missing'}, expected sha256")
    ranges = []
    for rng in root.iter("Range"):
        text = (rng.text or "").strip()
        first, _, last = text.partition("-")
        ranges.append((int(first), int(last or first), rng.get("chksum", "")))
    return BlockMap(int(root.findtext("ImageSize")), int(root.findtext("BlockSize")),
                    ranges)


def verify_mapped(target: Path, bmap: BlockMap) -> int:
    """Compare every mapped range on target with the map's sha256; bytes checked."""
    checked = 0
    fd = os.open(target, os.O_RDONLY)
    try:
        # Read what reached the card, not what the page cache still holds.
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        for first, last, want in bmap.ranges:
            start = first * bmap.block_size
            length = min((last + 1) * bmap.block_size, bmap.image_size) - start
            h = hashlib.sha256()
            pos = start
            while pos < start + length:
                chunk = os.pread(fd, min(8 << 20, start + length - pos), pos)
                if not chunk:
                    raise FlashFailed(f"{target}: ends at byte {pos}, before the image does")
                h.update(chunk)
                pos += len(chunk)
            if h.hexdigest() != want:
                raise FlashFailed(f"{target}: blocks {first}-{last} differ from the image "
                                  "after writing (a failing card or reader?)")
            checked += length
    finally:
        os.close(fd)
    return checked


# --- the whole job -------------------------------------------------------------------

def check_image(image: Path) -> tuple[Path, int]:
    bmap = image.with_name(image.name + ".bmap")
    sha = image.with_name(image.name + ".sha256")
    for p in (image, bmap, sha):
        if not p.exists():
            raise FlashRefused(f"{p} is missing: run `make image` first")
    want = sha.read_text().split()[0]
    h = hashlib.sha256()
    with open(image, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    if h.hexdigest() != want:
        raise FlashRefused(f"{image} does not match {sha.name}: rebuild it")
    return bmap, image.stat().st_size


def boot_partition_offset(image: Path) -> int:
    res = subprocess.run(["sfdisk", "-J", str(image)], capture_output=True, text=True,
                         check=True)
    table = json.loads(res.stdout)["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    return int(table["partitions"][0]["start"]) * sector


def copy_seed(target: Path, offset: int, seed: Path) -> None:
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    res = subprocess.run(["mcopy", "-o", "-i", f"{target}@@{offset}", str(seed),
                          f"::/{SEED_NAME}"], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise FlashFailed(f"copying the seed onto {target} failed: {res.stderr.strip()}")


def confirm(target: Target, ask: Callable[[str], str] = input) -> bool:
    print(f"About to overwrite {target.describe()}")
    try:
        return ask("Type 'yes' to write the ikebox image: ").strip() == "yes"
    except EOFError:
        return False


def flash(image: Path, device: str, *, seed: Path | None = None, yes: bool = False,
          sysfs: Path = Path("/sys"), lsblk: Callable[[str], str] = run_lsblk,
          ask: Callable[[str], str] = input) -> Target:
    bmap_path, image_size = check_image(image)
    if seed is not None:
        # A bad seed is refused before the card is touched.
        from .seed import SeedError, load_seed
        try:
            load_seed(seed)
        except SeedError as exc:
            raise FlashRefused(f"{seed}: {exc}") from None
    target = check_target(device, image_size, sysfs=sysfs, lsblk=lsblk)
    if not yes and not confirm(target, ask):
        raise FlashRefused("not confirmed; nothing written")
    cmd = ["bmaptool", "copy", "--bmap", str(bmap_path), str(image), str(target.path)]
    log.info("writing: %s", shlex.join(cmd))
    if subprocess.run(cmd).returncode != 0:
        raise FlashFailed(f"bmaptool could not write {target.path}")
    checked = verify_mapped(target.path, read_bmap(bmap_path))
    print(f"verified {checked / 2**20:.0f} MiB of mapped blocks on {target.path}")
    if seed is not None:
        copy_seed(target.path, boot_partition_offset(image), seed)
        print(f"seed {seed.name} copied to the firmware partition as {SEED_NAME}")
    subprocess.run(["sync"])
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="flash", description=__doc__.splitlines()[0])
    p.add_argument("device", help="the card (e.g. /dev/sdb, /dev/mmcblk0) or a file")
    p.add_argument("--image", type=Path, required=True)
    p.add_argument("--seed", type=Path, help="ikebox-seed.toml to put on the card")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        flash(args.image, args.device, seed=args.seed, yes=args.yes)
    except FlashRefused as exc:
        print(f"flash: refused: {exc}", file=sys.stderr)
        return 2
    except FlashFailed as exc:
        print(f"flash: FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
