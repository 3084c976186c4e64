"""UDP encapsulation of ESP (RFC 3948) on the daemon's port-4500 socket.

With UDP_ENCAP set to ESPINUDP the kernel takes datagrams whose first four bytes are
not zero (ESP, SPI != 0) off the socket and decapsulates them through XFRM; datagrams
starting with the four-byte non-ESP marker (IKE) still reach the daemon, marker
included. Without it, incoming espinudp packets are never decrypted.
"""

from __future__ import annotations

import socket

SOL_UDP = getattr(socket, "SOL_UDP", 17)
UDP_ENCAP = 100
UDP_ENCAP_ESPINUDP = 2


def set_espinudp(sock: socket.socket) -> None:
    """Let the kernel take ESP-in-UDP off this UDP socket (the box's port 4500)."""
    sock.setsockopt(SOL_UDP, UDP_ENCAP, UDP_ENCAP_ESPINUDP)
