"""Status, users, failures, settings and the CA download, each through the control
socket of a stand-in daemon that validates like the real one."""

from __future__ import annotations

import json
import time

from cryptography import x509

from .conftest import VPN_PASSWORD, audit_lines


def test_status_shows_wan_ports_uptime_leds_and_sessions(admin, daemon):
    daemon.add_session("alice", remote="198.51.100.7:4500", natt=True)
    page = admin.get("/").get_data(as_text=True)
    assert "192.0.2.10" in page
    assert "UDP 500" in page and "UDP 4500" in page and "not listening" not in page
    assert 'data-led="power" data-state="on"' in page
    assert 'data-led="tunnel" data-state="on"' in page
    assert 'data-led="alert" data-state="off"' in page
    for text in ("alice", "198.51.100.7:4500", "NAT-T", "10.99.0.2",
                 "AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519", "1m 15s",
                 "120.6 KiB", "639.0 KiB"):
        assert text in page, text
    assert 'src="/static/ikebox.js"' in page


def test_live_fragment_follows_the_daemon(admin, daemon):
    frag = admin.get("/status/live")
    assert frag.status_code == 200 and "<html" not in frag.get_data(as_text=True)
    assert "No client is connected" in frag.get_data(as_text=True)
    daemon.add_session("carol")
    frag = admin.get("/status/live").get_data(as_text=True)
    assert 'data-user="carol"' in frag and 'id="session-count">1<' in frag


def test_disconnect_button_ends_the_session(admin, daemon, state_dir):
    s = daemon.add_session("alice")
    daemon.add_session("bob")
    r = admin.form("/sessions/disconnect", {"session": s["id"], "user": "alice"},
                   token_from="/")
    assert r.status_code == 302
    assert [x["user"] for x in daemon.sessions] == ["bob"]
    assert "Disconnected alice" in admin.get("/").get_data(as_text=True)
    assert audit_lines(state_dir)[-1]["action"] == "disconnect"
    # A session that went away meanwhile: the daemon's reason, nothing else happens.
    r = admin.form("/sessions/disconnect", {"session": s["id"]}, token_from="/",
                   follow_redirects=True)
    assert "no such session" in r.get_data(as_text=True)
    assert [x["user"] for x in daemon.sessions] == ["bob"]


def test_recent_failure_blinks_the_alert_led_and_is_listed(admin, daemon):
    daemon.failures.insert(0, {"time": time.time(), "peer": "198.51.100.9:500",
                               "user": "mallory", "class": "auth", "step": "EAP",
                               "reason": "the password of mallory is wrong"})
    page = admin.get("/").get_data(as_text=True)
    assert 'data-led="alert" data-state="blink"' in page
    page = admin.get("/failures").get_data(as_text=True)
    for text in ("198.51.100.9:500", "mallory", "EAP", "the password of mallory is wrong"):
        assert text in page


def test_users_add_disable_enable_reset_delete(admin, daemon, state_dir):
    r = admin.form("/users/add", {"name": "bob", "password": VPN_PASSWORD,
                                  "confirm": VPN_PASSWORD, "enabled": "1"})
    assert r.status_code == 302 and daemon.users.get("bob").enabled
    page = admin.get("/users").get_data(as_text=True)
    assert 'data-user="bob"' in page and "mschapv2" in page

    admin.form("/users/disable", {"name": "bob"}, token_from="/users")
    assert daemon.users.get("bob").enabled is False
    assert "Enable" in admin.get("/users").get_data(as_text=True)
    admin.form("/users/enable", {"name": "bob"}, token_from="/users")
    assert daemon.users.get("bob").enabled is True

    old_hash = daemon.users.get("bob").nt_hash
    admin.form("/users/password", {"name": "bob", "password": "another-Secret-99"},
               token_from="/users")
    assert daemon.users.get("bob").nt_hash != old_hash

    admin.form("/users/delete", {"name": "bob"}, token_from="/users")
    assert daemon.users.get("bob") is None
    actions = [(a["action"], a["target"]) for a in audit_lines(state_dir)]
    for action in ("user_add", "user_disable", "user_enable", "user_password", "user_del"):
        assert (action, "bob") in actions


