"""IKE and ESP cryptographic transforms, all through `cryptography`.

Transform IDs are IANA's (RFC 7296 §3.3.2 and its registries). Each transform is a
small object with the sizes that key derivation and the SK payload need. Finite-field
Diffie-Hellman sits behind the same two-method interface as the curves, so another
backend can take it over when `cryptography` drops MODP support.

Refused on purpose (UnsupportedTransform): DES, 3DES, NULL encryption, MD5, MODP-768,
and anything not listed in the tables below. The *_NAMES tables also name refused and
unknown-to-us IDs, so a log can say what a peer offered.
"""

from __future__ import annotations

import contextlib
import hmac
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.asymmetric import dh, ec, x448, x25519
from cryptography.hazmat.primitives.ciphers import Cipher as _Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.utils import CryptographyDeprecationWarning

from .constants import Dh, Encr, Integ as IntegId, Prf as PrfId


class UnsupportedTransform(Exception):
    """The transform ID (or key size) is unknown to this box or refused by policy."""


class IntegrityError(Exception):
    """An AEAD tag or ICV did not verify."""


class InvalidPublicKey(Exception):
    """A peer's KE data is not a valid public value for its group."""


# --- IANA names (strongSwan spelling), for logs ---------------------------------------

ENCR_NAMES: dict[int, str] = {
    1: "ENCR_DES_IV64", 2: "ENCR_DES", 3: "ENCR_3DES", 4: "ENCR_RC5", 5: "ENCR_IDEA",
    6: "ENCR_CAST", 7: "ENCR_BLOWFISH", 8: "ENCR_3IDEA", 9: "ENCR_DES_IV32",
    11: "ENCR_NULL", 12: "ENCR_AES_CBC", 13: "ENCR_AES_CTR", 14: "ENCR_AES_CCM_8",
    15: "ENCR_AES_CCM_12", 16: "ENCR_AES_CCM_16", 18: "ENCR_AES_GCM_8",
    19: "ENCR_AES_GCM_12", 20: "ENCR_AES_GCM_16", 21: "ENCR_NULL_AUTH_AES_GMAC",
    23: "ENCR_CAMELLIA_CBC", 24: "ENCR_CAMELLIA_CTR", 25: "ENCR_CAMELLIA_CCM_8",
    26: "ENCR_CAMELLIA_CCM_12", 27: "ENCR_CAMELLIA_CCM_16", 28: "ENCR_CHACHA20_POLY1305",
}

PRF_NAMES: dict[int, str] = {
    1: "PRF_HMAC_MD5", 2: "PRF_HMAC_SHA1", 3: "PRF_HMAC_TIGER", 4: "PRF_AES128_XCBC",
    5: "PRF_HMAC_SHA2_256", 6: "PRF_HMAC_SHA2_384", 7: "PRF_HMAC_SHA2_512",
    8: "PRF_AES128_CMAC",
}

INTEG_NAMES: dict[int, str] = {
    0: "NONE", 1: "AUTH_HMAC_MD5_96", 2: "AUTH_HMAC_SHA1_96", 3: "AUTH_DES_MAC",
    4: "AUTH_KPDK_MD5", 5: "AUTH_AES_XCBC_96", 6: "AUTH_HMAC_MD5_128",
    7: "AUTH_HMAC_SHA1_160", 8: "AUTH_AES_CMAC_96", 9: "AUTH_AES_128_GMAC",
    10: "AUTH_AES_192_GMAC", 11: "AUTH_AES_256_GMAC", 12: "AUTH_HMAC_SHA2_256_128",
    13: "AUTH_HMAC_SHA2_384_192", 14: "AUTH_HMAC_SHA2_512_256",
}

DH_NAMES: dict[int, str] = {
    0: "NONE", 1: "MODP_768", 2: "MODP_1024", 5: "MODP_1536", 14: "MODP_2048",
    15: "MODP_3072", 16: "MODP_4096", 17: "MODP_6144", 18: "MODP_8192", 19: "ECP_256",
    20: "ECP_384", 21: "ECP_521", 22: "MODP_1024_160", 23: "MODP_2048_224",
    24: "MODP_2048_256", 25: "ECP_192", 26: "ECP_224", 27: "ECP_224_BP", 28: "ECP_256_BP",
    29: "ECP_384_BP", 30: "ECP_512_BP", 31: "CURVE_25519", 32: "CURVE_448",
}


def _name(table: dict[int, str], prefix: str, tid: int) -> str:
    # An unknown ID prints as its number instead of raising (STYLE.md lesson 3).
    return table.get(tid, f"{prefix}_{tid}")


