"""Key derivation: SKEYSEED and the IKE SA keys (RFC 7296 §2.14), KEYMAT (§2.17)."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import crypto
from .proposals import Chosen


@dataclass(frozen=True)
class IkeKeys:
    """The seven keys of an IKE SA and the transforms they go with.

    repr shows no key: these objects reach debug output through the IKE SA.
    """

    prf: crypto.Prf = field(repr=False)
    cipher: crypto.Cipher = field(repr=False)
    integ: crypto.Integ | None = field(repr=False)
    sk_d: bytes = field(repr=False)
    sk_ai: bytes = field(repr=False)
    sk_ar: bytes = field(repr=False)
    sk_ei: bytes = field(repr=False)
    sk_er: bytes = field(repr=False)
    sk_pi: bytes = field(repr=False)
    sk_pr: bytes = field(repr=False)


def derive_ike_keys(chosen: Chosen, shared: bytes, nonce_i: bytes, nonce_r: bytes,
                    spi_i: bytes, spi_r: bytes) -> IkeKeys:
    prf = crypto.get_prf(chosen.prf)  # type: ignore[arg-type]
    skeyseed = prf(nonce_i + nonce_r, shared)
    return derive_keys_from_skeyseed(prf, chosen, skeyseed, nonce_i, nonce_r, spi_i, spi_r)


def derive_keys_from_skeyseed(prf: crypto.Prf, chosen: Chosen, skeyseed: bytes,
                              nonce_i: bytes, nonce_r: bytes, spi_i: bytes,
                              spi_r: bytes) -> IkeKeys:
    cipher = crypto.get_cipher(chosen.encr, chosen.key_bits)
    integ = None if chosen.aead else crypto.get_integ(chosen.integ)  # type: ignore[arg-type]
    integ_len = integ.key_size if integ else 0
    sizes = [prf.key_size, integ_len, integ_len, cipher.key_size, cipher.key_size,
             prf.key_size, prf.key_size]
    stream = prf.plus(skeyseed, nonce_i + nonce_r + spi_i + spi_r, sum(sizes))
    keys = []
    offset = 0
    for size in sizes:
        keys.append(stream[offset:offset + size])
        offset += size
    return IkeKeys(prf, cipher, integ, *keys)


@dataclass(frozen=True)
class ChildKeys:
    """ESP keys; i->r is what the initiator sends with, r->i what the box sends with."""

    encr_i: bytes = field(repr=False)
    integ_i: bytes = field(repr=False)
    encr_r: bytes = field(repr=False)
    integ_r: bytes = field(repr=False)


def child_keymat(prf: crypto.Prf, sk_d: bytes, chosen: Chosen, nonce_i: bytes,
                 nonce_r: bytes, dh_shared: bytes = b"") -> ChildKeys:
    cipher = crypto.get_cipher(chosen.encr, chosen.key_bits)
    integ_len = 0 if chosen.aead else \
        crypto.get_integ(chosen.integ).key_size  # type: ignore[arg-type]
    enc_len = cipher.key_size
    stream = prf.plus(sk_d, dh_shared + nonce_i + nonce_r, 2 * (enc_len + integ_len))
    # §2.17: the initiator-to-responder keys come first, encryption before integrity.
    a = enc_len + integ_len
    return ChildKeys(stream[:enc_len], stream[enc_len:a], stream[a:a + enc_len],
                     stream[a + enc_len:2 * a])
