"""Plain records the daemon hands to the kernel layer.

The kernel layer never imports the IKE code: the daemon turns a negotiated CHILD_SA
into these records. Keys live in them only as long as the install takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EspKeys:
    """One direction of an ESP SA.

    enc_alg is the kernel's algorithm name: "rfc4106(gcm(aes))",
    "rfc7539esp(chacha20,poly1305)" or "cbc(aes)". For AEAD, enc_key includes the
    4-byte salt and icv_bits gives the tag length; auth_alg is then None. For CBC,
    auth_alg is "hmac(sha256)", "hmac(sha384)" or "hmac(sha512)" (or "hmac(sha1)"
    in the legacy profile) with auth_trunc_bits 128/192/256 (96 for sha1).
    """

    spi: int
    enc_alg: str
    enc_key: bytes = field(repr=False)
    icv_bits: int = 0
    auth_alg: str | None = None
    auth_key: bytes = field(default=b"", repr=False)
    auth_trunc_bits: int = 0


@dataclass(frozen=True)
class ChildRecord:
    """A negotiated tunnel-mode ESP CHILD_SA, seen from the box.

    inbound is the SA the box decrypts with (its SPI is the one the box chose);
    outbound is the one it encrypts with (the peer's SPI). local_ts/remote_ts are
    CIDR strings: remote_ts is the client's assigned address, local_ts the LAN
    subnets. encap is (box port, peer port) for UDP encapsulation (NAT-T) or None.
    """

    reqid: int
    local: str
    remote: str
    inbound: EspKeys
    outbound: EspKeys
    local_ts: tuple[str, ...]
    remote_ts: tuple[str, ...]
    encap: tuple[int, int] | None = None
    esn: bool = False
    replay_window: int = 128
    soft_lifetime_s: int = 0
    hard_lifetime_s: int = 0
