"""Flash target safety checks against a fake sysfs and fake lsblk output.

Device nodes are real (mknod in a temporary directory, so os.stat sees a block
device with the chosen numbers); what the kernel would say about them comes from a
sysfs tree and lsblk JSON written by the test.
"""

import json
import os
import stat

import pytest

from provisioning.flash import FlashRefused, check_target

MAJOR = 240
GIB = 2**30


class FakeBox:
    def __init__(self, tmp_path):
        self.dev = tmp_path / "dev"
        self.dev.mkdir()
        self.sys = tmp_path / "sys"
        (self.sys / "dev/block").mkdir(parents=True)
        self.devices = self.sys / "devices/virtual/block"
        self.lsblk_out = {}
        self.next_minor = 0

    def disk(self, name, *, size=16 * GIB, rm=True, tran="usb", dtype="disk",
             partitions=("1", "2"), mounts=None, holders=(), model="SD Card Reader",
             serial="000000001234"):
        mounts = mounts or {}
        ddir = self.devices / name
        ddir.mkdir(parents=True)
        (ddir / "holders").mkdir()
        for h in holders:
            (ddir / "holders" / h).mkdir()
        node = self._node(name, ddir)
        children = []
        sep = "p" if name[-1].isdigit() else ""
        for p in partitions:
            pname = f"{name}{sep}{p}"
            pdir = ddir / pname
            pdir.mkdir()
            (pdir / "partition").write_text(p + "\n")
            (pdir / "holders").mkdir()
            self._node(pname, pdir)
            children.append({"name": pname, "type": "part", "rm": rm,
                             "mountpoints": [mounts[pname]] if pname in mounts else [None]})
        self.lsblk_out[str(node)] = {"blockdevices": [{
            "name": name, "path": f"/dev/{name}", "size": size, "rm": rm, "tran": tran,
            "type": dtype, "model": model, "serial": serial, "mountpoints": [None],
            "children": children}]}
        return node

    def _node(self, name, sysdir):
        minor = self.next_minor
        self.next_minor += 1
        node = self.dev / name
        os.mknod(node, stat.S_IFBLK | 0o600, os.makedev(MAJOR, minor))
        (self.sys / "dev/block" / f"{MAJOR}:{minor}").symlink_to(sysdir)
        return node

    def lsblk(self, device):
        return json.dumps(self.lsblk_out[device])

    def check(self, node, image_size=2 * GIB, root_dev=None):
        if root_dev is None:
            root_dev = os.makedev(8, 99)  # a disk that is not in the fake sysfs
        return check_target(str(node), image_size, sysfs=self.sys, lsblk=self.lsblk,
                            root_dev=root_dev)


@pytest.fixture
def box(tmp_path):
    return FakeBox(tmp_path)


def test_usb_card_reader_is_accepted_and_described(box):
    node = box.disk("sdz")
    t = box.check(node)
    assert not t.is_file and t.size == 16 * GIB
    text = t.describe()
    assert "SD Card Reader" in text and "000000001234" in text and "16.0 GiB" in text


def test_builtin_sd_slot_reporting_rm0_is_accepted(box):
    node = box.disk("mmcblk0", rm=False, tran=None)
    assert box.check(node).path == node


def test_string_flags_from_older_lsblk(box):
    node = box.disk("sdz", rm="1", tran=None)
    assert box.check(node).path == node


def test_fixed_disk_is_refused(box):
    node = box.disk("sdz", rm=False, tran="sata", model="Samsung SSD 870")
    with pytest.raises(FlashRefused, match="fixed disk"):
        box.check(node)


def test_nvme_is_refused(box):
    node = box.disk("nvme0n1", rm=False, tran="nvme")
    with pytest.raises(FlashRefused, match="fixed disk"):
        box.check(node)


def test_partition_is_refused_naming_the_disk(box):
    box.disk("sdz")
    with pytest.raises(FlashRefused, match="partition of sdz.*/dev/sdz"):
        box.check(box.dev / "sdz1")


def test_mounted_partition_is_refused(box):
    node = box.disk("sdz", mounts={"sdz2": "/media/alice/rootfs"})
    with pytest.raises(FlashRefused, match="/media/alice/rootfs"):
        box.check(node)


def test_disk_holding_the_running_root_is_refused(box):
    node = box.disk("mmcblk0", rm=False, tran=None)
    root_part = os.stat(box.dev / "mmcblk0p2").st_rdev
    with pytest.raises(FlashRefused, match="running system"):
        box.check(node, root_dev=root_part)


def test_disk_under_device_mapper_is_refused(box):
    node = box.disk("sdz", holders=("dm-0",))
    with pytest.raises(FlashRefused, match="dm-0"):
        box.check(node)


def test_too_small_card_is_refused(box):
    node = box.disk("sdz", size=1 * GIB)
    with pytest.raises(FlashRefused, match="too small"):
        box.check(node, image_size=2 * GIB)


def test_loop_device_is_refused(box):
    node = box.disk("loop7", dtype="loop", rm=False, tran=None, partitions=())
    with pytest.raises(FlashRefused, match="loop, not a whole disk"):
        box.check(node)


def test_character_device_is_refused(box):
    with pytest.raises(FlashRefused, match="neither a block device"):
        box.check("/dev/null")


def test_missing_device_under_dev_is_refused_not_created(box):
    with pytest.raises(FlashRefused, match="no such device"):
        box.check("/dev/sdzz-ikbxi")
    assert not os.path.exists("/dev/sdzz-ikbxi")


def test_plain_file_is_accepted(box, tmp_path):
    t = box.check(tmp_path / "card.img")
    assert t.is_file
    assert "plain file" in t.describe()
