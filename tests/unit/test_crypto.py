"""Crypto transforms against published vectors; each names the section it comes from."""

from __future__ import annotations

import hashlib
import hmac
import warnings

import pytest

from firmware.ike import crypto
from firmware.ike.constants import Dh, Encr, Integ, Prf


def h(text: str) -> bytes:
    """Hex as the RFCs print it: spaces, colons and line breaks ignored."""
    return bytes.fromhex("".join(text.replace(":", " ").split()))


# --- HMAC: RFC 4231 §4.2-4.8 -------------------------------------------------------

# (case, key, data); the expected values per hash follow below.
RFC4231_INPUTS = {
    1: (b"\x0b" * 20, b"Hi There"),
    2: (b"Jefe", b"what do ya want for nothing?"),
    3: (b"\xaa" * 20, b"\xdd" * 50),
    4: (bytes(range(1, 26)), b"\xcd" * 50),
    5: (b"\x0c" * 20, b"Test With Truncation"),
    6: (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First"),
    7: (b"\xaa" * 131, b"This is a test using a larger than block-size key and a larger than"
                       b" block-size data. The key needs to be hashed before being used by"
                       b" the HMAC algorithm."),
}

RFC4231_SHA256 = {
    1: "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
    2: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    3: "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
    4: "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
    5: "a3b6167473100ee06e0c796c2955552b",
    6: "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
    7: "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
}
RFC4231_SHA384 = {
    1: "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c"
       "faea9ea9076ede7f4af152e8b2fa9cb6",
    2: "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e"
       "8e2240ca5e69e2c78b3239ecfab21649",
    3: "88062608d3e6ad8a0aa2ace014c8a86f0aa635d947ac9febe83ef4e55966144b"
       "2a5ab39dc13814b94e3ab6e101a34f27",
    4: "3e8a69b7783c25851933ab6290af6ca77a9981480850009cc5577c6e1f573b4e"
       "6801dd23c4a7d679ccf8a386c674cffb",
    5: "3abf34c3503b2a23a46efc619baef897",
    6: "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c6"
       "0c2ef6ab4030fe8296248df163f44952",
    7: "6617178e941f020d351e2f254e8fd32c602420feb0b8fb9adccebb82461e99c5"
       "a678cc31e799176d3860e6110c46523e",
}
RFC4231_SHA512 = {
    1: "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
       "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
    2: "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
       "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
    3: "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39"
       "bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb",
    4: "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3db"
       "a91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd",
    5: "415fad6271580a531d4179bc891d87a6",
    6: "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352"
       "6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
    7: "e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944"
       "b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58",
}

_RFC4231_CASES = [
    (prf_id, case, expected)
    for prf_id, table in ((Prf.HMAC_SHA2_256, RFC4231_SHA256),
                          (Prf.HMAC_SHA2_384, RFC4231_SHA384),
                          (Prf.HMAC_SHA2_512, RFC4231_SHA512))
    for case, expected in table.items()
]


@pytest.mark.parametrize("prf_id, case, expected", _RFC4231_CASES)
def test_prf_rfc4231(prf_id: int, case: int, expected: str) -> None:
    """RFC 4231 §4.2-4.8, also RFC 4868 §2.7.1 (PRF-1 to PRF-6 are the same cases)."""
    key, data = RFC4231_INPUTS[case]
    out = crypto.get_prf(prf_id)(key, data)
    want = bytes.fromhex(expected)
    if case == 5:  # §4.6: only the leftmost 128 bits are published
        assert len(out) == crypto.get_prf(prf_id).key_size
        out = out[:16]
    assert out == want


def test_prf_hmac_sha1_rfc2202() -> None:
    """RFC 2202 §3, test cases 1 and 2 (PRF_HMAC_SHA1)."""
    prf = crypto.get_prf(Prf.HMAC_SHA1)
    assert prf(b"\x0b" * 20, b"Hi There") == h("b617318655057264e28bc0b6fb378c8ef146be00")
    assert prf(b"Jefe", b"what do ya want for nothing?") == h(
        "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
    assert prf.key_size == 20


# --- integrity: RFC 4868 §2.7.2, RFC 2404 -----------------------------------------------

# (integrity id, key, data, full HMAC output as printed); the ICV is its left part.
RFC4868_AUTH = [
    # §2.7.2.1 AUTH256-1 .. AUTH256-4
    (Integ.HMAC_SHA2_256_128, b"\x0b" * 32, b"Hi There",
     "198a607eb44bfbc69903a0f1cf2bbdc5ba0aa3f3d9ae3c1c7a3b1696a0b68cf7"),
    (Integ.HMAC_SHA2_256_128, b"Jefe" * 8, b"what do ya want for nothing?",
     "167f928588c5cc2eef8e3093caa0e87c9ff566a14794aa61648d81621a2a40c6"),
    (Integ.HMAC_SHA2_256_128, b"\xaa" * 32, b"\xdd" * 50,
     "cdcb1220d1ecccea91e53aba3092f962e549fe6ce9ed7fdc43191fbde45c30b0"),
    (Integ.HMAC_SHA2_256_128, bytes(range(1, 33)), b"\xcd" * 50,
     "372efcf9b40b35c2115b1346903d2ef42fced46f0846e7257bb156d3d7b30d3f"),
    # §2.7.2.2 AUTH384-1
    (Integ.HMAC_SHA2_384_192, b"\x0b" * 48, b"Hi There",
     "b6a8d5636f5c6a7224f9977dcf7ee6c7fb6d0c48cbdee973"),
    # §2.7.2.3 AUTH512-1
    (Integ.HMAC_SHA2_512_256, b"\x0b" * 64, b"Hi There",
     "637edc6e01dce7e6742a99451aae82df23da3e92439e590e43e761b33e910fb8"
     "ac2878ebd5803f6f0b61dbce5e251ff8789a4722c1be65aea45fd464e89f8f5b"),
]


@pytest.mark.parametrize("integ_id, key, data, full", RFC4868_AUTH)
def test_integ_rfc4868_auth(integ_id: int, key: bytes, data: bytes, full: str) -> None:
    """RFC 4868 §2.7.2: the authenticator is the leftmost half of the HMAC output."""
    integ = crypto.get_integ(integ_id)
    icv = integ.compute(key, data)
    assert len(key) == integ.key_size
    assert len(icv) == integ.icv_size == integ.key_size // 2
    assert icv == bytes.fromhex(full)[:integ.icv_size]
    assert integ.verify(key, data, icv)
    assert not integ.verify(key, data + b"!", icv)


def test_integ_hmac_sha1_96_rfc2404() -> None:
    """RFC 2404 §3 points at RFC 2202 §3 case 1; the ICV is its first 96 bits."""
    integ = crypto.get_integ(Integ.HMAC_SHA1_96)
    assert (integ.key_size, integ.icv_size) == (20, 12)
    assert integ.compute(b"\x0b" * 20, b"Hi There") == h("b617318655057264e28bc0b6")


# --- prf+ (RFC 7296 §2.13) -----------------------------------------------------------

def test_prf_plus_matches_a_hand_worked_expansion() -> None:
    """prf+ = T1 | T2 | T3 ..., T1 = prf(K, S|0x01), Tn = prf(K, Tn-1|S|n), built with
    the standard library's hmac as an independent oracle."""
    key, seed = b"K" * 32, b"Ni|Nr|SPIi|SPIr"
    t1 = hmac.new(key, seed + b"\x01", hashlib.sha256).digest()
    t2 = hmac.new(key, t1 + seed + b"\x02", hashlib.sha256).digest()
    t3 = hmac.new(key, t2 + seed + b"\x03", hashlib.sha256).digest()
    prf = crypto.get_prf(Prf.HMAC_SHA2_256)
    assert prf.plus(key, seed, 70) == (t1 + t2 + t3)[:70]
    assert prf.plus(key, seed, 32) == t1
    assert prf.plus(key, seed, 0) == b""


def test_prf_plus_stops_at_255_blocks() -> None:
    prf = crypto.get_prf(Prf.HMAC_SHA1)
    assert len(prf.plus(b"k", b"s", 255 * 20)) == 255 * 20
    with pytest.raises(ValueError):
        prf.plus(b"k", b"s", 255 * 20 + 1)


# --- AES-GCM (RFC 4106 / RFC 5282 nonce = salt || iv) ------------------------------

# "The Galois/Counter Mode of Operation (GCM)", McGrew and Viega, appendix B, test
# cases 4, 10 and 16: 96-bit IV cafebabe facedbaddecaf888, split as RFC 5282 §4 does
# into salt cafebabe (last four octets of the keying material) and IV facedbaddecaf888.
GCM_PLAIN = h("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
              "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39")
GCM_AAD = h("feedfacedeadbeeffeedfacedeadbeefabaddad2")
GCM_CASES = [
    (128, "feffe9928665731c6d6a8f9467308308",
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
     "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
     "5bc94fbc3221a5db94fae95ae7121a47"),
    (192, "feffe9928665731c6d6a8f9467308308feffe9928665731c",
     "3980ca0b3c00e841eb06fac4872a2757859e1ceaa6efd984628593b40ca1e19c"
     "7d773d00c144c525ac619d18c84a3f4718e2448b2fe324d9ccda2710",
     "2519498e80f1478f37ba55bd6d27618c"),
    (256, "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"),
]
GCM_SALT, GCM_IV = h("cafebabe"), h("facedbaddecaf888")


@pytest.mark.parametrize("bits, key, ct, tag", GCM_CASES)
def test_aes_gcm_16_gcm_spec_vectors(bits: int, key: str, ct: str, tag: str) -> None:
    cipher = crypto.get_cipher(Encr.AES_GCM_16, bits)
    assert (cipher.key_size, cipher.iv_size, cipher.icv_size) == (bits // 8 + 4, 8, 16)
    assert cipher.aead and cipher.block_size == 1
    keymat = h(key) + GCM_SALT
    sealed = cipher.encrypt(keymat, GCM_IV, GCM_PLAIN, GCM_AAD)
    assert sealed == h(ct) + h(tag)
    assert cipher.decrypt(keymat, GCM_IV, sealed, GCM_AAD) == GCM_PLAIN


@pytest.mark.parametrize("transform_id, icv", [(Encr.AES_GCM_8, 8), (Encr.AES_GCM_12, 12)])
def test_aes_gcm_short_tags_are_the_truncated_full_tag(transform_id: int, icv: int) -> None:
    """RFC 4106 §6 ICV lengths: the same GCM test case 4, tag cut to 8 or 12 octets."""
    _, key, ct, tag = GCM_CASES[0]
    cipher = crypto.get_cipher(transform_id, 128)
    keymat = h(key) + GCM_SALT
    sealed = cipher.encrypt(keymat, GCM_IV, GCM_PLAIN, GCM_AAD)
    assert sealed == h(ct) + h(tag)[:icv]
    assert cipher.decrypt(keymat, GCM_IV, sealed, GCM_AAD) == GCM_PLAIN
    flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(crypto.IntegrityError):
        cipher.decrypt(keymat, GCM_IV, flipped, GCM_AAD)


# --- ChaCha20-Poly1305: RFC 7539 §2.8.2, RFC 7634 §2 ---------------------------------

RFC7539_282_PLAIN = b"Ladies and Gentlemen of the class of '99: If I could offer you only" \
                    b" one tip for the future, sunscreen would be it."
RFC7539_282_CT = h("""
d3 1a 8d 34 64 8e 60 db 7b 86 af bc 53 ef 7e c2 a4 ad ed 51 29 6e 08 fe a9 e2 b5 a7 36 ee 62 d6
3d be a4 5e 8c a9 67 12 82 fa fb 69 da 92 72 8b 1a 71 de 0a 9e 06 0b 29 05 d6 a5 b6 7e cd 3b 36
92 dd bd 7f 2d 77 8b 8c 98 03 ae e3 28 09 1b 58 fa b3 24 e4 fa d6 75 94 55 85 80 8b 48 31 d7 bc
3f f4 de f0 8e 4b 7a 9d e5 76 d2 65 86 ce c6 4b 61 16""")
RFC7539_282_TAG = h("1a:e1:0b:59:4f:09:e2:6a:7e:90:2e:cb:d0:60:06:91")


def test_chacha20_poly1305_rfc7539_aead_vector() -> None:
    """RFC 7539 §2.8.2. Its 12-octet nonce 07000000 4041424344454647 is, in RFC 7634
    §2 terms, the salt (last 4 octets of keying material) || the 8-octet IV."""
    cipher = crypto.get_cipher(Encr.CHACHA20_POLY1305, None)
    assert (cipher.key_size, cipher.iv_size, cipher.icv_size) == (36, 8, 16)
    keymat = bytes(range(0x80, 0xa0)) + h("07 00 00 00")
    iv = h("40 41 42 43 44 45 46 47")
    aad = h("50 51 52 53 c0 c1 c2 c3 c4 c5 c6 c7")
    sealed = cipher.encrypt(keymat, iv, RFC7539_282_PLAIN, aad)
    assert sealed == RFC7539_282_CT + RFC7539_282_TAG
    assert cipher.decrypt(keymat, iv, sealed, aad) == RFC7539_282_PLAIN
    assert crypto.get_cipher(Encr.CHACHA20_POLY1305, 256) == cipher


# --- AES-CBC: RFC 3602 §4 -------------------------------------------------------------

def test_aes_cbc_rfc3602_case_2() -> None:
    """RFC 3602 §4 case #2: AES-128-CBC, 32 octets."""
    cipher = crypto.get_cipher(Encr.AES_CBC, 128)
    assert (cipher.key_size, cipher.iv_size, cipher.block_size) == (16, 16, 16)
    assert not cipher.aead and cipher.icv_size == 0
    key = h("c286696d887c9aa0611bbb3e2025a45a")
    iv = h("562e17996d093d28ddb3ba695a2e6f58")
    plain = bytes(range(32))
    ct = h("d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1")
    assert cipher.encrypt(key, iv, plain) == ct
    assert cipher.decrypt(key, iv, ct) == plain
    with pytest.raises(ValueError):
        cipher.encrypt(key, iv, plain[:-1])


def test_cipher_key_and_iv_lengths_are_checked() -> None:
    cipher = crypto.get_cipher(Encr.AES_GCM_16, 256)
    with pytest.raises(ValueError):
        cipher.encrypt(bytes(32), bytes(8), b"x")  # salt missing
    with pytest.raises(ValueError):
        cipher.encrypt(bytes(36), bytes(12), b"x")  # a 96-bit IV is the whole nonce


# --- tampering --------------------------------------------------------------------------

@pytest.mark.parametrize("transform_id, bits", [(Encr.AES_GCM_16, 128), (Encr.AES_GCM_16, 256),
                                                (Encr.CHACHA20_POLY1305, None)])
@pytest.mark.parametrize("where", ["ciphertext", "tag", "aad", "iv"])
def test_aead_flipped_bit_raises_integrity_error(transform_id: int, bits: int | None,
                                                 where: str) -> None:
    cipher = crypto.get_cipher(transform_id, bits)
    key, iv, aad = bytes(range(cipher.key_size)), b"\x01" * 8, b"IKE header"
    sealed = bytearray(cipher.encrypt(key, iv, b"inner payloads" * 3, aad))
    if where == "ciphertext":
        sealed[0] ^= 0x80
    elif where == "tag":
        sealed[-1] ^= 0x01
    elif where == "aad":
        aad = b"IKE headeR"
    else:
        iv = b"\x01" * 7 + b"\x00"
    with pytest.raises(crypto.IntegrityError):
        cipher.decrypt(key, iv, bytes(sealed), aad)


def test_aead_shorter_than_tag_is_an_integrity_error() -> None:
    cipher = crypto.get_cipher(Encr.AES_GCM_16, 128)
    with pytest.raises(crypto.IntegrityError):
        cipher.decrypt(bytes(20), bytes(8), bytes(15))


# --- refusals ---------------------------------------------------------------------------

@pytest.mark.parametrize("transform_id, bits", [
    (Encr.DES, None), (Encr.TRIPLE_DES, None), (Encr.NULL, None), (Encr.AES_CTR, 128),
    (Encr.AES_CCM_16, 128), (Encr.AES_CBC, None), (Encr.AES_CBC, 64),
    (Encr.AES_GCM_16, None), (Encr.CHACHA20_POLY1305, 128), (99, 128),
])
def test_refused_ciphers(transform_id: int, bits: int | None) -> None:
    with pytest.raises(crypto.UnsupportedTransform):
        crypto.get_cipher(transform_id, bits)


def test_refused_prf_integ_and_groups() -> None:
    for prf_id in (Prf.HMAC_MD5, Prf.AES128_XCBC, Prf.AES128_CMAC, 200):
        with pytest.raises(crypto.UnsupportedTransform):
            crypto.get_prf(prf_id)
    for integ_id in (Integ.NONE, Integ.HMAC_MD5_96, Integ.AES_XCBC_96, Integ.HMAC_SHA1_160):
        with pytest.raises(crypto.UnsupportedTransform):
            crypto.get_integ(integ_id)
    for group_id in (Dh.NONE, Dh.MODP_768, Dh.MODP_6144, 22, 24, 28, 1000):
        with pytest.raises(crypto.UnsupportedTransform):
            crypto.get_dh_group(group_id)


def test_refusal_messages_name_the_transform() -> None:
    with pytest.raises(crypto.UnsupportedTransform, match="ENCR_DES"):
        crypto.get_cipher(Encr.DES, None)
    with pytest.raises(crypto.UnsupportedTransform, match="MODP_768"):
        crypto.get_dh_group(Dh.MODP_768)
    with pytest.raises(crypto.UnsupportedTransform, match="PRF_HMAC_MD5"):
        crypto.get_prf(Prf.HMAC_MD5)
    with pytest.raises(crypto.UnsupportedTransform, match="ENCR_77"):
        crypto.get_cipher(77, 128)


# --- names ------------------------------------------------------------------------------

def test_name_tables_cover_offered_and_refused_ids() -> None:
    assert crypto.PRF_NAMES[5] == "PRF_HMAC_SHA2_256"
    assert crypto.PRF_NAMES[1] == "PRF_HMAC_MD5"
    assert crypto.INTEG_NAMES[12] == "AUTH_HMAC_SHA2_256_128"
    assert crypto.INTEG_NAMES[1] == "AUTH_HMAC_MD5_96"
    assert crypto.ENCR_NAMES[20] == "ENCR_AES_GCM_16"
    assert crypto.ENCR_NAMES[12] == "ENCR_AES_CBC"
    assert crypto.ENCR_NAMES[28] == "ENCR_CHACHA20_POLY1305"
    assert crypto.ENCR_NAMES[2] == "ENCR_DES" and crypto.ENCR_NAMES[3] == "ENCR_3DES"
    assert crypto.DH_NAMES[14] == "MODP_2048" and crypto.DH_NAMES[1] == "MODP_768"
    assert crypto.DH_NAMES[19] == "ECP_256" and crypto.DH_NAMES[31] == "CURVE_25519"
    # Every supported transform's name comes from the same tables.
    assert crypto.get_prf(Prf.HMAC_SHA2_384).name == "PRF_HMAC_SHA2_384"
    assert crypto.get_integ(Integ.HMAC_SHA1_96).name == "AUTH_HMAC_SHA1_96"
    assert crypto.get_cipher(Encr.AES_GCM_16, 256).name == "ENCR_AES_GCM_16_256"
    assert crypto.get_dh_group(Dh.CURVE_448).name == "CURVE_448"


def test_kernel_names() -> None:
    """The names Linux XFRM knows the algorithms by (crypto/ in the kernel tree)."""
    expected = {
        (Encr.AES_GCM_16, 256): "rfc4106(gcm(aes))",
        (Encr.AES_GCM_8, 128): "rfc4106(gcm(aes))",
        (Encr.AES_CBC, 128): "cbc(aes)",
        (Encr.CHACHA20_POLY1305, None): "rfc7539esp(chacha20,poly1305)",
    }
    for (tid, bits), name in expected.items():
        assert crypto.esp_kernel_name(crypto.get_cipher(tid, bits)) == name
    auth = {Integ.HMAC_SHA1_96: "hmac(sha1)", Integ.HMAC_SHA2_256_128: "hmac(sha256)",
            Integ.HMAC_SHA2_384_192: "hmac(sha384)", Integ.HMAC_SHA2_512_256: "hmac(sha512)"}
    for tid, name in auth.items():
        assert crypto.esp_auth_kernel_name(crypto.get_integ(tid)) == name


# --- ECP: RFC 5903 §8 -----------------------------------------------------------------

RFC5903 = {
    # §8.1 256-bit random ECP group: i, g^i (x, y), r, g^r (x, y), g^ir x
    Dh.ECP_256: (
        "C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433",
        "DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180",
        "5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3",
        "C6EF9C5D78AE012A011164ACB397CE2088685D8F06BF9BE0B283AB46476BEE53",
        "D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63",
        "56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB",
        "D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE",
    ),
    # §8.2 384-bit random ECP group
    Dh.ECP_384: (
        "099F3C7034D4A2C699884D73A375A67F7624EF7C6B3C0F160647B67414DCE655"
        "E35B538041E649EE3FAEF896783AB194",
        "667842D7D180AC2CDE6F74F37551F55755C7645C20EF73E31634FE72B4C55EE6"
        "DE3AC808ACB4BDB4C88732AEE95F41AA",
        "9482ED1FC0EEB9CAFC4984625CCFC23F65032149E0E144ADA024181535A0F38E"
        "EB9FCFF3C2C947DAE69B4C634573A81C",
        "41CB0779B4BDB85D47846725FBEC3C9430FAB46CC8DC5060855CC9BDA0AA2942"
        "E0308312916B8ED2960E4BD55A7448FC",
        "E558DBEF53EECDE3D3FCCFC1AEA08A89A987475D12FD950D83CFA41732BC509D"
        "0D1AC43A0336DEF96FDA41D0774A3571",
        "DCFBEC7AACF3196472169E838430367F66EEBE3C6E70C416DD5F0C68759DD1FF"
        "F83FA40142209DFF5EAAD96DB9E6386C",
        "11187331C279962D93D604243FD592CB9D0A926F422E47187521287E7156C5C4"
        "D603135569B9E9D09CF5D4A270F59746",
    ),
    # §8.3 521-bit random ECP group
    Dh.ECP_521: (
        "0037ADE9319A89F4DABDB3EF411AACCCA5123C61ACAB57B5393DCE47608172A0"
        "95AA85A30FE1C2952C6771D937BA9777F5957B2639BAB072462F68C27A57382D4A52",
        "0015417E84DBF28C0AD3C278713349DC7DF153C897A1891BD98BAB4357C9ECBE"
        "E1E3BF42E00B8E380AEAE57C2D107564941885942AF5A7F4601723C4195D176CED3E",
        "017CAE20B6641D2EEB695786D8C946146239D099E18E1D5A514C739D7CB4A10A"
        "D8A788015AC405D7799DC75E7B7D5B6CF2261A6A7F1507438BF01BEB6CA3926F9582",
        "0145BA99A847AF43793FDD0E872E7CDFA16BE30FDC780F97BCCC3F078380201E"
        "9C677D600B343757A3BDBF2A3163E4C2F869CCA7458AA4A4EFFC311F5CB151685EB9",
        "00D0B3975AC4B799F5BEA16D5E13E9AF971D5E9B984C9F39728B5E5739735A21"
        "9B97C356436ADC6E95BB0352F6BE64A6C2912D4EF2D0433CED2B6171640012D9460F",
        "015C68226383956E3BD066E797B623C27CE0EAC2F551A10C2C724D9852077B87"
        "220B6536C5C408A1D2AEBB8E86D678AE49CB57091F4732296579AB44FCD17F0FC56A",
        "01144C7D79AE6956BC8EDB8E7C787C4521CB086FA64407F97894E5E6B2D79B04"
        "D1427E73CA4BAA240A34786859810C06B3C715A3A8CC3151F2BEE417996D19F3DDEA",
    ),
}


@pytest.mark.parametrize("group_id", list(RFC5903))
def test_ecp_rfc5903_vectors(group_id: int) -> None:
    """RFC 5903 §8: KE data is g^x || g^y (§7), the shared secret is x of g^ir only."""
    i, gix, giy, r, grx, gry, girx = (h(v) for v in RFC5903[group_id])
    group = crypto.get_dh_group(group_id)
    initiator, responder = group.load_private(i), group.load_private(r)
    assert initiator.public == gix + giy
    assert responder.public == grx + gry
    assert len(initiator.public) == group.public_size
    assert initiator.exchange(responder.public) == girx
    assert responder.exchange(initiator.public) == girx


@pytest.mark.parametrize("group_id", list(RFC5903))
def test_ecp_rejects_points_off_the_curve(group_id: int) -> None:
    _, gix, giy, r, *_ = (h(v) for v in RFC5903[group_id])
    ours = crypto.get_dh_group(group_id).load_private(r)
    bad_y = giy[:-1] + bytes([giy[-1] ^ 1])
    for bad in (gix + bad_y, bytes(len(gix) * 2), gix + giy + b"\x00", gix):
        with pytest.raises(crypto.InvalidPublicKey):
            ours.exchange(bad)


# --- Curve25519 / Curve448: RFC 7748 §5.2, §6.1, §6.2; RFC 8031 -------------------------

RFC7748_52 = [
    ("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
     "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
     "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"),
    ("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
     "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
     "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"),
    # the iterated test after one iteration: k = u = 9
    ("0900000000000000000000000000000000000000000000000000000000000000",
     "0900000000000000000000000000000000000000000000000000000000000000",
     "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"),
]


@pytest.mark.parametrize("scalar, u, out", RFC7748_52)
def test_x25519_rfc7748_function_vectors(scalar: str, u: str, out: str) -> None:
    """RFC 7748 §5.2, including a u-coordinate with the top bit set (masked, §5)."""
    ours = crypto.get_dh_group(Dh.CURVE_25519).load_private(h(scalar))
    assert ours.exchange(h(u)) == h(out)


def test_x25519_rfc7748_6_1_key_agreement() -> None:
    group = crypto.get_dh_group(Dh.CURVE_25519)
    alice = group.load_private(
        h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
    bob = group.load_private(
        h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"))
    assert alice.public == h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    assert bob.public == h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    shared = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    assert alice.exchange(bob.public) == shared
    assert bob.exchange(alice.public) == shared


def test_x448_rfc7748_6_2_key_agreement() -> None:
    group = crypto.get_dh_group(Dh.CURVE_448)
    alice = group.load_private(h(
        "9a8f4925d1519f5775cf46b04b5800d4ee9ee8bae8bc5565d498c28dd9c9baf5"
        "74a9419744897391006382a6f127ab1d9ac2d8c0a598726b"))
    bob_public = h(
        "3eb7a829b0cd20f5bcfc0b599b6feccf6da4627107bdb0d4f345b43027d8b972"
        "fc3e34fb4232a13ca706dcb57aec3dae07bdc1c67bf33609")
    assert alice.public == h(
        "9b08f7cc31b7e3e67d22d5aea121074a273bd2b83de09c63faa73d2c22c5d9bb"
        "c836647241d953d40c5b12da88120d53177f80e532c41fa0")
    assert alice.exchange(bob_public) == h(
        "07fff4181ac6cc95ec1c16a94a0f74d12da232ce40a77552281d282bb60c0b56"
        "fd2464c335543936521c24403085d59a449a5037514a879d")


@pytest.mark.parametrize("group_id, size", [(Dh.CURVE_25519, 32), (Dh.CURVE_448, 56)])
def test_montgomery_low_order_points_are_refused(group_id: int, size: int) -> None:
    """RFC 8031 §2.3 (and RFC 7748 §6): u = 0 and u = 1 give an all-zero secret."""
    ours = crypto.get_dh_group(group_id).generate()
    for u in (0, 1):
        with pytest.raises(crypto.InvalidPublicKey):
            ours.exchange(u.to_bytes(size, "little"))
    with pytest.raises(crypto.InvalidPublicKey):
        ours.exchange(bytes(size - 1) + b"\x09" + b"\x00")  # wrong length


# --- MODP: RFC 3526, RFC 2409 §6.2; RFC 7296 §2.14 ------------------------------------

MODP_SIZES = {Dh.MODP_1024: 128, Dh.MODP_1536: 192, Dh.MODP_2048: 256, Dh.MODP_3072: 384,
              Dh.MODP_4096: 512}


@pytest.mark.parametrize("group_id", list(MODP_SIZES))
def test_modp_primes_are_safe_primes_of_the_right_size(group_id: int) -> None:
    """A mistyped digit in an RFC 3526 / RFC 2409 prime would almost surely break this:
    p and (p-1)/2 both pass a Fermat test, and p has the RFCs' all-ones top and tail."""
    p = crypto.get_dh_group(group_id).p  # type: ignore[attr-defined]
    q = (p - 1) // 2
    assert p.bit_length() == MODP_SIZES[group_id] * 8
    assert p >> (p.bit_length() - 64) == 2**64 - 1 and p % 2**64 == 2**64 - 1
    for base in (2, 3):
        assert pow(base, p - 1, p) == 1
        assert pow(base, q - 1, q) == 1


@pytest.mark.parametrize("group_id", list(MODP_SIZES))
def test_modp_round_trip(group_id: int) -> None:
    group = crypto.get_dh_group(group_id)
    a, b = group.generate(), group.generate()
    assert len(a.public) == len(b.public) == group.public_size == MODP_SIZES[group_id]
    shared = a.exchange(b.public)
    assert shared == b.exchange(a.public)
    assert len(shared) == group.public_size


def test_modp_matches_plain_modular_exponentiation_and_keeps_leading_zeros() -> None:
    """g^ir computed independently with pow(); RFC 7296 §2.14 wants it padded to the
    prime's length. A peer value whose result starts with a zero octet is searched."""
    group = crypto.get_dh_group(Dh.MODP_1024)
    p, ours = group.p, group.generate()  # type: ignore[attr-defined]
    x = ours._key.private_numbers().x  # type: ignore[attr-defined]
    assert ours.public == pow(2, x, p).to_bytes(128, "big")
    # Peer values 4^j lie in the prime-order subgroup like any honest peer's g^r, and
    # their secrets (4^x)^j come one multiplication apart; about 1 in 256 is short.
    y, step = 4, pow(4, x, p)
    secret = step
    for _ in range(100_000):
        if secret < 1 << (8 * 127):
            break
        y, secret = y * 4 % p, secret * step % p
    else:
        pytest.fail("no short shared secret found")
    shared = ours.exchange(y.to_bytes(128, "big"))
    assert shared[0] == 0 and shared == pow(y, x, p).to_bytes(128, "big")


@pytest.mark.parametrize("group_id", [Dh.MODP_1024, Dh.MODP_2048])
def test_modp_rejects_trivial_and_out_of_range_values(group_id: int) -> None:
    """RFC 6989 §2.1: 1 < y < p-1."""
    group = crypto.get_dh_group(group_id)
    p, size, ours = group.p, group.public_size, group.generate()  # type: ignore[attr-defined]
    for y in (0, 1, p - 1, p, p + 1, 2**(8 * size) - 1):
        with pytest.raises(crypto.InvalidPublicKey):
            ours.exchange(y.to_bytes(size, "big"))
    with pytest.raises(crypto.InvalidPublicKey):
        ours.exchange(ours.public[1:])  # short KE data


def test_modp_emits_no_deprecation_warning() -> None:
    """cryptography 50 warns that FFDH is deprecated; that notice stays out of logs."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        group = crypto.get_dh_group(Dh.MODP_2048)
        a, b = group.generate(), group.generate()
        assert a.exchange(b.public) == b.exchange(a.public)


def test_modp_has_no_load_private() -> None:
    with pytest.raises(NotImplementedError):
        crypto.get_dh_group(Dh.MODP_2048).load_private(b"\x05")
