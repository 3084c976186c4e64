"""These tests need the qemu guest's kernel (ESP) and build namespaces with fixed
names: outside the guest (a plain `pytest tests` on the host) they are skipped.
tests/vm/run-guest.sh sets IKEBOX_VM_GUEST=1 inside the guest."""

import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.environ.get("IKEBOX_VM_GUEST") == "1":
        return
    skip = pytest.mark.skip(reason="runs inside the qemu guest: make test-vm")
    for item in items:
        if "tests/vm/guest/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(skip)
