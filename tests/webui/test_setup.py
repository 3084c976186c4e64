"""The first-boot wizard against a control socket that validates like the daemon."""

from __future__ import annotations

import json
import os
import stat

from argon2 import PasswordHasher
from cryptography import x509

from .conftest import ADMIN_PASSWORD, VPN_PASSWORD, audit_lines, run_wizard


def test_fresh_box_leads_every_page_to_the_password_step(client):
    for path in ("/", "/users", "/settings", "/failures", "/setup"):
        r = client.get(path, follow_redirects=True)
        assert r.request.path == "/setup/password", path
    assert "no default password" in client.get("/setup/password").get_data(as_text=True)


def test_wizard_applies_everything_through_the_daemon(client, daemon, state_dir):
    r = run_wizard(client)
    assert r.status_code == 302 and r.headers["Location"] == "/"
    assert daemon.cfg["box"]["identity"] == "vpn.example.net"
    assert daemon.cfg["pool"]["ipv4"] == "10.77.0.0/24"
    assert daemon.cfg["pool"]["dns"] == ["10.1.0.53", "10.1.0.54"]
    assert daemon.cfg["lan"]["subnets"] == ["10.1.0.0/16"]
    assert daemon.users.get("alice") is not None
    assert ("cert_regenerate", {"names": ["vpn.example.net"]}) in daemon.commands
    cert = x509.load_pem_x509_certificate(open(daemon.pki.path("server.pem"), "rb").read())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "vpn.example.net" in san.get_values_for_type(x509.DNSName)
    page = client.get("/").get_data(as_text=True)
    assert "Setup complete" in page and "ikebox-ca.pem" in page
    actions = [line["action"] for line in audit_lines(state_dir)]
    assert actions == ["admin_password_set", "setup"]


def test_admin_password_is_argon2id_in_a_private_file(client, state_dir):
    run_wizard(client)
    path = os.path.join(state_dir, "admin.json")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    stored = json.load(open(path))["password_hash"]
    assert stored.startswith("$argon2id$")
    assert PasswordHasher().verify(stored, ADMIN_PASSWORD)
    assert stat.S_IMODE(os.stat(os.path.join(state_dir, "secret_key")).st_mode) == 0o600


def test_wizard_is_gone_after_setup(admin):
    for path in ("/setup", "/setup/password", "/setup/box"):
        assert admin.get(path).status_code == 404, path
    r = admin.post("/setup/password", data={"csrf_token": admin.token("/users"),
                                            "password": "x" * 12, "confirm": "x" * 12})
    assert r.status_code == 404


def test_short_or_mismatched_admin_password_is_refused(client, state_dir):
    r = client.form("/setup/password", {"password": "short", "confirm": "short"})
    assert r.status_code == 400 and "at least 10" in r.get_data(as_text=True)
    r = client.form("/setup/password", {"password": "long-enough-1", "confirm": "other-one-22"})
    assert r.status_code == 400 and "differ" in r.get_data(as_text=True)
    assert not os.path.exists(os.path.join(state_dir, "admin.json"))


def test_bad_pool_shows_the_daemons_reason_and_changes_nothing(client, daemon):
    before = json.dumps(daemon.cfg, sort_keys=True)
    r = run_wizard(client, pool="10.77.0.0/33")
    page = r.get_data(as_text=True)
    assert r.status_code == 400
    assert "pool.ipv4" in page and "is not an IPv4 network" in page
    assert json.dumps(daemon.cfg, sort_keys=True) == before
    assert daemon.users.get("alice") is None
    # The form comes back with what was typed, but never a password.
    assert "10.77.0.0/33" in page and VPN_PASSWORD not in page
    assert client.get("/setup/box").status_code == 200  # the wizard is still open


def test_refused_user_undoes_the_config_change(client, daemon):
    before = json.dumps(daemon.cfg, sort_keys=True)
    r = run_wizard(client, user="bad name")
    assert r.status_code == 400
    assert "must not contain spaces" in r.get_data(as_text=True)
    assert json.dumps(daemon.cfg, sort_keys=True) == before
    assert daemon.users.list() == []


