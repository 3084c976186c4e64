"""A partitioned SD-card image from a root directory, without loop devices or mounts.

The build hosts cannot mount vfat, scan partitions on loop devices or use
device-mapper, so each filesystem is made in its own file (mkfs.vfat -C + mcopy for
the firmware partition, mkfs.ext4 -d for the root), the partition table is written
with sfdisk on the image file, and the two filesystems are copied into place with
sparse writes. bmaptool then records which blocks hold data, so flashing writes only
those.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import subprocess
from pathlib import Path

from .rootfs import BuildError, run

log = logging.getLogger("ikebox.provisioning")

MIB = 1024 * 1024
SECTOR = 512
FIRST_PARTITION_MIB = 4  # alignment the SD card's erase blocks like
BOOT_LABEL = "IKEBOXFW"  # FAT labels: 11 characters, upper case
ROOT_LABEL = "ikebox-root"


@dataclasses.dataclass(frozen=True)
class Layout:
    image: Path
    size: int
    boot_offset: int
    boot_size: int
    root_offset: int
    root_size: int


def _round_up(n: int, unit: int) -> int:
    return -(-n // unit) * unit


def _tree_usage(root: Path) -> tuple[int, int]:
    """Bytes the files take in 4 KiB blocks, and how many inodes they need."""
    used, inodes = 0, 0
    for dirpath, _dirnames, filenames in os.walk(root):
        inodes += 1 + len(filenames)
        used += 4096
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            used += _round_up(st.st_size, 4096)
    return used, inodes


def make_boot_fs(boot_dir: Path, out: Path, size_mib: int, label: str = BOOT_LABEL) -> None:
    if out.exists():
        out.unlink()
    run(["mkfs.vfat", "-C", "-F", "32", "-n", label, str(out), str(size_mib * 1024)],
        stdout=subprocess.DEVNULL)
    entries = sorted(str(p) for p in boot_dir.iterdir())
    if entries:
        # -s recursive, -p keep times, -Q stop at the first error instead of skipping
        run(["mcopy", "-s", "-p", "-Q", "-i", str(out), *entries, "::/"])


def make_root_fs(root_dir: Path, out: Path, size_bytes: int, inodes: int,
                 label: str = ROOT_LABEL) -> None:
    if out.exists():
        out.unlink()
    with open(out, "wb") as f:
        f.truncate(size_bytes)
    run(["mkfs.ext4", "-q", "-F", "-L", label, "-N", str(inodes), "-d", str(root_dir),
         str(out)])


def assemble(root_dir: Path, image: Path, boot_mib: int = 256,
             root_headroom_mib: int = 256, work_dir: Path | None = None) -> Layout:
    """Turn root_dir (with its firmware partition's files in boot/firmware) into image.

    root_dir/boot/firmware is emptied: its files live on the FAT partition, and the
    directory stays as the mount point.
    """
    boot_dir = root_dir / "boot" / "firmware"
    boot_dir.mkdir(parents=True, exist_ok=True)
    work = work_dir or image.parent
    work.mkdir(parents=True, exist_ok=True)
    boot_fs = work / (image.name + ".boot.part")
    root_fs = work / (image.name + ".root.part")
    try:
        make_boot_fs(boot_dir, boot_fs, boot_mib)
        for child in boot_dir.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

        used, inodes = _tree_usage(root_dir)
        # ext4 metadata (journal, inode tables, reserved blocks) on top of the data;
        # the first boot grows the filesystem to the card anyway.
        root_size = _round_up(int(used * 1.15) + root_headroom_mib * MIB, 4 * MIB)
        inodes = _round_up(inodes + inodes // 2 + 4096, 1024)
        make_root_fs(root_dir, root_fs, root_size, inodes)

        boot_offset = FIRST_PARTITION_MIB * MIB
        boot_size = boot_mib * MIB
        root_offset = boot_offset + boot_size
        total = root_offset + root_size
        if image.exists():
            image.unlink()
        with open(image, "wb") as f:
            f.truncate(total)
        table = (
            "label: dos\nunit: sectors\n\n"
            f"start={boot_offset // SECTOR}, size={boot_size // SECTOR}, type=c, bootable\n"
            f"start={root_offset // SECTOR}, size={root_size // SECTOR}, type=83\n"
        )
        run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(image)],
            input=table.encode(), stdout=subprocess.DEVNULL)
        for part, offset in ((boot_fs, boot_offset), (root_fs, root_offset)):
            run(["dd", f"if={part}", f"of={image}", "bs=1M", f"seek={offset // MIB}",
                 "conv=notrunc,sparse", "status=none"])
    finally:
        for p in (boot_fs, root_fs):
            if p.exists():
                p.unlink()
    return Layout(image, total, boot_offset, boot_size, root_offset, root_size)


def write_bmap_and_sha256(image: Path) -> tuple[Path, Path]:
    bmap = image.with_name(image.name + ".bmap")
    run(["bmaptool", "-q", "create", "-o", str(bmap), str(image)])
    digest = sha256_file(image)
    sha = image.with_name(image.name + ".sha256")
    sha.write_text(f"{digest}  {image.name}\n")
    return bmap, sha


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MIB):
            h.update(chunk)
    return h.hexdigest()


def partitions(image: Path) -> list[dict]:
    """The image's partition table as sfdisk -J reports it."""
    import json
    res = subprocess.run(["sfdisk", "-J", str(image)], capture_output=True, text=True)
    if res.returncode != 0:
        raise BuildError(f"{image}: no readable partition table ({res.stderr.strip()})")
    return json.loads(res.stdout)["partitiontable"]["partitions"]
