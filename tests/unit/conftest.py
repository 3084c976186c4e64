"""Fixtures shared by the responder tests: the box's credentials, users, a responder."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization

from firmware.eap import EapServer
from firmware.ike.auth import Signer
from firmware.ike.policy import ResponderPolicy
from firmware.ike.responder import Responder
from firmware.pki import make_ca, make_server_cert
from firmware.pool import AddressPool
from firmware.users import UserStore

PSK = b"correct horse battery staple"


@pytest.fixture(scope="module")
def server_credentials():
    ca_key, ca_cert = make_ca("test CA", "ecdsa")
    key, cert = make_server_cert(ca_key, ca_cert, ["ikebox.test"], "ecdsa")
    return key, cert, ca_cert


@pytest.fixture
def users(tmp_path):
    store = UserStore(str(tmp_path / "users.json"))
    store.add("alice", "alice-password-1")
    store.add("mallory", "md5-password", allow_md5=True)
    return store


@pytest.fixture
def make_responder(server_credentials, users):
    key, cert, ca_cert = server_credentials
    chain = tuple(c.public_bytes(serialization.Encoding.DER) for c in (cert, ca_cert))

    def make(**kw) -> Responder:
        pool = kw.pop("pool", AddressPool("10.99.0.0/24"))
        policy = ResponderPolicy(
            identity="ikebox.test", signer=Signer(key), cert_chain=chain, psk=PSK,
            eap_factory=lambda identity: EapServer(users, identity=identity),
            user_exists=lambda name: users.get(name) is not None, pool=pool,
            dns=("198.51.100.53",), **kw)
        return Responder(policy)
    return make