def test_refused_certificate_name_undoes_user_and_config(client, daemon):
    before = json.dumps(daemon.cfg, sort_keys=True)
    # config_set and cert_regenerate share the identity rule, so only a failure of
    # the daemon itself makes the last step fail after the others went through.
    original = daemon.cmd_cert_regenerate

    def refuse(names=None):  # noqa: ANN001, ANN202
        from firmware.control import ControlError
        raise ControlError("cannot write the certificate: disk full")
    daemon.cmd_cert_regenerate = refuse
    try:
        r = run_wizard(client)
    finally:
        daemon.cmd_cert_regenerate = original
    assert r.status_code == 400 and "disk full" in r.get_data(as_text=True)
    assert json.dumps(daemon.cfg, sort_keys=True) == before
    assert daemon.users.list() == []


def test_mismatched_vpn_password_is_refused_before_the_daemon(client, daemon):
    r = run_wizard(client, user_confirm="something-else")
    assert r.status_code == 400 and "differ" in r.get_data(as_text=True)
    assert not [c for c, _ in daemon.commands if c in ("config_set", "user_add")]


def test_preseeded_admin_skips_the_password_step(make_app, state_dir, daemon):
    os.makedirs(state_dir, exist_ok=True)
    with open(os.path.join(state_dir, "admin.json"), "w") as fh:
        json.dump({"password_hash": PasswordHasher().hash("seeded-Passw0rd")}, fh)
    client = make_app().test_client()
    r = client.get("/setup", follow_redirects=True)
    assert r.request.path == "/login"
    assert client.get("/setup/password", follow_redirects=True).request.path == "/login"
    assert client.get("/setup/box", follow_redirects=True).request.path == "/login"
    r = client.form("/login", {"password": "seeded-Passw0rd", "next": "/setup/box"},
                    token_from="/login")
    assert r.headers["Location"] == "/setup/box"
    r = client.form("/setup/box", {"identity": "203.0.113.9", "pool": "10.77.0.0/24",
                                   "dns": "", "lan": "0.0.0.0/0", "user": "bob",
                                   "user_password": VPN_PASSWORD,
                                   "user_confirm": VPN_PASSWORD})
    assert r.status_code == 302
    assert daemon.cfg["box"]["identity"] == "203.0.113.9"
    assert daemon.users.get("bob") is not None
    # The seeded hash is still the password.
    assert PasswordHasher().verify(
        json.load(open(os.path.join(state_dir, "admin.json")))["password_hash"],
        "seeded-Passw0rd")


def test_second_visitor_cannot_replace_the_admin_password(make_app, client):
    client.form("/setup/password", {"password": ADMIN_PASSWORD, "confirm": ADMIN_PASSWORD})
    other = make_app().test_client()
    # Mid-wizard: the password is set, so the other visitor has to log in.
    assert other.get("/setup/password", follow_redirects=True).request.path == "/login"
    assert other.get("/setup/box", follow_redirects=True).request.path == "/login"
    assert other.form("/setup/password", {"password": "x" * 12, "confirm": "x" * 12},
                      token_from="/login").status_code == 302
    assert client.get("/setup/box").status_code == 200  # the first one still is in
    run_wizard_rest = client.form("/setup/box", {
        "identity": "vpn.example.net", "pool": "10.77.0.0/24", "dns": "", "lan": "0.0.0.0/0",
        "user": "alice", "user_password": VPN_PASSWORD, "user_confirm": VPN_PASSWORD})
    assert run_wizard_rest.status_code == 302
    assert other.get("/setup/password").status_code == 404


def test_seeded_users_make_the_wizards_user_optional(client, daemon):
    daemon.users.add("alice", VPN_PASSWORD)
    client.form("/setup/password", {"password": ADMIN_PASSWORD, "confirm": ADMIN_PASSWORD})
    page = client.get("/setup/box").get_data(as_text=True)
    assert "The box already has alice" in page
    r = client.form("/setup/box", {"identity": "vpn.example.net", "pool": "10.77.0.0/24",
                                   "dns": "", "lan": "10.1.0.0/16", "user": "",
                                   "user_password": "", "user_confirm": ""})
    assert r.status_code == 302, r.get_data(as_text=True)
    assert [u["name"] for u in daemon.users.list()] == ["alice"]
    assert "connect to vpn.example.net as one of the box" in \
        client.get("/").get_data(as_text=True)


def test_bare_box_still_needs_its_first_user(client, daemon):
    r = run_wizard(client, user="", user_password="", user_confirm="")
    assert r.status_code == 400
    assert "Enter a name for the first VPN user" in r.get_data(as_text=True)
