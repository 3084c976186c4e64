"""Network namespaces and veth links for tests (root only)."""

from __future__ import annotations

import itertools
import os
import subprocess

_counter = itertools.count(1)


def stop_process(proc: subprocess.Popen | None, grace: float) -> None:
    """SIGTERM to a process this test started, SIGKILL if it lingers past `grace`."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def run(*cmd: str, check: bool = True, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), check=check, capture_output=True, text=True,
                          timeout=timeout, **kw)


class Netns:
    def __init__(self, name: str) -> None:
        self.name = name
        run("ip", "netns", "add", name)
        self.run("ip", "link", "set", "lo", "up")

    def run(self, *cmd: str, check: bool = True, timeout: float = 30,
            **kw) -> subprocess.CompletedProcess:
        return run("ip", "netns", "exec", self.name, *cmd, check=check, timeout=timeout, **kw)

    def popen(self, cmd: list[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], **kw)

    def sysctl(self, key: str, value: str) -> None:
        self.run("sysctl", "-qw", f"{key}={value}")

    def delete(self) -> None:
        run("ip", "netns", "del", self.name, check=False)


def link(a: Netns, a_addr: str, b: Netns, b_addr: str, tag: str) -> tuple[str, str]:
    """A veth pair between two namespaces; returns the interface names (a side, b side)."""
    # Interface names are made in the root namespace first: the PID keeps two test
    # processes on one machine apart.
    n = next(_counter)
    ia, ib = f"v{os.getpid() % 100000}x{n}a", f"v{os.getpid() % 100000}x{n}b"
    run("ip", "link", "add", ia, "type", "veth", "peer", "name", ib)
    run("ip", "link", "set", ia, "netns", a.name)
    run("ip", "link", "set", ib, "netns", b.name)
    a.run("ip", "addr", "add", a_addr, "dev", ia)
    b.run("ip", "addr", "add", b_addr, "dev", ib)
    a.run("ip", "link", "set", ia, "up")
    b.run("ip", "link", "set", ib, "up")
    return ia, ib


class Topology:
    """client --veth-- [nat --veth--] box, with a LAN address on the box's loopback.

    Without NAT: client 198.18.<k>.2/24, box 198.18.<k>.1/24.
    With NAT: client 198.19.<k>.2/24 behind nat 198.19.<k>.1 which masquerades out of
    198.18.<k>.3/24 towards the box at 198.18.<k>.1.
    The box's LAN is 198.18.<k+128>.1/32 on its loopback (something to ping).
    """

    def __init__(self, tag: str, nat: bool = False) -> None:
        self.namespaces: list[Netns] = []
        try:
            self._build(tag, nat)
        except BaseException:
            self.close()
            raise

    def _build(self, tag: str, nat: bool) -> None:
        self.tag = tag
        n = next(_counter)
        k = (os.getpid() + n) % 120 + 1
        prefix = f"ikbx-{tag}-{os.getpid()}-{n}"
        self.box = self._ns(f"{prefix}-box")
        self.client = self._ns(f"{prefix}-cli")
        self.box_ip = f"198.18.{k}.1"
        self.lan_ip = f"198.18.{k + 128}.1"
        self.lan_net = f"198.18.{k + 128}.0/24"
        self.box.run("ip", "addr", "add", f"{self.lan_ip}/32", "dev", "lo")
        if not nat:
            self.client_ip = f"198.18.{k}.2"
            link(self.box, f"{self.box_ip}/24", self.client, f"{self.client_ip}/24", tag)
            self.client.run("ip", "route", "add", "default", "via", self.box_ip)
            self.nat = None
            self.public_client_ip = self.client_ip
        else:
            self.nat = self._ns(f"{prefix}-nat")
            self.client_ip = f"198.19.{k}.2"
            nat_inside = f"198.19.{k}.1"
            self.public_client_ip = f"198.18.{k}.3"
            link(self.box, f"{self.box_ip}/24", self.nat, f"{self.public_client_ip}/24", tag)
            _, inside_if = link(self.client, f"{self.client_ip}/24", self.nat,
                                f"{nat_inside}/24", tag + "i")
            self.client.run("ip", "route", "add", "default", "via", nat_inside)
            self.nat.sysctl("net.ipv4.ip_forward", "1")
            self.nat.run("nft", "-f", "-", input=(
                "table ip ikbxnat {\n chain post {\n"
                "  type nat hook postrouting priority 100;\n"
                f"  ip saddr 198.19.{k}.0/24 masquerade\n }}\n}}\n"))
        self.box.run("ip", "route", "add", "default", "via", self.public_client_ip
                     if nat else self.client_ip)
        # IPv6 beside IPv4 on the direct link, from the documentation prefix (RFC 3849).
        self.box_ip6 = self.client_ip6 = None
        if not nat:
            self.box_ip6, self.client_ip6 = f"2001:db8:{k}::1", f"2001:db8:{k}::2"
            box_if = self.box.run("ip", "-o", "link", "show", "type", "veth").stdout
            cli_if = self.client.run("ip", "-o", "link", "show", "type", "veth").stdout
            self.box.run("ip", "addr", "add", f"{self.box_ip6}/64", "dev",
                         box_if.split(":")[1].strip().split("@")[0], "nodad")
            self.client.run("ip", "addr", "add", f"{self.client_ip6}/64", "dev",
                            cli_if.split(":")[1].strip().split("@")[0], "nodad")

    def _ns(self, name: str) -> Netns:
        ns = Netns(name)
        self.namespaces.append(ns)
        return ns

    def close(self) -> None:
        for ns in self.namespaces:
            ns.delete()
