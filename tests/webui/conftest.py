from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest
from flask.testing import FlaskClient

from webui.app import create_app

from .scripted_daemon import ScriptedDaemon

ADMIN_PASSWORD = "admin-Passw0rd-long"
VPN_PASSWORD = "vpn-Secret-4711"


class HttpsClient(FlaskClient):
    """The test client as a browser on the box's HTTPS page would be: https scheme (the
    session cookie is Secure), a same-origin Referer (Flask-WTF's SSL strict check)."""

    def open(self, *args: Any, **kw: Any):  # noqa: ANN201
        kw.setdefault("base_url", "https://box.test")
        headers = dict(kw.pop("headers", None) or {})
        headers.setdefault("Referer", "https://box.test/")
        kw["headers"] = headers
        return super().open(*args, **kw)

    def token(self, path: str | None = None) -> str:
        """The session's CSRF token, read from a page as a browser would."""
        page = self.get(path or "/login", follow_redirects=True).get_data(as_text=True)
        m = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert m, f"no CSRF token on {path}"
        return m.group(1)

    def form(self, path: str, data: dict[str, Any], token_from: str | None = None,
             **kw: Any):  # noqa: ANN201
        data = dict(data)
        data.setdefault("csrf_token", self.token(token_from))
        return self.post(path, data=data, **kw)


@pytest.fixture
def daemon(tmp_path):
    d = ScriptedDaemon(str(tmp_path / "daemon"))
    os.makedirs(d.dir, exist_ok=True)
    d.start()
    yield d
    d.stop()


@pytest.fixture
def state_dir(tmp_path) -> str:
    return str(tmp_path / "webui")


@pytest.fixture
def make_app(daemon, state_dir):
    def make(**extra: Any):  # noqa: ANN202
        app = create_app({"control_socket": daemon.socket, "state_dir": state_dir,
                          "testing": True, "control_timeout": 5, **extra})
        app.test_client_class = HttpsClient
        return app
    return make


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app) -> HttpsClient:
    return app.test_client()


def run_wizard(client: HttpsClient, **fields: str):  # noqa: ANN201
    r = client.form("/setup/password", {"password": ADMIN_PASSWORD,
                                        "confirm": ADMIN_PASSWORD})
    assert r.status_code == 302 and r.headers["Location"].endswith("/setup/box")
    data = {"identity": "vpn.example.net", "pool": "10.77.0.0/24",
            "dns": "10.1.0.53, 10.1.0.54", "lan": "10.1.0.0/16", "user": "alice",
            "user_password": VPN_PASSWORD, "user_confirm": VPN_PASSWORD}
    data.update(fields)
    return client.form("/setup/box", data)


@pytest.fixture
def admin(client) -> HttpsClient:
    """A client logged in on a box whose setup has completed."""
    r = run_wizard(client)
    assert r.status_code == 302, r.get_data(as_text=True)
    return client


def audit_lines(state_dir: str) -> list[dict[str, Any]]:
    with open(os.path.join(state_dir, "audit.log")) as fh:
        return [json.loads(line) for line in fh]
