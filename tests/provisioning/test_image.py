"""Image assembly without mounts, and flashing it onto a plain file.

A small root tree becomes a partitioned image; the partition table, the FAT files and
the ext4 files (with owners and modes) are then read back with sfdisk, mtools and
debugfs, which are independent of the code that wrote them.
"""

import os
import subprocess
from pathlib import Path

import pytest

from provisioning import assemble
from provisioning.flash import (FlashFailed, FlashRefused, flash, read_bmap,
                                verify_mapped)

GOOD_SEED = '[box]\nidentity = "branch-042.example.org"\n'


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    base = tmp_path_factory.mktemp("img")
    root = base / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("ikebox\n")
    secret = root / "etc/secret"
    secret.write_text("only root and 1234\n")
    os.chown(secret, 1234, 1234)
    secret.chmod(0o640)
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/big").write_bytes(os.urandom(3 << 20))
    (root / "bin").symlink_to("usr/bin")
    fw = root / "boot/firmware"
    (fw / "overlays").mkdir(parents=True)
    (fw / "config.txt").write_text("arm_64bit=1\n")
    (fw / "cmdline.txt").write_text("root=LABEL=ikebox-root rw\n")
    (fw / "overlays/disable-bt.dtbo").write_bytes(b"\xd0\x0d\xfe\xed" * 64)
    img = base / "ikebox-test-arm64.img"
    layout = assemble.assemble(root, img, boot_mib=64, root_headroom_mib=16)
    bmap, sha = assemble.write_bmap_and_sha256(img)
    return layout, bmap, sha


def test_partition_table(image):
    layout, _, _ = image
    parts = assemble.partitions(layout.image)
    assert [p["type"] for p in parts] == ["c", "83"]
    assert parts[0]["start"] * 512 == layout.boot_offset == 4 << 20
    assert parts[0].get("bootable") is True
    assert parts[1]["start"] * 512 == layout.root_offset
    assert (parts[1]["start"] + parts[1]["size"]) * 512 == layout.size
    assert os.path.getsize(layout.image) == layout.size


def test_fat_partition_holds_the_firmware_files(image):
    layout, _, _ = image
    fat = f"{layout.image}@@{layout.boot_offset}"
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    assert sh("mtype", "-i", fat, "::/config.txt", env=env) == "arm_64bit=1\n"
    listing = sh("mdir", "-b", "-i", fat, "::/overlays", env=env)
    assert "disable-bt.dtbo" in listing
    assert "IKEBOXFW" in sh("minfo", "-i", fat, env=env)


def debugfs(layout, request):
    dev = f"{layout.image}?offset={layout.root_offset}"
    return sh("debugfs", "-R", request, dev)


def test_ext4_root_keeps_files_owners_and_modes(image):
    layout, _, _ = image
    assert debugfs(layout, "cat /etc/hostname") == "ikebox\n"
    st = debugfs(layout, "stat /etc/secret")
    assert "User:  1234" in st and "Group:  1234" in st
    assert "Mode:  0640" in st
    assert "Fast link dest: \"usr/bin\"" in debugfs(layout, "stat /bin")
    # The firmware files live on the FAT partition; / keeps only the mount point.
    listing = debugfs(layout, "ls -p /boot/firmware").split()
    assert sorted(line.split("/")[5] for line in listing) == [".", ".."]
    label = sh("dumpe2fs", "-h", f"{layout.image}?offset={layout.root_offset}")
    assert "ikebox-root" in label


def test_bmap_maps_less_than_the_image(image):
    layout, bmap, sha = image
    bm = read_bmap(bmap)
    mapped = sum((last - first + 1) * bm.block_size for first, last, _ in bm.ranges)
    assert bm.image_size == layout.size
    assert 3 << 20 < mapped < layout.size
    assert sha.read_text().split() == [assemble.sha256_file(layout.image),
                                       layout.image.name]


def test_flash_to_a_file_verifies_and_copies_the_seed(image, tmp_path):
    layout, bmap, _ = image
    seed = tmp_path / "branch-042.toml"
    seed.write_text(GOOD_SEED)
    target = tmp_path / "card.img"
    flash(layout.image, str(target), seed=seed, yes=True)
    # The seed sits in the FAT partition of the written file.
    fat = f"{target}@@{layout.boot_offset}"
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    assert sh("mtype", "-i", fat, "::/ikebox-seed.toml", env=env) == GOOD_SEED
    assert sh("mtype", "-i", fat, "::/config.txt", env=env) == "arm_64bit=1\n"
    assert "ikebox\n" == sh("debugfs", "-R", "cat /etc/hostname",
                            f"{target}?offset={layout.root_offset}")


