"""IKE and ESP cryptographic transforms, all through `cryptography`.

CONTRACT STUB (to be filled in): the responder is written against these names.
Transform IDs are IANA's (RFC 7296 §3.3.2 and its registries).
"""

from __future__ import annotations


class UnsupportedTransform(Exception):
    """The transform ID (or key size) is unknown to this box or refused by policy."""


class IntegrityError(Exception):
    """An AEAD tag or ICV did not verify."""


class InvalidPublicKey(Exception):
    """A peer's KE data is not a valid public value for its group."""


class Prf:
    transform_id: int
    name: str
    key_size: int  # preferred key length in bytes (the output length of the hash)

    def __call__(self, key: bytes, data: bytes) -> bytes: ...

    def plus(self, key: bytes, seed: bytes, length: int) -> bytes:
        """prf+ of RFC 7296 §2.13."""
        ...


class Integ:
    transform_id: int
    name: str
    key_size: int
    icv_size: int

    def compute(self, key: bytes, data: bytes) -> bytes:
        """The truncated ICV."""
        ...


class Cipher:
    """Encryption transform for the SK payload (and key sizes for ESP).

    key_size is the keying material in bytes, salt included (AES-GCM: key + 4;
    ChaCha20-Poly1305: 32 + 4). For AEAD the nonce is salt || iv (RFC 5282, RFC 7634).
    """

    transform_id: int
    key_bits: int
    name: str
    key_size: int
    iv_size: int
    block_size: int
    icv_size: int
    aead: bool

    def encrypt(self, key: bytes, iv: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
        """CBC: plaintext must be block aligned. AEAD: returns ciphertext || tag."""
        ...

    def decrypt(self, key: bytes, iv: bytes, data: bytes, aad: bytes = b"") -> bytes:
        """Raises IntegrityError when an AEAD tag does not verify."""
        ...


class DhPrivate:
    public: bytes

    def exchange(self, peer_public: bytes) -> bytes: ...


class DhGroup:
    group_id: int
    name: str
    public_size: int

    def generate(self) -> DhPrivate: ...


def get_prf(transform_id: int) -> Prf: ...


def get_integ(transform_id: int) -> Integ: ...


def get_cipher(transform_id: int, key_bits: int | None) -> Cipher: ...


def get_dh_group(group_id: int) -> DhGroup: ...
