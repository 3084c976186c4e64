"""MS-CHAPv2 and MPPE key vectors from RFC 2759 §9.2 and RFC 3079 §3.5.3."""

from firmware.eap import mschap

# RFC 2759 §9.2
USER = b"User"
PASSWORD = "clientPass"
AUTH_CHALLENGE = bytes.fromhex("5B5D7C7D7B3F2F3E3C2C602132262628")
PEER_CHALLENGE = bytes.fromhex("21402324255E262A28295F2B3A337C7E")
CHALLENGE = bytes.fromhex("D02E4386BCE91226")
NT_HASH = bytes.fromhex("44EBBA8D5312B8D611474411F56989AE")
NT_HASH_HASH = bytes.fromhex("41C00C584BD2D91C4017A2A12FA59F3F")
NT_RESPONSE = bytes.fromhex("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")
AUTH_RESPONSE = "S=407A5589115FD0D6209F510FE9C04566932CDA56"

# RFC 3079 §3.5.3 (128-bit keys; same inputs as above)
MASTER_KEY = bytes.fromhex("FDECE3717A8C838CB388E527AE3CDD31")
SEND_START_KEY_128 = bytes.fromhex("8B7CDC149B993A1BA118CB153F56DCCB")


def test_rfc2759_nt_password_hash():
    assert mschap.nt_password_hash(PASSWORD) == NT_HASH
    assert mschap.hash_nt_password_hash(NT_HASH) == NT_HASH_HASH


def test_rfc2759_challenge_hash():
    assert mschap.challenge_hash(PEER_CHALLENGE, AUTH_CHALLENGE, USER) == CHALLENGE


def test_rfc2759_nt_response():
    assert mschap.challenge_response(CHALLENGE, NT_HASH) == NT_RESPONSE
    assert (
        mschap.generate_nt_response(AUTH_CHALLENGE, PEER_CHALLENGE, USER, NT_HASH)
        == NT_RESPONSE
    )


def test_rfc2759_authenticator_response():
    got = mschap.authenticator_response(
        NT_HASH, NT_RESPONSE, PEER_CHALLENGE, AUTH_CHALLENGE, USER
    )
    assert got == AUTH_RESPONSE


def test_rfc3079_master_key():
    assert mschap.master_key(NT_HASH, NT_RESPONSE) == MASTER_KEY


def test_rfc3079_server_send_key_128():
    # The RFC's example is GetAsymmetricStartKey(..., IsSend=TRUE, IsServer=TRUE).
    got = mschap.asymmetric_start_key(MASTER_KEY, 16, is_send=True, is_server=True)
    assert got == SEND_START_KEY_128


def test_rfc3079_keys_mirror_between_client_and_server():
    # No RFC vector for the receive key; it must equal the client's send key.
    server_recv = mschap.asymmetric_start_key(MASTER_KEY, 16, is_send=False, is_server=True)
    client_send = mschap.asymmetric_start_key(MASTER_KEY, 16, is_send=True, is_server=False)
    client_recv = mschap.asymmetric_start_key(MASTER_KEY, 16, is_send=False, is_server=False)
    assert server_recv == client_send
    assert client_recv == SEND_START_KEY_128
    assert server_recv != SEND_START_KEY_128


def test_msk_layout_is_strongswan_generate_msk():
    # strongSwan GenerateMSK: Magic2 key | Magic3 key | 32 zero bytes, on both sides.
    msk = mschap.msk(NT_HASH, NT_RESPONSE)
    assert len(msk) == 64
    server_recv = mschap.asymmetric_start_key(MASTER_KEY, 16, is_send=False, is_server=True)
    assert msk[:16] == server_recv
    assert msk[16:32] == SEND_START_KEY_128
    assert msk[32:] == bytes(32)


def test_user_part_strips_windows_domain():
    assert mschap.user_part(b"CORP\\alice") == b"alice"
    assert mschap.user_part(b"alice") == b"alice"
    assert mschap.user_part(b"a\\b\\c") == b"b\\c"


def test_des_key_expansion_drives_every_key_bit():
    # Flipping any one of the 56 key bits must change the DES output.
    base = mschap.challenge_response(CHALLENGE, NT_HASH)
    for bit in range(56):
        key = bytearray(NT_HASH)
        key[bit // 8] ^= 0x80 >> (bit % 8)
        assert mschap.challenge_response(CHALLENGE, bytes(key))[:8] != base[:8]