_HASHES = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384,
           "sha512": hashes.SHA512}


def _hmac(hash_name: str, key: bytes, data: bytes) -> bytes:
    mac = crypto_hmac.HMAC(key, _HASHES[hash_name]())
    mac.update(data)
    return mac.finalize()


# --- PRF -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Prf:
    transform_id: int
    name: str
    hash_name: str
    key_size: int  # preferred key length in bytes: the hash's output length

    def __call__(self, key: bytes, data: bytes) -> bytes:
        return _hmac(self.hash_name, key, data)

    def plus(self, key: bytes, seed: bytes, length: int) -> bytes:
        """prf+ of RFC 7296 §2.13: T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n)."""
        # The counter is one octet, so at most 255 blocks (RFC 7296 §2.13).
        if not 0 <= length <= 255 * self.key_size:
            raise ValueError("prf+ cannot produce that much keying material")
        out = b""
        block = b""
        counter = 1
        while len(out) < length:
            block = self(key, block + seed + bytes([counter]))
            out += block
            counter += 1
        return out[:length]


def _prf(tid: int, hash_name: str, size: int) -> Prf:
    return Prf(tid, PRF_NAMES[tid], hash_name, size)


_PRFS = {
    PrfId.HMAC_SHA1: _prf(PrfId.HMAC_SHA1, "sha1", 20),
    PrfId.HMAC_SHA2_256: _prf(PrfId.HMAC_SHA2_256, "sha256", 32),
    PrfId.HMAC_SHA2_384: _prf(PrfId.HMAC_SHA2_384, "sha384", 48),
    PrfId.HMAC_SHA2_512: _prf(PrfId.HMAC_SHA2_512, "sha512", 64),
}


def get_prf(transform_id: int) -> Prf:
    try:
        return _PRFS[transform_id]
    except KeyError:
        raise UnsupportedTransform(_name(PRF_NAMES, "PRF", transform_id)) from None


# --- integrity -------------------------------------------------------------------------

@dataclass(frozen=True)
class Integ:
    transform_id: int
    name: str
    hash_name: str
    key_size: int
    icv_size: int

    def compute(self, key: bytes, data: bytes) -> bytes:
        """The truncated ICV (RFC 4868 §2.3, RFC 2404 §2)."""
        return _hmac(self.hash_name, key, data)[:self.icv_size]

    def verify(self, key: bytes, data: bytes, icv: bytes) -> bool:
        """Constant-time comparison of a received ICV."""
        return hmac.compare_digest(self.compute(key, data), icv)


def _integ(tid: int, hash_name: str, key_size: int, icv_size: int) -> Integ:
    return Integ(tid, INTEG_NAMES[tid], hash_name, key_size, icv_size)


_INTEGS = {
    IntegId.HMAC_SHA1_96: _integ(IntegId.HMAC_SHA1_96, "sha1", 20, 12),
    IntegId.HMAC_SHA2_256_128: _integ(IntegId.HMAC_SHA2_256_128, "sha256", 32, 16),
    IntegId.HMAC_SHA2_384_192: _integ(IntegId.HMAC_SHA2_384_192, "sha384", 48, 24),
    IntegId.HMAC_SHA2_512_256: _integ(IntegId.HMAC_SHA2_512_256, "sha512", 64, 32),
}


def get_integ(transform_id: int) -> Integ:
    try:
        return _INTEGS[transform_id]
    except KeyError:
        raise UnsupportedTransform(_name(INTEG_NAMES, "AUTH", transform_id)) from None


# --- encryption --------------------------------------------------------------------------

