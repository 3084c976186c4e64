"""The box's own CA and server certificate.

Native IKEv2 clients (Windows, macOS/iOS, Android, strongSwan) check that the server
certificate names the address they dialled in a subjectAltName and carries the
serverAuth and ikeIntermediate EKUs; Windows also wants an IP address written as a DNS
name. Keys are written 0600 and never logged.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

log = logging.getLogger("ikebox.pki")

IKE_INTERMEDIATE = ObjectIdentifier("1.3.6.1.5.5.8.2.2")
WEB_GROUP = "ikebox"  # the web UI's group; it may read state_dir/web
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class ServerCredentials:
    key: PrivateKey = field(repr=False)
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # the server certificate first, then the CA

    @property
    def chain_der(self) -> tuple[bytes, ...]:
        return tuple(c.public_bytes(serialization.Encoding.DER) for c in self.chain)

    @property
    def fingerprint(self) -> str:
        return self.cert.fingerprint(hashes.SHA256()).hex(":")


def _new_key(key_type: str) -> PrivateKey:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    if key_type == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"key type {key_type!r}: use 'ecdsa' or 'rsa'")


def _write_private(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _write_public(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def san_entries(names: list[str]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            entries.append(x509.DNSName(name))
            continue
        entries.append(x509.IPAddress(ip))
        entries.append(x509.DNSName(str(ip)))  # Windows matches an IP against DNS SANs
    return entries


def make_ca(common_name: str, key_type: str) -> tuple[PrivateKey, x509.Certificate]:
    key = _new_key(key_type)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ikebox")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                         False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_server_cert(ca_key: PrivateKey, ca_cert: x509.Certificate, names: list[str],
                     key_type: str) -> tuple[PrivateKey, x509.Certificate]:
    key = _new_key(key_type)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName(san_entries(names)), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  IKE_INTERMEDIATE]), critical=False)
            .add_extension(x509.KeyUsage(True, False, True, False, False, False, False,
                                         False, False), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


class Pki:
    """Files under state_dir/pki: ca.pem, ca.key, server.pem, server.key."""

    def __init__(self, state_dir: str, key_type: str = "ecdsa") -> None:
        self.dir = os.path.join(state_dir, "pki")
        self.web_dir = os.path.join(state_dir, "web")
        self.key_type = key_type

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def ensure(self, names: list[str]) -> ServerCredentials:
        """Loads the credentials, creating the CA and server certificate if missing."""
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        if not os.path.exists(self.path("ca.key")):
            log.info("creating the box's certificate authority in %s", self.dir)
            ca_key, ca_cert = make_ca(f"ikebox CA {names[0]}", self.key_type)
            _write_private(self.path("ca.key"), _pem_key(ca_key))
            _write_public(self.path("ca.pem"), ca_cert.public_bytes(serialization.Encoding.PEM))
        if not os.path.exists(self.path("server.key")):
            return self.regenerate(names)
        return self.load()

    def regenerate(self, names: list[str]) -> ServerCredentials:
        ca_key, ca_cert = self._load_ca()
        key, cert = make_server_cert(ca_key, ca_cert, names, self.key_type)
        _write_private(self.path("server.key"), _pem_key(key))
        _write_public(self.path("server.pem"), cert.public_bytes(serialization.Encoding.PEM))
        log.info("issued the server certificate for %s", ", ".join(names))
        self._issue_web_certificate(ca_key, ca_cert, names)
        return self.load()

    def _issue_web_certificate(self, ca_key: PrivateKey, ca_cert: x509.Certificate,
                               names: list[str]) -> None:
        """A certificate of its own for the web page, from the same CA.

        The web UI runs unprivileged; giving it the IKE key would let a flaw in the
        page leak the key that proves the VPN. Its own key, in a directory the
        `ikebox` group may read, keeps the two apart while browsers that trust the
        box's CA trust both.
        """
        os.makedirs(self.web_dir, mode=0o750, exist_ok=True)
        gid = _group_id(WEB_GROUP)
        key, cert = make_server_cert(ca_key, ca_cert, names, "ecdsa")
        key_path = os.path.join(self.web_dir, "web.key")
        _write_private(key_path, _pem_key(key))
        _write_public(os.path.join(self.web_dir, "web.pem"),
                      cert.public_bytes(serialization.Encoding.PEM) +
                      ca_cert.public_bytes(serialization.Encoding.PEM))
        if gid is not None:
            os.chown(self.web_dir, -1, gid)
            os.chmod(self.web_dir, 0o750)
            os.chown(key_path, -1, gid)
            os.chmod(key_path, 0o640)

    def _load_ca(self) -> tuple[PrivateKey, x509.Certificate]:
        with open(self.path("ca.key"), "rb") as fh:
            ca_key = serialization.load_pem_private_key(fh.read(), None)
        with open(self.path("ca.pem"), "rb") as fh:
            ca_cert = x509.load_pem_x509_certificate(fh.read())
        return ca_key, ca_cert  # type: ignore[return-value]

    def load(self) -> ServerCredentials:
        with open(self.path("server.key"), "rb") as fh:
            key = serialization.load_pem_private_key(fh.read(), None)
        with open(self.path("server.pem"), "rb") as fh:
            cert = x509.load_pem_x509_certificate(fh.read())
        _ca_key, ca_cert = self._load_ca()
        return ServerCredentials(key, cert, (cert, ca_cert))  # type: ignore[arg-type]

    def ca_pem(self) -> str:
        with open(self.path("ca.pem")) as fh:
            return fh.read()


def _group_id(name: str) -> int | None:
    import grp
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def _pem_key(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
