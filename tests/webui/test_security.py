"""The page's security properties: CSRF, sessions, cookies, rate limits, secrets,
the audit log and the behaviour when the daemon is away."""

from __future__ import annotations

import json
import os
import re

import pytest

from .conftest import ADMIN_PASSWORD, VPN_PASSWORD, audit_lines, run_wizard

ADMIN_GETS = ["/", "/status/live", "/users", "/failures", "/settings", "/account",
              "/ca.pem", "/ca.crt"]
ADMIN_POSTS = {"/sessions/disconnect": {"session": "s1"},
               "/users/add": {"name": "eve", "password": VPN_PASSWORD,
                              "confirm": VPN_PASSWORD},
               "/users/enable": {"name": "alice"}, "/users/disable": {"name": "alice"},
               "/users/delete": {"name": "alice"},
               "/users/password": {"name": "alice", "password": "x" * 12},
               "/settings": {"proposals": "legacy-windows", "pool": "10.5.0.0/24",
                             "dns": "", "lan": "0.0.0.0/0"},
               "/settings/certificate": {"names": "evil.example"},
               "/account": {"current": ADMIN_PASSWORD, "password": "x" * 12,
                            "confirm": "x" * 12}}


def _changes(daemon) -> list[str]:
    return [c for c, _ in daemon.commands
            if c in ("config_set", "user_add", "user_del", "user_set", "disconnect",
                     "cert_regenerate")]


def test_no_session_no_access(admin, make_app, daemon):
    daemon.add_session("alice")
    before = len(_changes(daemon))
    stranger = make_app().test_client()
    for path in ADMIN_GETS:
        r = stranger.get(path)
        assert r.status_code == 302 and r.headers["Location"].startswith("/login"), path
    # A stranger gets a token for its own session from the login page; still no entry.
    for path, data in ADMIN_POSTS.items():
        r = stranger.form(path, data, token_from="/login")
        assert r.status_code == 302 and r.headers["Location"].startswith("/login"), path
    assert len(_changes(daemon)) == before
    assert daemon.users.get("alice").enabled and len(daemon.sessions) == 1


def test_csrf_token_required_on_every_form(admin, daemon):
    daemon.add_session("alice")
    before = len(_changes(daemon))
    for path, data in ADMIN_POSTS.items():
        assert admin.post(path, data=data).status_code == 400, path
        bad = dict(data, csrf_token="forged." + admin.token()[7:])
        assert admin.post(path, data=bad).status_code == 400, path
    for path in ("/login", "/logout"):
        assert admin.post(path, data={"password": ADMIN_PASSWORD}).status_code == 400
    assert len(_changes(daemon)) == before
    assert daemon.users.get("eve") is None and len(daemon.sessions) == 1


def test_csrf_refuses_a_cross_site_referer(admin, daemon):
    r = admin.post("/users/add", headers={"Referer": "https://evil.example/"},
                   data={"csrf_token": admin.token(), "name": "eve",
                         "password": VPN_PASSWORD, "confirm": VPN_PASSWORD})
    assert r.status_code == 400 and daemon.users.get("eve") is None


def test_token_of_another_session_is_refused(admin, make_app, daemon):
    stranger = make_app().test_client()
    stolen = stranger.token()
    r = admin.post("/users/add", data={"csrf_token": stolen, "name": "eve",
                                       "password": VPN_PASSWORD, "confirm": VPN_PASSWORD})
    assert r.status_code == 400 and daemon.users.get("eve") is None


def test_session_cookie_flags(client):
    r = client.form("/setup/password", {"password": ADMIN_PASSWORD, "confirm": ADMIN_PASSWORD})
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("ikebox_session=")
    for flag in ("Secure", "HttpOnly", "SameSite=Strict"):
        assert flag in cookie


def test_security_headers(admin):
    r = admin.get("/")
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Cache-Control"] == "no-store"


def test_logout_ends_the_session(admin):
    admin.form("/logout", {})
    assert admin.get("/").headers["Location"].startswith("/login")


def test_login_next_stays_on_this_box(admin, make_app):
    other = make_app().test_client()
    for evil in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        r = other.form("/login", {"password": ADMIN_PASSWORD, "next": evil})
        assert r.headers["Location"] == "/", evil


def test_login_rate_limit_per_client(admin, make_app, state_dir):
    app = make_app(login_per_client=3, login_overall=100)
    guesser = app.test_client()
    guesser.environ_base["REMOTE_ADDR"] = "192.0.2.66"
    for _ in range(3):
        assert guesser.form("/login", {"password": "guess-123456"}).status_code == 401
    # Even the right password is refused while the limit holds.
    r = guesser.form("/login", {"password": ADMIN_PASSWORD})
    assert r.status_code == 429 and "Too many attempts" in r.get_data(as_text=True)
    owner = app.test_client()
    owner.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    assert owner.form("/login", {"password": ADMIN_PASSWORD}).status_code == 302
    results = [(a["action"], a["result"], a["client"]) for a in audit_lines(state_dir)]
    assert ("login", "failed", "192.0.2.66") in results
    assert ("login", "rate-limited", "192.0.2.66") in results