def test_verify_catches_a_changed_block(image, tmp_path):
    layout, bmap, _ = image
    target = tmp_path / "card.img"
    flash(layout.image, str(target), yes=True)
    bm = read_bmap(bmap)
    assert verify_mapped(target, bm) > 0
    first = bm.ranges[-1][0]
    with open(target, "r+b") as f:
        f.seek(first * bm.block_size + 17)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(FlashFailed, match="differ from the image"):
        verify_mapped(target, bm)


def test_image_not_matching_its_sha256_is_refused_before_writing(image, tmp_path):
    layout, bmap, sha = image
    copy = tmp_path / layout.image.name
    subprocess.run(["cp", "--sparse=always", str(layout.image), str(copy)], check=True)
    for p in (bmap, sha):
        (tmp_path / p.name).write_bytes(p.read_bytes())
    with open(copy, "r+b") as f:
        f.seek(layout.root_offset + 1024)
        f.write(b"X")
    target = tmp_path / "card.img"
    with pytest.raises(FlashRefused, match="does not match"):
        flash(copy, str(target), yes=True)
    assert not target.exists()


def test_bad_seed_is_refused_before_writing(image, tmp_path):
    layout, _, _ = image
    seed = tmp_path / "bad.toml"
    seed.write_text("[wan]\ndhcp = 1\n")
    target = tmp_path / "card.img"
    with pytest.raises(FlashRefused, match=r"\[wan\] dhcp"):
        flash(layout.image, str(target), seed=seed, yes=True)
    assert not target.exists()


def test_unconfirmed_flash_writes_nothing(image, tmp_path):
    layout, _, _ = image
    target = tmp_path / "card.img"
    with pytest.raises(FlashRefused, match="not confirmed"):
        flash(layout.image, str(target), ask=lambda prompt: "no")
    assert not target.exists()


def test_make_flash_refuses_a_character_device():
    res = subprocess.run(["make", "-s", "flash", "DEVICE=/dev/null", "YES=1",
                          "IMAGE=provisioning/pins.txt"],
                         cwd=Path(__file__).resolve().parents[2], capture_output=True,
                         text=True)
    assert res.returncode != 0
    assert "refused" in res.stderr


def test_layer_puts_ikebox_units_and_first_boot_state_on_a_tree(tmp_path):
    """The ikebox layer on a minimal stand-in for the base rootfs."""
    from provisioning import build
    root = tmp_path / "root"
    site = root / build.SITE.lstrip("/")
    site.mkdir(parents=True)
    (root / "opt/ikebox/venv/bin").mkdir(parents=True)
    units = root / "usr/lib/systemd/system"
    units.mkdir(parents=True)
    for u in ("systemd-networkd.service", "systemd-resolved.service",
              "systemd-timesyncd.service"):
        (units / u).write_text("[Service]\nExecStart=/bin/true\n"
                               "[Install]\nWantedBy=multi-user.target\n")
    (root / "etc/ssh").mkdir(parents=True)
    (root / "etc/ssh/ssh_host_ed25519_key").write_text("build-time key\n")
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    build.layer(root, tmp_path / "work", "9.9.9")

    assert (site / "firmware/cli.py").exists()
    pyc = next((site / "firmware/__pycache__").glob("cli.cpython-311.pyc"))
    # Byte code names the path on the box, not the build host's.
    assert f"{build.SITE}/firmware/cli.py".encode() in pyc.read_bytes()
    script = root / "opt/ikebox/venv/bin/ikebox"
    assert script.read_text().startswith("#!/opt/ikebox/venv/bin/python3\n")
    assert os.access(script, os.X_OK)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    for u in ("ikebox.service", "ikebox-webui.service", "ikebox-leds.service",
              "ikebox-smoke.service", "systemd-networkd.service"):
        assert (wants / u).is_symlink(), u
    assert (root / "etc/systemd/system/sysinit.target.wants/ikebox-firstboot.service")\
        .is_symlink()
    assert (root / "etc/machine-id").read_text() == ""
    assert not list((root / "etc/ssh").glob("ssh_host_*"))
    assert os.readlink(root / "etc/resolv.conf") == "../run/systemd/resolve/stub-resolv.conf"
    assert "Storage=volatile" in (root / "etc/systemd/journald.conf.d/ikebox.conf").read_text()
    assert "IKEBOX_VERSION=9.9.9" in (root / "etc/ikebox-release").read_text()
    assert os.access(root / "usr/lib/ikebox/firstboot", os.X_OK)
