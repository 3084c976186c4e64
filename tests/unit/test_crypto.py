"""Published vectors for every transform, each named by its source."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from firmware.ike import crypto
from firmware.ike.constants import Dh, Encr, Integ, Prf

H = bytes.fromhex


# --- RFC 4231 §4 (HMAC-SHA2) and RFC 4868 §2.7 (PRF and truncated AUTH) ----------------

@pytest.mark.parametrize("key, data, prf_id, expected", [
    (b"\x0b" * 20, b"Hi There", Prf.HMAC_SHA2_256,
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?", Prf.HMAC_SHA2_256,
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\x0b" * 20, b"Hi There", Prf.HMAC_SHA2_512,
     "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
     "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"),
], ids=["4231-tc1-sha256", "4231-tc2-sha256", "4231-tc1-sha512"])
def test_rfc4231_prf(key, data, prf_id, expected):
    assert crypto.get_prf(prf_id)(key, data).hex() == expected


def test_rfc4231_test_case_5_truncation_is_the_auth_transform():
    integ = crypto.get_integ(Integ.HMAC_SHA2_256_128)
    assert integ.compute(b"\x0c" * 20, b"Test With Truncation").hex() == \
        "a3b6167473100ee06e0c796c2955552b"
    assert integ.icv_size == 16 and integ.key_size == 32


@pytest.mark.parametrize("integ_id, key_size, icv_size", [
    (Integ.HMAC_SHA1_96, 20, 12), (Integ.HMAC_SHA2_256_128, 32, 16),
    (Integ.HMAC_SHA2_384_192, 48, 24), (Integ.HMAC_SHA2_512_256, 64, 32),
])
def test_rfc4868_key_and_icv_sizes(integ_id, key_size, icv_size):
    integ = crypto.get_integ(integ_id)
    assert (integ.key_size, integ.icv_size) == (key_size, icv_size)
    key = bytes(range(key_size))
    full = hmac.new(key, b"data", integ.hash_name).digest()
    assert integ.compute(key, b"data") == full[:icv_size]


def test_prf_plus_follows_rfc7296_section_2_13():
    prf = crypto.get_prf(Prf.HMAC_SHA2_256)
    key, seed = b"k" * 32, b"seed"
    t1 = hmac.new(key, seed + b"\x01", hashlib.sha256).digest()
    t2 = hmac.new(key, t1 + seed + b"\x02", hashlib.sha256).digest()
    t3 = hmac.new(key, t2 + seed + b"\x03", hashlib.sha256).digest()
    assert prf.plus(key, seed, 80) == (t1 + t2 + t3)[:80]


# --- Diffie-Hellman ------------------------------------------------------------------

def test_rfc7748_section_6_1_x25519():
    alice = x25519.X25519PrivateKey.from_private_bytes(
        H("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
    bob_public = H("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    group = crypto.get_dh_group(Dh.CURVE_25519)
    private = group.generate()
    private._key = alice  # the published private key instead of a random one
    private.public = alice.public_key().public_bytes_raw()
    assert private.public.hex() == \
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    assert private.exchange(bob_public).hex() == \
        "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"


def test_rfc5903_section_8_1_ecp256():
    i = int("C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433", 16)
    gr = H("D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63"
           "56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB")
    group = crypto.get_dh_group(Dh.ECP_256)
    private = group.generate()
    private._key = ec.derive_private_key(i, ec.SECP256R1())
    numbers = private._key.public_key().public_numbers()
    assert numbers.x.to_bytes(32, "big").hex().upper() == \
        "DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180"
    assert private.exchange(gr).hex().upper() == \
        "D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE"


@pytest.mark.parametrize("group_id", [Dh.MODP_2048, Dh.ECP_384, Dh.ECP_521, Dh.CURVE_25519,
                                      Dh.CURVE_448, Dh.MODP_1024])
def test_both_sides_agree(group_id):
    group = crypto.get_dh_group(group_id)
    a, b = group.generate(), group.generate()
    assert len(a.public) == group.public_size
    assert a.exchange(b.public) == b.exchange(a.public)


@pytest.mark.parametrize("group_id, bad", [
    (Dh.MODP_2048, bytes(256)),
    (Dh.MODP_2048, b"\x00" * 255 + b"\x01"),
    (Dh.ECP_256, bytes(64)),
    (Dh.ECP_256, b"\x01" * 64),
    (Dh.CURVE_25519, bytes(32)),
    (Dh.CURVE_25519, bytes(31)),
])
def test_invalid_public_values_are_refused(group_id, bad):
    with pytest.raises(crypto.InvalidPublicKey):
        crypto.get_dh_group(group_id).generate().exchange(bad)


@pytest.mark.parametrize("refused", [Dh.MODP_768, 999])
def test_weak_or_unknown_groups_are_refused(refused):
    with pytest.raises(crypto.UnsupportedTransform):
        crypto.get_dh_group(refused)


# --- encryption ------------------------------------------------------------------------

def test_gcm_spec_test_case_4_as_rfc5282_salt_and_iv():
    key = H("feffe9928665731c6d6a8f9467308308") + H("cafebabe")  # key || salt
    iv = H("facedbaddecaf888")
    plain = H("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
              "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39")
    aad = H("feedfacedeadbeeffeedfacedeadbeefabaddad2")
    cipher = crypto.get_cipher(Encr.AES_GCM_16, 128)
    out = cipher.encrypt(key, iv, plain, aad)
    assert out[:16].hex() == "42831ec2217774244b7221b784d0d49c"
    assert out[-16:].hex() == "5bc94fbc3221a5db94fae95ae7121a47"
    assert cipher.decrypt(key, iv, out, aad) == plain


def test_rfc7539_section_2_8_2_chacha20_poly1305():
    key = bytes(range(0x80, 0xA0)) + H("07000000")  # key || salt (first nonce word)
    iv = H("4041424344454647")
    aad = H("50515253c0c1c2c3c4c5c6c7")
    plain = (b"Ladies and Gentlemen of the class of '99: If I could offer you only "
             b"one tip for the future, sunscreen would be it.")
    cipher = crypto.get_cipher(Encr.CHACHA20_POLY1305, None)
    out = cipher.encrypt(key, iv, plain, aad)
    assert out[:16].hex() == "d31a8d34648e60db7b86afbc53ef7ec2"
    assert out[-16:].hex() == "1ae10b594f09e26a7e902ecbd0600691"


@pytest.mark.parametrize("encr, bits", [(Encr.AES_GCM_16, 256), (Encr.AES_GCM_12, 128),
                                        (Encr.AES_GCM_8, 128), (Encr.CHACHA20_POLY1305, None)])
def test_aead_flipped_bit_is_an_integrity_error(encr, bits):
    cipher = crypto.get_cipher(encr, bits)
    key = bytes(cipher.key_size)
    out = bytearray(cipher.encrypt(key, bytes(8), b"payload", b"aad"))
    out[0] ^= 1
    with pytest.raises(crypto.IntegrityError):
        cipher.decrypt(key, bytes(8), bytes(out), b"aad")


def test_cbc_round_trip_and_sizes():
    cipher = crypto.get_cipher(Encr.AES_CBC, 256)
    assert (cipher.key_size, cipher.iv_size, cipher.block_size) == (32, 16, 16)
    data = bytes(range(32))
    assert cipher.decrypt(bytes(32), bytes(16), cipher.encrypt(bytes(32), bytes(16), data)) \
        == data


@pytest.mark.parametrize("encr, bits", [(Encr.DES, None), (Encr.TRIPLE_DES, None),
                                        (Encr.NULL, None), (Encr.AES_CBC, 64)])
def test_broken_ciphers_are_refused(encr, bits):
    with pytest.raises(crypto.UnsupportedTransform):
        crypto.get_cipher(encr, bits)


def test_md5_is_refused():
    with pytest.raises(crypto.UnsupportedTransform):
        crypto.get_prf(Prf.HMAC_MD5)
    with pytest.raises(crypto.UnsupportedTransform):
        crypto.get_integ(Integ.HMAC_MD5_96)


def test_kernel_names():
    assert crypto.esp_kernel_name(crypto.get_cipher(Encr.AES_GCM_16, 256)) == \
        "rfc4106(gcm(aes))"
    assert crypto.esp_kernel_name(crypto.get_cipher(Encr.CHACHA20_POLY1305, None)) == \
        "rfc7539esp(chacha20,poly1305)"
    assert crypto.esp_auth_kernel_name(crypto.get_integ(Integ.HMAC_SHA2_384_192)) == \
        "hmac(sha384)"
