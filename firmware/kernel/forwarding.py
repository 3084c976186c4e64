"""Routing the pool's traffic into the LAN: IP forwarding and, by config, masquerade.

`[lan] nat = true` (the default) suits a box plugged into a LAN whose router knows
nothing of the client pool: pool traffic leaves with the box's own address. Routed
setups (the LAN router has a route to the pool via the box) set it false, and only
forwarding is switched on. The masquerade rules live in their own nftables table,
`inet ikebox`, replaced as a whole in one transaction and deleted on stop, so the
box's other rules are never touched.
"""

from __future__ import annotations

import ipaddress
import logging
import subprocess

log = logging.getLogger("ikebox.kernel")

TABLE = "ikebox"


class ForwardingError(Exception):
    """Forwarding or NAT could not be set up; the message says why."""


class Forwarding:
    """ip_forward plus the optional masquerade table.

    pool_v4/pool_v6: the client pools (CIDR, "" for none); lan_subnets: what clients
    may reach; netns: run inside that named namespace (tests).
    """

    def __init__(
        self,
        pool_v4: str,
        pool_v6: str = "",
        lan_subnets: tuple[str, ...] = ("0.0.0.0/0",),
        nat: bool = True,
        netns: str | None = None,
    ):
        self.pools = [ipaddress.ip_network(p) for p in (pool_v4, pool_v6) if p]
        self.lan = [ipaddress.ip_network(s) for s in lan_subnets]
        self.nat = nat
        self._prefix = ["ip", "netns", "exec", netns] if netns else []
        self._saved: dict[str, str] = {}

    def _run(self, argv: list[str], stdin: str | None = None) -> str:
        try:
            done = subprocess.run(
                self._prefix + argv, input=stdin, capture_output=True, text=True, timeout=20
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ForwardingError(f"{argv[0]} could not run: {exc}") from None
        if done.returncode != 0:
            raise ForwardingError(f"{' '.join(argv[:3])} failed: {done.stderr.strip()}")
        return done.stdout

    def _sysctls(self) -> list[str]:
        keys = []
        if any(p.version == 4 for p in self.pools):
            keys.append("net.ipv4.ip_forward")
        if any(p.version == 6 for p in self.pools):
            keys.append("net.ipv6.conf.all.forwarding")
        return keys

    def ruleset(self) -> str:
        """The nftables script that (re)creates our table, as one transaction."""
        lines = [
            f"table inet {TABLE} {{}}",  # so the delete below cannot fail
            f"delete table inet {TABLE}",
            f"table inet {TABLE} {{",
            "  chain postrouting {",
            "    type nat hook postrouting priority srcnat; policy accept;",
        ]
        for pool in self.pools:
            fam = "ip" if pool.version == 4 else "ip6"
            lan = list(
                ipaddress.collapse_addresses(s for s in self.lan if s.version == pool.version)
            )
            if not lan:
                continue
            # Traffic between clients stays unNATed; only what leaves for the LAN.
            dst = ""
            if lan[0].prefixlen != 0:
                dst = f"{fam} daddr {{ {', '.join(map(str, lan))} }} "
            lines.append(f"    {fam} saddr {pool} {fam} daddr != {pool} {dst}masquerade")
        lines += ["  }", "}"]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        """Switch forwarding on and, with nat, install the masquerade table."""
        for key in self._sysctls():
            old = self._run(["sysctl", "-n", key]).strip()
            self._saved.setdefault(key, old)
            self._run(["sysctl", "-qw", f"{key}=1"])
        if self.nat:
            self._run(["nft", "-f", "-"], stdin=self.ruleset())
            log.info("masquerading %s into the LAN", ", ".join(map(str, self.pools)))
        else:
            log.info("routed setup: forwarding only, no NAT")

    def stop(self) -> None:
        """Remove our table and put forwarding back as it was before start()."""
        script = f"table inet {TABLE} {{}}\ndelete table inet {TABLE}\n"
        self._run(["nft", "-f", "-"], stdin=script)
        for key, old in self._saved.items():
            self._run(["sysctl", "-qw", f"{key}={old}"])
        self._saved.clear()