def test_user_refusals_show_the_daemons_reason(admin, daemon):
    r = admin.form("/users/add", {"name": "alice", "password": VPN_PASSWORD,
                                  "confirm": VPN_PASSWORD}, follow_redirects=True)
    assert "user alice already exists" in r.get_data(as_text=True)
    r = admin.form("/users/add", {"name": "bad name", "password": VPN_PASSWORD,
                                  "confirm": VPN_PASSWORD}, follow_redirects=True)
    assert "must not contain spaces" in r.get_data(as_text=True)
    assert daemon.users.get("bad name") is None
    r = admin.form("/users/delete", {"name": "ghost"}, follow_redirects=True,
                   token_from="/users")
    assert "no such user: ghost" in r.get_data(as_text=True)
    r = admin.form("/users/add", {"name": "dave", "password": VPN_PASSWORD,
                                  "confirm": "typo"}, follow_redirects=True)
    assert "differ" in r.get_data(as_text=True) and daemon.users.get("dave") is None


def test_settings_are_applied_by_the_daemon(admin, daemon, state_dir):
    page = admin.get("/settings").get_data(as_text=True)
    assert 'value="10.77.0.0/24"' in page
    r = admin.form("/settings", {"proposals": "legacy-windows", "pool": "10.88.0.0/24",
                                 "dns": "10.1.0.53", "lan": "10.1.0.0/16 10.2.0.0/16"})
    assert r.status_code == 302
    assert daemon.cfg["ike"]["proposals"] == "legacy-windows"
    assert daemon.cfg["pool"]["ipv4"] == "10.88.0.0/24"
    assert daemon.cfg["lan"]["subnets"] == ["10.1.0.0/16", "10.2.0.0/16"]
    assert daemon.cfg["lan"]["nat"] is False  # the box left unchecked
    assert audit_lines(state_dir)[-1]["action"] == "config_set"


def test_settings_refusal_changes_nothing(admin, daemon, state_dir):
    before = json.dumps(daemon.cfg, sort_keys=True)
    r = admin.form("/settings", {"proposals": "secure", "pool": "10.1.0.0/24",
                                 "dns": "", "lan": "10.1.0.0/16", "nat": "1"})
    page = r.get_data(as_text=True)
    assert r.status_code == 400
    assert "lan.subnets: 10.1.0.0/16 overlaps the client pool 10.1.0.0/24" in page
    assert json.dumps(daemon.cfg, sort_keys=True) == before
    r = admin.form("/settings", {"proposals": "weak", "pool": "10.77.0.0/24",
                                 "dns": "", "lan": "10.1.0.0/16"}, token_from="/settings")
    assert r.status_code == 400 and "ike.proposals" in r.get_data(as_text=True)
    assert json.dumps(daemon.cfg, sort_keys=True) == before
    assert audit_lines(state_dir)[-1]["result"] == "refused"


def test_certificate_regeneration(admin, daemon):
    r = admin.form("/settings/certificate", {"names": "vpn.example.net 203.0.113.5"},
                   token_from="/settings", follow_redirects=True)
    assert "New server certificate" in r.get_data(as_text=True)
    assert daemon.cert_names == ["vpn.example.net", "203.0.113.5"]
    r = admin.form("/settings/certificate", {"names": "ok.example " + "a" * 254},
                   token_from="/settings", follow_redirects=True)
    assert "is not a host name or address" in r.get_data(as_text=True)
    assert daemon.cert_names == ["vpn.example.net", "203.0.113.5"]


def test_ca_download_in_pem_and_der(admin, daemon):
    pem = admin.get("/ca.pem")
    assert pem.status_code == 200 and "attachment" in pem.headers["Content-Disposition"]
    ca = x509.load_pem_x509_certificate(pem.data)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    der = admin.get("/ca.crt")
    assert x509.load_der_x509_certificate(der.data) == ca
    assert admin.get("/ca.key").status_code == 404


def test_account_password_change(admin, state_dir, make_app):
    r = admin.form("/account", {"current": "wrong-one-123", "password": "new-Passw0rd-9",
                                "confirm": "new-Passw0rd-9"})
    assert r.status_code == 400
    r = admin.form("/account", {"current": "admin-Passw0rd-long",
                                "password": "new-Passw0rd-9", "confirm": "new-Passw0rd-9"})
    assert r.status_code == 302
    other = make_app().test_client()
    assert other.form("/login", {"password": "new-Passw0rd-9"}).status_code == 302