@dataclass(frozen=True)
class Cipher:
    """Encryption for the SK payload, and key sizes for ESP.

    key_size is the keying material in bytes, salt included (AES-GCM: key + 4;
    ChaCha20-Poly1305: 32 + 4). For AEAD the nonce is salt || iv (RFC 5282 §4,
    RFC 7634 §2), the salt being the last salt_size bytes of the key.
    """

    transform_id: int
    key_bits: int
    name: str
    key_size: int
    iv_size: int
    block_size: int
    icv_size: int
    aead: bool
    salt_size: int = 0
    _kind: str = field(default="", repr=False)

    def _split(self, key: bytes, iv: bytes) -> tuple[bytes, bytes]:
        if len(key) != self.key_size:
            raise ValueError(f"{self.name} needs {self.key_size} bytes of key")
        if len(iv) != self.iv_size:
            raise ValueError(f"{self.name} needs a {self.iv_size}-byte IV")
        cut = self.key_size - self.salt_size
        return key[:cut], key[cut:]

    def encrypt(self, key: bytes, iv: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
        """CBC: plaintext must be block aligned. AEAD: returns ciphertext || tag."""
        raw, salt = self._split(key, iv)
        if self._kind == "cbc":
            if len(plaintext) % self.block_size:
                raise ValueError(f"{self.name}: plaintext is not block aligned")
            enc = _Cipher(algorithms.AES(raw), modes.CBC(iv)).encryptor()
            return enc.update(plaintext) + enc.finalize()
        if self._kind == "gcm":
            if self.icv_size == 16:
                return AESGCM(raw).encrypt(salt + iv, plaintext, aad)
            # GCM-8/12 tags are the full tag cut short (NIST SP 800-38D §5.2.1.2).
            enc = _Cipher(algorithms.AES(raw), modes.GCM(salt + iv)).encryptor()
            enc.authenticate_additional_data(aad)
            ct = enc.update(plaintext) + enc.finalize()
            return ct + enc.tag[:self.icv_size]
        return ChaCha20Poly1305(raw).encrypt(salt + iv, plaintext, aad)

    def decrypt(self, key: bytes, iv: bytes, data: bytes, aad: bytes = b"") -> bytes:
        """Raises IntegrityError when an AEAD tag does not verify."""
        raw, salt = self._split(key, iv)
        if self._kind == "cbc":
            if len(data) % self.block_size:
                raise ValueError(f"{self.name}: ciphertext is not block aligned")
            dec = _Cipher(algorithms.AES(raw), modes.CBC(iv)).decryptor()
            return dec.update(data) + dec.finalize()
        if len(data) < self.icv_size:
            raise IntegrityError(f"{self.name}: shorter than the tag")
        try:
            if self._kind == "gcm":
                if self.icv_size == 16:
                    return AESGCM(raw).decrypt(salt + iv, data, aad)
                ct, tag = data[:-self.icv_size], data[-self.icv_size:]
                dec = _Cipher(algorithms.AES(raw), modes.GCM(
                    salt + iv, tag, min_tag_length=self.icv_size)).decryptor()
                dec.authenticate_additional_data(aad)
                return dec.update(ct) + dec.finalize()
            return ChaCha20Poly1305(raw).decrypt(salt + iv, data, aad)
        except InvalidTag:
            raise IntegrityError(f"{self.name}: the AEAD tag does not verify") from None


_GCM_ICV = {Encr.AES_GCM_8: 8, Encr.AES_GCM_12: 12, Encr.AES_GCM_16: 16}


def get_cipher(transform_id: int, key_bits: int | None) -> Cipher:
    """The cipher for an ENCR transform and its Key Length attribute (None if absent).

    AES needs the attribute (RFC 7296 §3.3.5); ChaCha20-Poly1305 must not carry one
    other than 256 (RFC 7634 §2).
    """
    name = _name(ENCR_NAMES, "ENCR", transform_id)
    if transform_id == Encr.AES_CBC:
        if key_bits not in (128, 192, 256):
            raise UnsupportedTransform(f"{name} with key length {key_bits}")
        return Cipher(transform_id, key_bits, f"{name}_{key_bits}", key_bits // 8, 16, 16,
                      0, False, 0, "cbc")
    if transform_id in _GCM_ICV:
        if key_bits not in (128, 192, 256):
            raise UnsupportedTransform(f"{name} with key length {key_bits}")
        # block_size 1: GCM needs no padding; the SK code pads to 4 anyway.
        return Cipher(transform_id, key_bits, f"{name}_{key_bits}", key_bits // 8 + 4, 8, 1,
                      _GCM_ICV[transform_id], True, 4, "gcm")
    if transform_id == Encr.CHACHA20_POLY1305:
        if key_bits not in (None, 256):
            raise UnsupportedTransform(f"{name} with key length {key_bits}")
        return Cipher(transform_id, 256, name, 36, 8, 1, 16, True, 4, "chacha")
    raise UnsupportedTransform(name)


# --- Diffie-Hellman --------------------------------------------------------------------

class DhPrivate:
    """Our half of one exchange; `public` is the KE payload's Key Exchange Data."""

    public: bytes

    def exchange(self, peer_public: bytes) -> bytes:
        raise NotImplementedError  # each group below supplies it


@dataclass(frozen=True)
class DhGroup:
    group_id: int
    name: str
    public_size: int

    def generate(self) -> DhPrivate:
        raise NotImplementedError  # each group below supplies it

    def load_private(self, private: bytes) -> DhPrivate:
        """Rebuild a private value from its bytes; only for published test vectors.

        The responder always uses generate(). MODP groups do not offer this:
        `cryptography` cannot derive a DH public value from the private one.
        """
        raise NotImplementedError(f"{self.name}: no load_private")


@contextlib.contextmanager
def _quiet_ffdh() -> Iterator[None]:
    """Silence only cryptography's FFDH deprecation notice, only where MODP runs.

    cryptography 50 announces the end of finite-field DH; Windows and Apple clients
    still need MODP, and _ModpGroup is the one place to swap in another backend.
    The filter change is process-global while active: fine for one asyncio thread.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning,
                                message=".*Diffie-Hellman over finite fields")
        yield


# RFC 3526 §2-5 and RFC 2409 §6.2 primes; generator 2 for all.
_MODP_PRIMES = {
    Dh.MODP_1024: (
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22"
        "514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6"
        "F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381"
        "FFFFFFFFFFFFFFFF"),
    Dh.MODP_1536: (
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22"
        "514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6"
        "F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D"
        "C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
        "9ED529077096966D670C354E4ABC9804F1746C08CA237327FFFFFFFFFFFFFFFF"),
    Dh.MODP_2048: (
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22"
        "514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6"
        "F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D"
        "C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3BE39E772C180E8603"
        "9B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
        "15728E5A8AACAA68FFFFFFFFFFFFFFFF"),
    Dh.MODP_3072: (
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22"
        "514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6"
        "F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D"
        "C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3BE39E772C180E8603"
        "9B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
        "15728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7D"
        "B3970F85A6E1E4C7ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
        "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E208E24FA074E5AB31"
        "43DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF"),
    Dh.MODP_4096: (
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22"
        "514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6"
        "F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D"
        "C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3BE39E772C180E8603"
        "9B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
        "15728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7D"
        "B3970F85A6E1E4C7ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
        "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E208E24FA074E5AB31"
        "43DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D788719A10BDBA5B2699C327186AF4E23C"
        "1A946834B6150BDA2583E9CA2AD44CE8DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D"
        "99B2964FA090C3A2233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9"
        "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF"),
}


class _ModpPrivate(DhPrivate):
    def __init__(self, group: _ModpGroup) -> None:
        self.group = group
        with _quiet_ffdh():
            self._key = group.params.generate_private_key()
            y = self._key.public_key().public_numbers().y
        self.public = y.to_bytes(group.public_size, "big")

    def exchange(self, peer_public: bytes) -> bytes:
        p = self.group.p
        y = int.from_bytes(peer_public, "big")
        # RFC 6989 §2.1: 1 < y < p-1, else the peer forces a trivial shared secret.
        # OpenSSL checks this too; checking here gives one clear error either way.
        if len(peer_public) != self.group.public_size or not 1 < y < p - 1:
            raise InvalidPublicKey(f"{self.group.name} public value out of range")
        try:
            with _quiet_ffdh():
                numbers = self.group.params.parameter_numbers()
                shared = self._key.exchange(dh.DHPublicNumbers(y, numbers).public_key())
        except ValueError as exc:
            raise InvalidPublicKey(f"{self.group.name}: {exc}") from None
        # RFC 7296 §2.14: g^ir is as long as the prime, leading zeros kept.
        return shared.rjust(self.group.public_size, b"\x00")


class _ModpGroup(DhGroup):
    def __init__(self, group_id: int, prime_hex: str) -> None:
        p = int(prime_hex, 16)
        object.__setattr__(self, "group_id", group_id)
        object.__setattr__(self, "name", DH_NAMES[group_id])
        object.__setattr__(self, "public_size", (p.bit_length() + 7) // 8)
        object.__setattr__(self, "p", p)
        with _quiet_ffdh():
            object.__setattr__(self, "params", dh.DHParameterNumbers(p, 2).parameters())

    def generate(self) -> DhPrivate:
        return _ModpPrivate(self)


_CURVES = {Dh.ECP_256: ec.SECP256R1, Dh.ECP_384: ec.SECP384R1, Dh.ECP_521: ec.SECP521R1}


class _EcpPrivate(DhPrivate):
    def __init__(self, group: _EcpGroup, key: ec.EllipticCurvePrivateKey) -> None:
        self.group = group
        self._key = key
        numbers = key.public_key().public_numbers()
        size = group.public_size // 2
        # RFC 5903 §7: x || y, without the SEC1 point-format byte.
        self.public = numbers.x.to_bytes(size, "big") + numbers.y.to_bytes(size, "big")

    def exchange(self, peer_public: bytes) -> bytes:
        if len(peer_public) != self.group.public_size:
            raise InvalidPublicKey(f"{self.group.name} public value has the wrong length")
        try:
            # from_encoded_point checks that the point lies on the curve.
            peer = ec.EllipticCurvePublicKey.from_encoded_point(self.group.curve(),
                                                                b"\x04" + peer_public)
            return self._key.exchange(ec.ECDH(), peer)  # the x coordinate (RFC 5903 §7)
        except ValueError:
            raise InvalidPublicKey(f"{self.group.name}: point not on the curve") from None


class _EcpGroup(DhGroup):
    def __init__(self, group_id: int) -> None:
        curve = _CURVES[group_id]
        size = (curve().key_size + 7) // 8
        object.__setattr__(self, "group_id", group_id)
        object.__setattr__(self, "name", DH_NAMES[group_id])
        object.__setattr__(self, "public_size", 2 * size)
        object.__setattr__(self, "curve", curve)

    def generate(self) -> DhPrivate:
        return _EcpPrivate(self, ec.generate_private_key(self.curve()))

    def load_private(self, private: bytes) -> DhPrivate:
        value = int.from_bytes(private, "big")
        return _EcpPrivate(self, ec.derive_private_key(value, self.curve()))


class _MontgomeryPrivate(DhPrivate):
    def __init__(self, group: _MontgomeryGroup,
                 key: x25519.X25519PrivateKey | x448.X448PrivateKey) -> None:
        self.group = group
        self._key = key
        self.public = key.public_key().public_bytes_raw()

    def exchange(self, peer_public: bytes) -> bytes:
        if len(peer_public) != self.group.public_size:
            raise InvalidPublicKey(f"{self.group.name} public value has the wrong length")
        try:
            peer = self.group.public_cls.from_public_bytes(peer_public)
            shared = self._key.exchange(peer)  # type: ignore[arg-type]
        except ValueError as exc:
            # cryptography itself refuses a low-order point's all-zero result.
            raise InvalidPublicKey(f"{self.group.name}: {exc}") from None
        if not any(shared):
            # RFC 8031 §2.3: an all-zero result means a low-order point. cryptography
            # 50 already refuses it above; this keeps the rule if a backend does not.
            raise InvalidPublicKey(f"{self.group.name}: all-zero shared secret")
        return shared


class _MontgomeryGroup(DhGroup):
    def __init__(self, group_id: int) -> None:
        private_cls, public_cls, size = {
            Dh.CURVE_25519: (x25519.X25519PrivateKey, x25519.X25519PublicKey, 32),
            Dh.CURVE_448: (x448.X448PrivateKey, x448.X448PublicKey, 56),
        }[group_id]
        object.__setattr__(self, "group_id", group_id)
        object.__setattr__(self, "name", DH_NAMES[group_id])
        object.__setattr__(self, "public_size", size)
        object.__setattr__(self, "private_cls", private_cls)
        object.__setattr__(self, "public_cls", public_cls)

    def generate(self) -> DhPrivate:
        return _MontgomeryPrivate(self, self.private_cls.generate())

    def load_private(self, private: bytes) -> DhPrivate:
        return _MontgomeryPrivate(self, self.private_cls.from_private_bytes(private))


_GROUPS: dict[int, DhGroup] = {}


def get_dh_group(group_id: int) -> DhGroup:
    group = _GROUPS.get(group_id)
    if group is not None:
        return group
    if group_id in _MODP_PRIMES:
        group = _ModpGroup(group_id, _MODP_PRIMES[group_id])
    elif group_id in _CURVES:
        group = _EcpGroup(group_id)
    elif group_id in (Dh.CURVE_25519, Dh.CURVE_448):
        group = _MontgomeryGroup(group_id)
    else:
        raise UnsupportedTransform(f"Diffie-Hellman group {_name(DH_NAMES, 'DH', group_id)}")
    _GROUPS[group_id] = group
    return group


# --- names for the kernel ----------------------------------------------------------------

_KERNEL_ENCR = {"gcm": "rfc4106(gcm(aes))", "cbc": "cbc(aes)",
                "chacha": "rfc7539esp(chacha20,poly1305)"}


def esp_kernel_name(cipher: Cipher) -> str:
    """The Linux XFRM algorithm name for an ESP cipher (AEAD ICV length set apart)."""
    return _KERNEL_ENCR[cipher._kind]


def esp_auth_kernel_name(integ: Integ) -> str:
    """The Linux XFRM name for an ESP integrity transform; truncation is icv_size."""
    return f"hmac({integ.hash_name})"
