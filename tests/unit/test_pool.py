from __future__ import annotations

import ipaddress

import pytest

from firmware.pool import AddressPool, PoolExhausted


def test_first_address_skips_network_and_gateway():
    pool = AddressPool("10.99.0.0/24")
    lease = pool.allocate("sa1", "alice")
    assert str(lease.ipv4) == "10.99.0.2"


def test_exhaustion_and_release():
    pool = AddressPool("10.99.0.0/29")
    leases = [pool.allocate(f"sa{i}", f"u{i}") for i in range(5)]
    assert {str(lease.ipv4) for lease in leases} == {f"10.99.0.{i}" for i in range(2, 7)}
    with pytest.raises(PoolExhausted):
        pool.allocate("sa9", "u9")
    pool.release("sa2")
    assert str(pool.allocate("sa9", "u9").ipv4) == "10.99.0.4"


def test_returning_user_gets_the_same_address():
    pool = AddressPool("10.99.0.0/24")
    first = pool.allocate("sa1", "alice").ipv4
    pool.allocate("sa2", "bob")
    pool.release("sa1")
    assert pool.allocate("sa3", "alice").ipv4 == first


def test_ipv6_alongside_ipv4():
    pool = AddressPool("10.99.0.0/24", "fd00:99::/120")
    lease = pool.allocate("sa1", "alice", want_v4=True, want_v6=True)
    assert lease.ipv6 == ipaddress.IPv6Address("fd00:99::2")
    assert pool.in_use() == 2
    pool.release("sa1")
    assert pool.in_use() == 0


def test_failed_allocation_keeps_nothing():
    pool = AddressPool("10.99.0.0/24", "fd00:99::/126")  # two IPv6 addresses
    for owner in ("a", "b"):
        pool.allocate(owner, owner, want_v4=True, want_v6=True)
    with pytest.raises(PoolExhausted):
        pool.allocate("c", "c", want_v4=True, want_v6=True)
    assert pool.in_use() == 4
