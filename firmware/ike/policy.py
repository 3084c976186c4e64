"""What the responder needs to know about the box: the configuration it answers with."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .auth import Signer
from .constants import IdType


@dataclass(frozen=True)
class ResponderPolicy:
    """Plain values; built by the daemon from the config file.

    eap_factory(identity) returns a fresh EAP server for one client (identity is the
    user IDi named, or None to start with an EAP-Identity round). user_exists(name)
    tells whether IDi names a known user.
    """

    identity: str
    signer: Signer | None = field(default=None, repr=False)
    cert_chain: tuple[bytes, ...] = field(default=(), repr=False)
    server_auth: str = "cert"                       # "cert" or "psk"
    psk: bytes | None = field(default=None, repr=False)
    profile: str = "secure"
    prefer_chacha: bool = False
    eap_factory: Callable[[str | None], Any] | None = None
    user_exists: Callable[[str], bool] = lambda _name: False
    pool: Any = None                                # pool.AddressPool
    dns: tuple[str, ...] = ()
    lan: tuple[str, ...] = ("0.0.0.0/0",)
    half_open_timeout: float = 30.0
    eap_timeout: float = 120.0
    dpd_interval: float = 30.0
    child_rekey_time: int = 0                       # seconds; 0 = the box never rekeys
    fragment_size: int = 1280
    cookie_threshold: int = 64
    reqid_base: int = 1
    reqid_count: int = 1 << 20

    def id_payload_body(self) -> bytes:
        id_type, data = identity_to_id(self.identity)
        return bytes([id_type, 0, 0, 0]) + data

    def lan_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(n, strict=False) for n in self.lan]


def identity_to_id(identity: str) -> tuple[int, bytes]:
    try:
        ip = ipaddress.ip_address(identity)
    except ValueError:
        if "@" in identity:
            return IdType.ID_RFC822_ADDR, identity.encode()
        return IdType.ID_FQDN, identity.encode()
    kind = IdType.ID_IPV4_ADDR if ip.version == 4 else IdType.ID_IPV6_ADDR
    return kind, ip.packed
