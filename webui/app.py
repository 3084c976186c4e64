"""The web page of the box: a small Flask app in its own unprivileged process.

It talks to the daemon only through the control socket (docs/control-protocol.md),
keeps nothing but the admin password hash, the session secret, a setup stamp and an
audit log in its own state directory, and serves HTTPS (plain HTTP only redirects).
`ikebox webui ...` lands in main() below.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import sys
from typing import Any

from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect

from firmware.control import DaemonUnreachable, socket_path

from .ratelimit import LoginLimiter
from .store import StateDir

log = logging.getLogger("ikebox.webui")

DEFAULT_STATE_DIR = "/var/lib/ikebox-webui"
DEFAULT_LISTEN = "0.0.0.0:443"

# No inline script or style anywhere, so the policy can forbid both; no HSTS because
# the box's certificate is often self-signed and HSTS would take away the browser's
# "proceed anyway" once the owner regenerates it.
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """config: control_socket, state_dir, and optionally control_timeout,
    login_per_client, login_overall, login_window (seconds), testing."""
    config = dict(config or {})
    app = Flask(__name__)
    state = StateDir(config.get("state_dir") or DEFAULT_STATE_DIR)
    app.config.update(
        SECRET_KEY=state.secret_key(),
        SESSION_COOKIE_NAME="ikebox_session",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=datetime.timedelta(hours=8),
        WTF_CSRF_TIME_LIMIT=None,  # the token is bound to the session, which expires
        MAX_CONTENT_LENGTH=64 * 1024,
        TESTING=bool(config.get("testing")),
        IKEBOX_CONTROL=socket_path(config.get("control_socket")),
        IKEBOX_CONTROL_TIMEOUT=float(config.get("control_timeout", 10.0)),
    )
    app.extensions["ikebox_state"] = state
    app.extensions["ikebox_limiter"] = LoginLimiter(
        per_client=int(config.get("login_per_client", 5)),
        overall=int(config.get("login_overall", 30)),
        window=float(config.get("login_window", 300.0)))
    CSRFProtect(app)

    from . import setup, views
    app.register_blueprint(setup.bp)
    app.register_blueprint(views.bp)

    @app.errorhandler(CSRFError)
    def csrf_refused(exc: CSRFError):  # noqa: ANN202
        return render_template("error.html", title="Form refused",
                               message="This form was not sent by this page or it has "
                               "expired. Reload the page and try again."), 400

    @app.errorhandler(DaemonUnreachable)
    def daemon_down(exc: DaemonUnreachable):  # noqa: ANN202
        log.warning("daemon unreachable: %s", exc)
        return render_template("error.html", title="VPN service unreachable",
                               daemon_down=str(exc), message=""), 503

    @app.errorhandler(404)
    def not_found(exc: Exception):  # noqa: ANN202
        return render_template("error.html", title="Not found",
                               message="There is no such page."), 404

    @app.after_request
    def headers(resp):  # noqa: ANN202
        resp.headers.setdefault("Content-Security-Policy", _CSP)
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Referrer-Policy"] = "same-origin"
        if not request.path.startswith("/static/"):
            resp.headers["Cache-Control"] = "no-store"
        return resp

    return app


# --- the process ------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ikebox webui", description="the box's web page")
    p.add_argument("--config", default=os.environ.get("IKEBOX_CONFIG"),
                   help="the box's config file (default /etc/ikebox/ikebox.toml); "
                   "gives [control] socket and the daemon's state_dir")
    p.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                   help=f"the web UI's own files (default {DEFAULT_STATE_DIR})")
    p.add_argument("--listen", default=DEFAULT_LISTEN,
                   help=f"HTTPS address:port (default {DEFAULT_LISTEN})")
    p.add_argument("--redirect", default=None, metavar="ADDR:PORT",
                   help="plain HTTP that only redirects to HTTPS (default: the --listen "
                   "address, port 80; 'off' for none)")
    p.add_argument("--cert", help="TLS certificate (default: the daemon's server "
                   "certificate; a self-signed one in --state-dir if unreadable)")
    p.add_argument("--key", help="the certificate's private key")
    p.add_argument("--debug", action="store_true", help="log at DEBUG")
    return p


def split_hostport(value: str, what: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} {value!r}: use ADDRESS:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from firmware import config as config_mod
    from . import serve
    try:
        box = config_mod.load(args.config or config_mod.DEFAULT_PATH)
    except config_mod.ConfigError as exc:
        print(f"ikebox webui: {exc}", file=sys.stderr)
        return 2
    try:
        https = split_hostport(args.listen, "--listen")
        if args.redirect is None:
            redirect: tuple[str, int] | None = (https[0], 80)
        elif args.redirect == "off":
            redirect = None
        else:
            redirect = split_hostport(args.redirect, "--redirect")
    except ValueError as exc:
        print(f"ikebox webui: {exc}", file=sys.stderr)
        return 2
    app = create_app({"control_socket": box["control"]["socket"],
                      "state_dir": args.state_dir})
    state: StateDir = app.extensions["ikebox_state"]
    cert, key = serve.choose_certificate(args.cert, args.key, box["box"]["state_dir"],
                                         state.path, box["box"]["identity"])
    return serve.run(app, https, redirect, cert, key)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
