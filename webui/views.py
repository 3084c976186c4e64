"""The pages after setup: login, status (with a live part), users, recent failures,
settings and the CA download. Every change goes to the daemon and into the audit log;
a refusal shows the daemon's reason and changes nothing."""

from __future__ import annotations

import datetime
import logging
import time
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from flask import (Blueprint, Response, abort, flash, redirect, render_template, request,
                   session, url_for)

from . import daemon, forms, leds
from .auth import (ADMIN, admin_required, audit, client, limiter, log_in, logged_in,
                   safe_next, state)
from .daemon import ControlError, DaemonUnreachable
from .store import password_problem

log = logging.getLogger("ikebox.webui")

bp = Blueprint("views", __name__)

PROFILES = ("secure", "legacy-windows")


def _refused(action: str, target: str, exc: ControlError) -> None:
    if isinstance(exc, DaemonUnreachable):
        raise exc
    flash(str(exc), "error")
    audit(action, target, "refused", reason=str(exc))


# --- formatting for templates --------------------------------------------------------


@bp.app_template_filter("when")
def _when(ts: Any) -> str:
    try:
        return datetime.datetime.fromtimestamp(float(ts)).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


@bp.app_template_filter("duration")
def _duration(seconds: Any) -> str:
    try:
        s = max(0, int(float(seconds)))
    except (TypeError, ValueError):
        return "?"
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m:02d}m"
    return f"{m}m {s:02d}s" if m else f"{s}s"


@bp.app_template_filter("size")
def _size(n: Any) -> str:
    try:
        value = float(n)
    except (TypeError, ValueError):
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return "?"


@bp.app_context_processor
def _globals() -> dict[str, Any]:
    return {"logged_in": logged_in(), "setup_done": state().setup_done()}


# --- login ----------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
def login():  # noqa: ANN201
    if not state().has_admin():
        return redirect(url_for("setup.start"))
    default = url_for("views.status") if state().setup_done() else url_for("setup.box")
    target = safe_next(request.values.get("next"), default)
    if request.method == "GET":
        return render_template("login.html", next=target)
    wait = limiter().retry_after(client())
    if wait:
        audit("login", ADMIN, "rate-limited")
        return render_template("login.html", next=target,
                               error=f"Too many attempts. Try again in {wait} seconds."), 429
    if not state().check_admin_password(request.form.get("password") or ""):
        limiter().failed(client())
        audit("login", ADMIN, "failed")
        log.warning("failed web UI login from %s", client())
        return render_template("login.html", next=target,
                               error="Wrong password."), 401
    limiter().succeeded(client())
    log_in()
    audit("login", ADMIN)
    return redirect(target)


@bp.route("/logout", methods=["POST"])
def logout():  # noqa: ANN201
    if logged_in():
        audit("logout", ADMIN)
    session.clear()
    return redirect(url_for("views.login"))


@bp.route("/account", methods=["GET", "POST"])
@admin_required
def account():  # noqa: ANN201
    if request.method == "POST":
        if not state().check_admin_password(request.form.get("current") or ""):
            audit("admin_password_change", ADMIN, "refused", reason="wrong current password")
            return render_template("account.html",
                                   error="The current password is wrong."), 400
        new = request.form.get("password") or ""
        problem = password_problem(new, request.form.get("confirm") or "")
        if problem:
            return render_template("account.html", error=problem), 400
        state().set_admin_password(new, first=False)
        audit("admin_password_change", ADMIN)
        flash("The admin password is changed.", "ok")
        return redirect(url_for("views.status"))
    return render_template("account.html")


# --- status ---------------------------------------------------------------------------


def _live() -> dict[str, Any]:
    """What the status page shows; the daemon being away is part of the answer."""
    try:
        status = daemon.call("status")
        sessions = daemon.call("show_sessions")
        failures = daemon.call("failures", limit=5)
    except ControlError as exc:
        return {"daemon_down": str(exc), "status": None, "sessions": [], "failures": [],
                "leds": leds.mirror(None, [], []), "now": time.time()}
    return {"daemon_down": None, "status": status, "sessions": sessions,
            "failures": failures, "leds": leds.mirror(status, sessions, failures),
            "now": time.time()}


@bp.route("/")
@admin_required
def status():  # noqa: ANN201
    return render_template("status.html", **_live())


@bp.route("/status/live")
@admin_required
def status_live():  # noqa: ANN201
    return render_template("_status_live.html", **_live())


@bp.route("/sessions/disconnect", methods=["POST"])
@admin_required
def disconnect():  # noqa: ANN201
    sid = forms.text("session")
    who = forms.text("user") or sid
    try:
        closed = daemon.call("disconnect", session=sid)
    except ControlError as exc:
        _refused("disconnect", who, exc)
    else:
        audit("disconnect", who, session=sid)
        flash(f"Disconnected {who} ({closed.get('closed', 0)} session).", "ok")
    return redirect(url_for("views.status"))


# --- users ----------------------------------------------------------------------------


