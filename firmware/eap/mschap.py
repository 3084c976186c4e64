"""MS-CHAPv2 arithmetic (RFC 2759 §8) and its MPPE keys (RFC 3079 §3), server side.

Pure functions over bytes, so the RFC vectors test them directly and an in-test peer can
be built from them. DES, SHA-1 and MD4 come from `cryptography` and pycryptodome; the
only local code is the 7-to-8-byte DES key expansion, which is how RFC 2759 turns the
NT hash into three DES keys.
"""

from __future__ import annotations

from Crypto.Hash import MD4
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, modes

try:  # cryptography >= 43 moved the legacy ciphers here
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES  # type: ignore

CHALLENGE_LEN = 16
NT_RESPONSE_LEN = 24
MASTER_KEY_LEN = 16
MSK_LEN = 64

# RFC 2759 §8.7 and RFC 3079 §3.4 constants, spelled as the ASCII text they are.
_AUTH_MAGIC1 = b"Magic server to client signing constant"
_AUTH_MAGIC2 = b"Pad to make it do more than one iteration"
_MPPE_MAGIC1 = b"This is the MPPE Master Key"
_MPPE_MAGIC2 = (
    b"On the client side, this is the send key; on the server side, it is the receive key."
)
_MPPE_MAGIC3 = (
    b"On the client side, this is the receive key; on the server side, it is the send key."
)
_SHS_PAD1 = b"\x00" * 40
_SHS_PAD2 = b"\xf2" * 40


def _sha1(*parts: bytes) -> bytes:
    h = hashes.Hash(hashes.SHA1())
    for p in parts:
        h.update(p)
    return h.finalize()


def nt_password_hash(password: str) -> bytes:
    """RFC 2759 §8.3: MD4 of the UTF-16LE password."""
    return MD4.new(password.encode("utf-16-le")).digest()


def hash_nt_password_hash(nt_hash: bytes) -> bytes:
    """RFC 2759 §8.4."""
    return MD4.new(nt_hash).digest()


def challenge_hash(peer_challenge: bytes, auth_challenge: bytes, username: bytes) -> bytes:
    """RFC 2759 §8.2: first 8 bytes of SHA-1(peer challenge, authenticator challenge, name).

    `username` is the user part only: a Windows "DOMAIN\\user" is stripped to "user"
    before this (see user_part()).
    """
    return _sha1(peer_challenge, auth_challenge, username)[:8]


def _des_key(key7: bytes) -> bytes:
    """Spread 56 key bits over 8 bytes, 7 bits each, as RFC 2759 §8.6 DesEncrypt wants.

    The low (parity) bit is left at zero: DES ignores it.
    """
    bits = int.from_bytes(key7, "big")
    return bytes(((bits >> (49 - 7 * i)) & 0x7F) << 1 for i in range(8))


def _des_encrypt(clear8: bytes, key7: bytes) -> bytes:
    # Three identical keys (K|K|K) make 3DES-EDE collapse to single DES, which is the
    # only way to reach DES through `cryptography`.
    k = _des_key(key7)
    enc = Cipher(TripleDES(k * 3), modes.ECB()).encryptor()
    return enc.update(clear8) + enc.finalize()


def challenge_response(challenge8: bytes, nt_hash: bytes) -> bytes:
    """RFC 2759 §8.5: three DES encryptions of the challenge under the padded NT hash."""
    z = nt_hash.ljust(21, b"\x00")
    return b"".join(_des_encrypt(challenge8, z[i : i + 7]) for i in (0, 7, 14))


def generate_nt_response(
    auth_challenge: bytes, peer_challenge: bytes, username: bytes, nt_hash: bytes
) -> bytes:
    """RFC 2759 §8.1 GenerateNTResponse, from the stored NT hash."""
    return challenge_response(challenge_hash(peer_challenge, auth_challenge, username), nt_hash)


def authenticator_response(
    nt_hash: bytes,
    nt_response: bytes,
    peer_challenge: bytes,
    auth_challenge: bytes,
    username: bytes,
) -> str:
    """RFC 2759 §8.7: the "S=<40 upper-case hex digits>" string the server proves with."""
    digest = _sha1(hash_nt_password_hash(nt_hash), nt_response, _AUTH_MAGIC1)
    chal = challenge_hash(peer_challenge, auth_challenge, username)
    return "S=" + _sha1(digest, chal, _AUTH_MAGIC2).hex().upper()


def master_key(nt_hash: bytes, nt_response: bytes) -> bytes:
    """RFC 3079 §3.4 GetMasterKey."""
    return _sha1(hash_nt_password_hash(nt_hash), nt_response, _MPPE_MAGIC1)[:MASTER_KEY_LEN]


def asymmetric_start_key(
    master: bytes, length: int, *, is_send: bool, is_server: bool
) -> bytes:
    """RFC 3079 §3.4 GetAsymmetricStartKey."""
    magic = _MPPE_MAGIC3 if is_send == is_server else _MPPE_MAGIC2
    return _sha1(master, _SHS_PAD1, magic, _SHS_PAD2)[:length]


def msk(nt_hash: bytes, nt_response: bytes) -> bytes:
    """The 64-byte EAP-MSCHAPv2 MSK as the IKEv2 peers we interoperate with derive it.

    Layout: the server's MasterReceiveKey (16) | the server's MasterSendKey (16) |
    32 zero bytes. Equivalently, the key made with RFC 3079 Magic2 first, then the one
    made with Magic3: the peer's send key comes first.

    Source: strongSwan src/libcharon/plugins/eap_mschapv2/eap_mschapv2.c, GenerateMSK(),
    which peer and server both call (so the order is the same on both sides): it hashes
    Magic2 into "master_receive_key", Magic3 into "master_send_key", and returns
    receive | send | 16 zero bytes | 16 zero bytes. Read via the code search for this
    module (2026-12); the function is unchanged from strongSwan 4.x through 5.9.x.
    hostapd's server (MSK = receive key | send key, then zeros) agrees.
    """
    mk = master_key(nt_hash, nt_response)
    receive = asymmetric_start_key(mk, 16, is_send=False, is_server=True)
    send = asymmetric_start_key(mk, 16, is_send=True, is_server=True)
    return (receive + send).ljust(MSK_LEN, b"\x00")


def user_part(name: bytes) -> bytes:
    """The user name MS-CHAPv2 hashes: what follows the first backslash, if any."""
    _, sep, rest = name.partition(b"\\")
    return rest if sep else name
