"""The client address pool: one IPv4 (and optionally one IPv6) address per session.

Leases are kept in memory, keyed by the session that holds them; a session that ends
releases its lease. A returning user gets the address it had last time if that one
is still free, which keeps a reconnecting laptop's address stable.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class PoolExhausted(Exception):
    """No free address is left."""


@dataclass(frozen=True)
class Lease:
    owner: str
    ipv4: ipaddress.IPv4Address | None
    ipv6: ipaddress.IPv6Address | None
    ipv4_net: ipaddress.IPv4Network | None
    ipv6_net: ipaddress.IPv6Network | None

    @property
    def addresses(self) -> list[Address]:
        return [a for a in (self.ipv4, self.ipv6) if a is not None]


class _Range:
    def __init__(self, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> None:
        self.net = net
        self.used: dict[Address, str] = {}
        self.last_for: dict[str, Address] = {}
        self._cursor = 0

    def _candidates(self):  # noqa: ANN202
        # The network address and the first host (conventionally the gateway) are kept
        # back; so is the broadcast address of an IPv4 network.
        first = int(self.net.network_address) + 2
        last = int(self.net.broadcast_address) - (1 if self.net.version == 4 else 0)
        size = last - first + 1
        for i in range(size):
            yield ipaddress.ip_address(first + (self._cursor + i) % size)

    def take(self, owner: str, hint: str | None) -> Address:
        previous = self.last_for.get(hint or "")
        if previous is not None and previous not in self.used:
            self.used[previous] = owner
            return previous
        for addr in self._candidates():
            if addr not in self.used:
                self.used[addr] = owner
                self._cursor = int(addr) - int(self.net.network_address) - 1
                if hint:
                    self.last_for[hint] = addr
                return addr
        raise PoolExhausted(f"all {self.net.num_addresses - 3} addresses of {self.net} "
                            f"are in use")

    def release(self, owner: str) -> None:
        for addr in [a for a, o in self.used.items() if o == owner]:
            del self.used[addr]

    @property
    def capacity(self) -> int:
        return max(0, int(self.net.broadcast_address) - int(self.net.network_address) - 1
                   - (1 if self.net.version == 4 else 0))


class AddressPool:
    def __init__(self, ipv4: str, ipv6: str = "") -> None:
        self.v4 = _Range(ipaddress.IPv4Network(ipv4)) if ipv4 else None
        self.v6 = _Range(ipaddress.IPv6Network(ipv6)) if ipv6 else None

    def allocate(self, owner: str, user: str | None, want_v4: bool = True,
                 want_v6: bool = False) -> Lease:
        """Raises PoolExhausted; on failure nothing stays allocated."""
        v4 = v6 = None
        if want_v4 and self.v4:
            v4 = self.v4.take(owner, user)
        if want_v6 and self.v6:
            try:
                v6 = self.v6.take(owner, user)
            except PoolExhausted:
                self.release(owner)
                raise
        if v4 is None and v6 is None:
            raise PoolExhausted("the pool has no address of the family the client asked for")
        return Lease(owner, v4, v6,  # type: ignore[arg-type]
                     self.v4.net if v4 else None, self.v6.net if v6 else None)  # type: ignore

    def adopt(self, lease: Lease) -> None:
        """Marks a lease made by an earlier pool as taken, where it falls in this one."""
        for rng, addr in ((self.v4, lease.ipv4), (self.v6, lease.ipv6)):
            if rng is not None and addr is not None and addr in rng.net:
                rng.used[addr] = lease.owner

    def release(self, owner: str) -> None:
        for rng in (self.v4, self.v6):
            if rng:
                rng.release(owner)

    def in_use(self) -> int:
        return sum(len(r.used) for r in (self.v4, self.v6) if r)

    def is_used(self, addr: Address) -> bool:
        return any(addr in r.used for r in (self.v4, self.v6) if r)
