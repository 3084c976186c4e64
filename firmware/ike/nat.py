"""NAT detection (RFC 7296 §2.23): SHA-1 over the SPIs, an address and a port."""

from __future__ import annotations

import ipaddress
import struct

from cryptography.hazmat.primitives import hashes


def nat_hash(spi_i: bytes, spi_r: bytes, address: str, port: int) -> bytes:
    digest = hashes.Hash(hashes.SHA1())
    digest.update(spi_i + spi_r + ipaddress.ip_address(address).packed +
                  struct.pack("!H", port))
    return digest.finalize()