def test_login_rate_limit_global(admin, make_app):
    app = make_app(login_per_client=100, login_overall=4)
    for n in range(4):
        c = app.test_client()
        c.environ_base["REMOTE_ADDR"] = f"192.0.2.{100 + n}"
        assert c.form("/login", {"password": "guess-123456"}).status_code == 401
    fresh = app.test_client()
    fresh.environ_base["REMOTE_ADDR"] = "192.0.2.200"
    assert fresh.form("/login", {"password": ADMIN_PASSWORD}).status_code == 429


def test_no_password_or_hash_in_any_page_or_the_audit_log(admin, daemon, state_dir):
    daemon.add_session("alice")
    admin.form("/users/add", {"name": "bob", "password": "bob-Secret-777",
                              "confirm": "bob-Secret-777"})
    admin.form("/users/password", {"name": "bob", "password": "bob-Other-888"})
    admin.form("/users/add", {"name": "bad name", "password": "never-Shown-999",
                              "confirm": "never-Shown-999"})
    stored = json.load(open(os.path.join(state_dir, "admin.json")))["password_hash"]
    secrets = [ADMIN_PASSWORD, VPN_PASSWORD, "bob-Secret-777", "bob-Other-888",
               "never-Shown-999", stored, stored.split("$")[-1], "$argon2"]
    nt_hashes = [daemon.users.get(n).nt_hash.hex() for n in ("alice", "bob")]
    pages = [admin.get(p).get_data(as_text=True) for p in ADMIN_GETS[:-2]]
    pages += [admin.get("/login").get_data(as_text=True)]
    pages += [open(os.path.join(state_dir, "audit.log")).read()]
    for page in pages:
        for secret in secrets + nt_hashes:
            assert secret not in page
        assert not re.search(r'type="password"[^>]*value=', page)


def test_every_change_is_audited(admin, daemon, state_dir):
    s = daemon.add_session("alice")
    admin.form("/users/add", {"name": "bob", "password": VPN_PASSWORD,
                              "confirm": VPN_PASSWORD})
    admin.form("/settings", {"proposals": "secure", "pool": "10.77.0.0/24", "dns": "",
                             "lan": "0.0.0.0/0", "nat": "1"})
    admin.form("/settings/certificate", {"names": ""})
    admin.form("/sessions/disconnect", {"session": s["id"], "user": "alice"})
    lines = audit_lines(state_dir)
    for line in lines:
        assert set(line) >= {"time", "user", "action", "target", "result"}
        assert line["user"] == "admin"
    got = [(a["action"], a["target"]) for a in lines]
    for want in [("admin_password_set", "admin"), ("setup", "vpn.example.net"),
                 ("user_add", "bob"), ("config_set", "pool, lan"),
                 ("cert_regenerate", "identity"), ("disconnect", "alice")]:
        assert want in got, want
    assert stat_mode(os.path.join(state_dir, "audit.log")) == 0o600


def stat_mode(path: str) -> int:
    return os.stat(path).st_mode & 0o777


def test_daemon_unreachable_shows_a_banner_not_a_500(admin, daemon):
    daemon.stop()
    r = admin.get("/")
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    assert page.count("The VPN service does not answer") == 1
    # As the box shows it (field card): power blinks, alert steady, tunnel dark.
    assert 'data-led="power" data-state="blink"' in page
    assert 'data-led="alert" data-state="on"' in page
    assert 'data-led="tunnel" data-state="off"' in page
    for path in ("/users", "/failures", "/settings", "/ca.pem"):
        r = admin.get(path)
        assert r.status_code == 503, path
        assert "The VPN service does not answer" in r.get_data(as_text=True)
    r = admin.form("/users/add", {"name": "bob", "password": VPN_PASSWORD,
                                  "confirm": VPN_PASSWORD})
    assert r.status_code == 503
    assert "The VPN service does not answer" in admin.get("/status/live").get_data(
        as_text=True)


def test_wizard_with_daemon_unreachable(client, daemon):
    daemon.stop()
    r = run_wizard(client)
    assert r.status_code == 503
    assert "does not answer" in r.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/nowhere", "/ca.key"])
def test_unknown_pages(admin, path):
    assert admin.get(path).status_code == 404


def test_audit_log_keeps_two_bounded_generations(tmp_path, monkeypatch):
    from webui import store
    monkeypatch.setattr(store, "AUDIT_MAX", 2000)
    state = store.StateDir(str(tmp_path / "w"))
    for n in range(100):
        state.audit("admin", "login", "admin", "failed", f"192.0.2.{n}")
    current = tmp_path / "w" / "audit.log"
    older = tmp_path / "w" / "audit.log.1"
    assert current.stat().st_size <= 2000 + 200 and older.stat().st_size <= 2000 + 200
    last = json.loads(current.read_text().splitlines()[-1])
    assert last["client"] == "192.0.2.99"
