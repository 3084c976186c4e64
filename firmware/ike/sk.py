"""The encrypted payload SK (RFC 7296 §3.14) and encrypted fragments SKF (RFC 7383).

Messages the box sends are sealed with SK_er/SK_ar; messages it receives are opened
with SK_ei/SK_ai. For AEAD ciphers the associated data is the IKE header and the
generic payload header (plus, for a fragment, its number and total), RFC 5282 §5.
"""

from __future__ import annotations

import os
import struct

from . import crypto
from .constants import PayloadType
from .keys import IkeKeys
from .message import HEADER_LEN, Header, ParseError, Payload, encode_payloads


class DecryptError(Exception):
    """An encrypted payload failed its integrity check or its padding is wrong."""


def _pad(plain: bytes, block: int) -> bytes:
    pad_len = (-(len(plain) + 1)) % block
    return plain + bytes(pad_len) + bytes([pad_len])


def _seal_body(keys: IkeKeys, prefix: bytes, plain: bytes, random: bytes | None) -> bytes:
    """Encrypts `plain` for a message whose bytes up to the ciphertext are `prefix`
    (minus the IV), returning IV || ciphertext || ICV."""
    cipher = keys.cipher
    iv = random if random is not None else os.urandom(cipher.iv_size)
    padded = _pad(plain, max(cipher.block_size, 1))
    if cipher.aead:
        return iv + cipher.encrypt(keys.sk_er, iv, padded, prefix)
    assert keys.integ is not None
    body = iv + cipher.encrypt(keys.sk_er, iv, padded)
    icv = keys.integ.compute(keys.sk_ar, prefix + body)
    return body + icv


def _body_length(keys: IkeKeys, plain_len: int) -> int:
    cipher = keys.cipher
    block = max(cipher.block_size, 1)
    padded = plain_len + 1 + (-(plain_len + 1)) % block
    icv = cipher.icv_size if cipher.aead else keys.integ.icv_size  # type: ignore[union-attr]
    return cipher.iv_size + padded + icv


def seal(keys: IkeKeys, header: Header, inner: list[Payload]) -> bytes:
    """A whole message whose payloads are carried inside one SK payload."""
    first, plain = encode_payloads(inner)
    sk_len = 4 + _body_length(keys, len(plain))
    hdr = Header(header.spi_i, header.spi_r, PayloadType.SK, header.exchange,
                 header.flags, header.msg_id).pack(HEADER_LEN + sk_len)
    prefix = hdr + struct.pack("!BBH", first, 0, sk_len)
    return prefix + _seal_body(keys, prefix, plain, None)


def seal_fragments(keys: IkeKeys, header: Header, inner: list[Payload],
                   max_datagram: int) -> list[bytes]:
    """The same message cut into SKF fragments of at most `max_datagram` bytes each."""
    first, plain = encode_payloads(inner)
    overhead = HEADER_LEN + 8 + _body_length(keys, 0)
    block = max(keys.cipher.block_size, 1)
    room = max_datagram - overhead
    room -= room % block  # padding may not push a full chunk over the budget
    room -= 1 if block == 1 else 0
    if room < 64:
        raise ValueError(f"fragment size {max_datagram} leaves no room for data")
    chunks = [plain[i:i + room] for i in range(0, len(plain), room)] or [b""]
    out = []
    for number, chunk in enumerate(chunks, 1):
        skf_len = 8 + _body_length(keys, len(chunk))
        hdr = Header(header.spi_i, header.spi_r, PayloadType.SKF, header.exchange,
                     header.flags, header.msg_id).pack(HEADER_LEN + skf_len)
        prefix = hdr + struct.pack("!BBHHH", first if number == 1 else 0, 0, skf_len,
                                   number, len(chunks))
        out.append(prefix + _seal_body(keys, prefix, chunk, None))
    return out


def open_encrypted(keys: IkeKeys, raw: bytes, body: bytes, aad_extra: int = 0) -> bytes:
    """Decrypts the body of an SK (or SKF) payload that ends the message `raw`.

    aad_extra is 4 for SKF (the fragment number and total are authenticated too).
    Returns the plaintext with the padding removed.
    """
    cipher = keys.cipher
    data = body[aad_extra:]
    prefix = raw[:len(raw) - len(data)]
    if cipher.aead:
        if len(data) < cipher.iv_size + cipher.icv_size + 1:
            raise DecryptError("encrypted payload shorter than IV and tag")
        iv, ct = data[:cipher.iv_size], data[cipher.iv_size:]
        try:
            padded = cipher.decrypt(keys.sk_ei, iv, ct, prefix)
        except crypto.IntegrityError:
            raise DecryptError("AEAD tag does not verify") from None
    else:
        assert keys.integ is not None
        icv_len = keys.integ.icv_size
        if len(data) < cipher.iv_size + cipher.block_size + icv_len:
            raise DecryptError("encrypted payload shorter than IV, one block and ICV")
        signed, icv = raw[:-icv_len], raw[-icv_len:]
        if not _equal(keys.integ.compute(keys.sk_ai, signed), icv):
            raise DecryptError("integrity check value does not verify")
        iv, ct = data[:cipher.iv_size], data[cipher.iv_size:-icv_len]
        if len(ct) % cipher.block_size:
            raise DecryptError("ciphertext is not a whole number of blocks")
        padded = cipher.decrypt(keys.sk_ei, iv, ct)
    pad_len = padded[-1]
    if pad_len + 1 > len(padded):
        raise DecryptError("padding length exceeds the payload")
    return padded[:-(pad_len + 1)]


def _equal(a: bytes, b: bytes) -> bool:
    import hmac
    return hmac.compare_digest(a, b)


__all__ = ["DecryptError", "ParseError", "open_encrypted", "seal", "seal_fragments"]