@bp.route("/users")
@admin_required
def users():  # noqa: ANN201
    return render_template("users.html", users=daemon.call("user_list"))


def _user_change(action: str, message: str, cmd: str, **args: Any):  # noqa: ANN202
    name = forms.text("name")
    try:
        daemon.call(cmd, name=name, **args)
    except ControlError as exc:
        _refused(action, name, exc)
    else:
        audit(action, name)
        flash(message.format(name=name), "ok")
    return redirect(url_for("views.users"))


@bp.route("/users/add", methods=["POST"])
@admin_required
def user_add():  # noqa: ANN201
    password = request.form.get("password") or ""
    if password != (request.form.get("confirm") or ""):
        flash("The two passwords differ; nothing was changed.", "error")
        return redirect(url_for("views.users"))
    return _user_change("user_add", "Added {name}.", "user_add", password=password,
                        enabled=forms.checked("enabled"))


@bp.route("/users/enable", methods=["POST"])
@admin_required
def user_enable():  # noqa: ANN201
    return _user_change("user_enable", "{name} may connect again.", "user_set",
                        enabled=True)


@bp.route("/users/disable", methods=["POST"])
@admin_required
def user_disable():  # noqa: ANN201
    return _user_change("user_disable", "{name} is disabled (and disconnected).",
                        "user_set", enabled=False)


@bp.route("/users/delete", methods=["POST"])
@admin_required
def user_delete():  # noqa: ANN201
    return _user_change("user_del", "Deleted {name}.", "user_del")


@bp.route("/users/password", methods=["POST"])
@admin_required
def user_password():  # noqa: ANN201
    return _user_change("user_password", "The password of {name} is changed.", "user_set",
                        password=request.form.get("password") or "")


# --- failures -------------------------------------------------------------------------


@bp.route("/failures")
@admin_required
def failures():  # noqa: ANN201
    return render_template("failures.html", failures=daemon.call("failures", limit=50))


# --- settings -------------------------------------------------------------------------


def _settings_fields(cfg: dict[str, Any]) -> dict[str, Any]:
    return {"proposals": cfg["ike"]["proposals"], "pool": cfg["pool"]["ipv4"],
            "dns": ", ".join(cfg["pool"]["dns"]), "lan": ", ".join(cfg["lan"]["subnets"]),
            "nat": bool(cfg["lan"]["nat"]), "identity": cfg["box"]["identity"]}


@bp.route("/settings", methods=["GET", "POST"])
@admin_required
def settings():  # noqa: ANN201
    if request.method == "GET":
        return render_template("settings.html", f=_settings_fields(daemon.call("config_get")))
    changes = {"ike": {"proposals": forms.text("proposals")},
               "pool": {"ipv4": forms.text("pool"), "dns": forms.words("dns")},
               "lan": {"subnets": forms.words("lan"), "nat": forms.checked("nat")}}
    try:
        result = daemon.call("config_set", config=changes)
    except ControlError as exc:
        _refused("config_set", ", ".join(changes), exc)
        # The daemon kept its config; show what was typed so it can be corrected.
        f = {"proposals": changes["ike"]["proposals"], "pool": forms.text("pool"),
             "dns": forms.text("dns"), "lan": forms.text("lan"),
             "nat": changes["lan"]["nat"],
             "identity": daemon.call("config_get")["box"]["identity"]}
        return render_template("settings.html", f=f), 400
    changed = result.get("changed") or []
    audit("config_set", ", ".join(changed) or "nothing")
    flash(f"Saved ({', '.join(changed) or 'nothing changed'}).", "ok")
    return redirect(url_for("views.settings"))


@bp.route("/settings/certificate", methods=["POST"])
@admin_required
def certificate():  # noqa: ANN201
    names = forms.words("names")
    try:
        cert = daemon.call("cert_regenerate", **({"names": names} if names else {}))
    except ControlError as exc:
        _refused("cert_regenerate", " ".join(names), exc)
    else:
        audit("cert_regenerate", " ".join(names) or "identity",
              fingerprint=cert.get("fingerprint"))
        flash(f"New server certificate {cert.get('subject')}, valid until "
              f"{cert.get('not_after')}, SHA-256 {cert.get('fingerprint')}.", "ok")
    return redirect(url_for("views.settings"))


@bp.route("/ca.<fmt>")
@admin_required
def ca_cert(fmt: str):  # noqa: ANN201
    if fmt not in ("pem", "crt"):
        abort(404)
    pem = daemon.call("ca_cert")["pem"]
    if fmt == "pem":
        body, mimetype = pem.encode(), "application/x-pem-file"
    else:
        # DER with .crt is what Windows and Android import with a double tap.
        cert = x509.load_pem_x509_certificate(pem.encode())
        body = cert.public_bytes(serialization.Encoding.DER)
        mimetype = "application/x-x509-ca-cert"
    return Response(body, mimetype=mimetype, headers={
        "Content-Disposition": f"attachment; filename=ikebox-ca.{fmt}"})
