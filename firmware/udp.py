"""The IKE sockets: UDP 500 and 4500 on each listen address, IPv4 and IPv6.

Each datagram is read with the address it was sent to (IP_PKTINFO), so the box can
answer from the address the client used and compute NAT detection over it even when
it listens on the wildcard address. On 4500 every IKE message carries the four-byte
non-ESP marker (RFC 3948 §2.2); it is stripped on the way in and added on the way out.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct

log = logging.getLogger("ikebox.udp")

NON_ESP_MARKER = b"\x00\x00\x00\x00"
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
MAX_DATAGRAM = 65535


class IkeSocket:
    def __init__(self, address: str, port: int, natt: bool) -> None:
        self.address = address
        self.port = port
        self.natt = natt
        self.family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 \
            else socket.AF_INET
        sock = socket.socket(self.family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            sock.bind((address, port))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def receive(self) -> tuple[bytes, tuple[str, int], tuple[str, int]] | None:
        """One datagram as (IKE message, remote, local), or None for nothing to handle
        (a keepalive, or an ESP packet the kernel did not take)."""
        try:
            data, anc, _flags, addr = self.sock.recvmsg(MAX_DATAGRAM, 256)
        except (BlockingIOError, InterruptedError):
            return None
        local_ip = self.address
        for level, kind, value in anc:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(value) >= 12:
                local_ip = socket.inet_ntop(socket.AF_INET, value[8:12])
            elif level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(value) >= 16:
                local_ip = socket.inet_ntop(socket.AF_INET6, value[:16])
        remote = (_plain(addr[0]), addr[1])
        local = (_plain(local_ip), self.port)
        if self.natt:
            if data == b"\xff":
                return None  # NAT-keepalive (RFC 3948 §2.3)
            if not data.startswith(NON_ESP_MARKER):
                return None  # ESP the kernel did not decapsulate: not ours to parse
            data = data[4:]
        return data, remote, local

    def send(self, data: bytes, remote: tuple[str, int], local_ip: str) -> None:
        if self.natt:
            data = NON_ESP_MARKER + data
        anc = []
        if local_ip and not ipaddress.ip_address(local_ip).is_unspecified:
            if self.family == socket.AF_INET:
                info = struct.pack("I4s4s", 0, socket.inet_pton(socket.AF_INET, local_ip),
                                   bytes(4))
                anc = [(socket.IPPROTO_IP, IP_PKTINFO, info)]
            else:
                info = struct.pack("16sI", socket.inet_pton(socket.AF_INET6, local_ip), 0)
                anc = [(socket.IPPROTO_IPV6, IPV6_PKTINFO, info)]
        try:
            self.sock.sendmsg([data], anc, 0, remote)
        except OSError as exc:
            log.info("could not send %d bytes to %s:%d: %s", len(data), remote[0], remote[1],
                     exc.strerror)


def _plain(address: str) -> str:
    """Strips a scope id and maps IPv4-mapped IPv6 back to IPv4."""
    address = address.split("%", 1)[0]
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    return str(ip)
