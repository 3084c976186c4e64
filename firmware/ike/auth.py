"""The AUTH payload (RFC 7296 §2.15, §2.16) and RFC 7427 digital signatures.

The octets each side signs are its own first message, the other side's nonce and
prf(SK_p, ID payload body). A shared-key AUTH (PSK, or the MSK after EAP) is
prf(prf(secret, "Key Pad for IKEv2"), octets).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature, encode_dss_signature,
)

from . import crypto
from .constants import AuthMethod, HashAlg

KEY_PAD = b"Key Pad for IKEv2"


def signed_octets(first_message: bytes, peer_nonce: bytes, prf: crypto.Prf,
                  sk_p: bytes, id_body: bytes) -> bytes:
    return first_message + peer_nonce + prf(sk_p, id_body)


def shared_key_auth(prf: crypto.Prf, secret: bytes, octets: bytes) -> bytes:
    return prf(prf(secret, KEY_PAD), octets)


def verify_shared_key(prf: crypto.Prf, secret: bytes, octets: bytes, data: bytes) -> bool:
    return hmac.compare_digest(shared_key_auth(prf, secret, octets), data)


# AlgorithmIdentifier DER encodings for RFC 7427 AUTH data (RFC 7427 Appendix A).
_RSA_ALG_ID = {
    HashAlg.SHA2_256: bytes.fromhex("300d06092a864886f70d01010b0500"),
    HashAlg.SHA2_384: bytes.fromhex("300d06092a864886f70d01010c0500"),
    HashAlg.SHA2_512: bytes.fromhex("300d06092a864886f70d01010d0500"),
}
_ECDSA_ALG_ID = {
    HashAlg.SHA2_256: bytes.fromhex("300a06082a8648ce3d040302"),
    HashAlg.SHA2_384: bytes.fromhex("300a06082a8648ce3d040303"),
    HashAlg.SHA2_512: bytes.fromhex("300a06082a8648ce3d040304"),
}
_HASHES = {HashAlg.SHA1: hashes.SHA1, HashAlg.SHA2_256: hashes.SHA256,
           HashAlg.SHA2_384: hashes.SHA384, HashAlg.SHA2_512: hashes.SHA512}
_ECDSA_METHOD = {"secp256r1": (AuthMethod.ECDSA_256, HashAlg.SHA2_256),
                 "secp384r1": (AuthMethod.ECDSA_384, HashAlg.SHA2_384),
                 "secp521r1": (AuthMethod.ECDSA_521, HashAlg.SHA2_512)}
SUPPORTED_HASHES = (HashAlg.SHA2_256, HashAlg.SHA2_384, HashAlg.SHA2_512)


@dataclass(frozen=True)
class Signer:
    """The box's private key, and how it signs an AUTH payload."""

    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = field(repr=False)

    def sign(self, octets: bytes, peer_hashes: tuple[int, ...]) -> tuple[int, bytes]:
        """Returns (AUTH method, AUTH data).

        With RFC 7427 support announced by the peer (SIGNATURE_HASH_ALGORITHMS), the
        box signs with method 14 and the strongest hash both sides know; otherwise it
        falls back to the classic methods 1 (RSA with SHA-1) and 9-11 (ECDSA).
        """
        common = [h for h in (HashAlg.SHA2_512, HashAlg.SHA2_384, HashAlg.SHA2_256)
                  if h in peer_hashes]
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            method, natural = _ECDSA_METHOD[self.key.curve.name]
            if common:
                alg = natural if natural in common else common[-1]
                sig = self.key.sign(octets, ec.ECDSA(_HASHES[alg]()))
                alg_id = _ECDSA_ALG_ID[alg]
                return AuthMethod.DIGITAL_SIGNATURE, bytes([len(alg_id)]) + alg_id + sig
            der = self.key.sign(octets, ec.ECDSA(_HASHES[natural]()))
            return method, _der_to_raw(der, self.key.curve.key_size)
        if common:
            alg = HashAlg.SHA2_256 if HashAlg.SHA2_256 in common else common[0]
            sig = self.key.sign(octets, padding.PKCS1v15(), _HASHES[alg]())
            alg_id = _RSA_ALG_ID[alg]
            return AuthMethod.DIGITAL_SIGNATURE, bytes([len(alg_id)]) + alg_id + sig
        return AuthMethod.RSA_SIG, self.key.sign(octets, padding.PKCS1v15(), hashes.SHA1())


def verify_signature(public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
                     method: int, data: bytes, octets: bytes) -> bool:
    """Checks a peer's signature AUTH (used by the tests and for certificate clients)."""
    try:
        if method == AuthMethod.DIGITAL_SIGNATURE:
            alg_len = data[0]
            alg_id, sig = data[1:1 + alg_len], data[1 + alg_len:]
            if isinstance(public_key, ec.EllipticCurvePublicKey):
                alg = _lookup(_ECDSA_ALG_ID, alg_id)
                public_key.verify(sig, octets, ec.ECDSA(_HASHES[alg]()))
            else:
                alg = _lookup(_RSA_ALG_ID, alg_id)
                public_key.verify(sig, octets, padding.PKCS1v15(), _HASHES[alg]())
        elif method == AuthMethod.RSA_SIG and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(data, octets, padding.PKCS1v15(), hashes.SHA1())
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            want, alg = _ECDSA_METHOD[public_key.curve.name]
            if method != want:
                return False
            size = (public_key.curve.key_size + 7) // 8
            if len(data) != 2 * size:
                return False
            der = encode_dss_signature(int.from_bytes(data[:size], "big"),
                                       int.from_bytes(data[size:], "big"))
            public_key.verify(der, octets, ec.ECDSA(_HASHES[alg]()))
        else:
            return False
    except (InvalidSignature, KeyError, IndexError, ValueError):
        return False
    return True


def _lookup(table: dict[int, bytes], alg_id: bytes) -> int:
    for alg, encoded in table.items():
        if encoded == alg_id:
            return alg
    raise KeyError("unknown signature algorithm")


def _der_to_raw(der: bytes, key_bits: int) -> bytes:
    r, s = decode_dss_signature(der)
    size = (key_bits + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")
