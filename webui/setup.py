"""The first-boot wizard: a new admin password, then the box's name, addresses and
first VPN user, applied through the daemon. It is gone once it has completed.

The admin password step is skipped when the card came with admin.json (a pre-seeded
password); the visitor then logs in with it before going on.

Known gap: until the wizard has run, whoever reaches the page first sets the admin
password. Pre-seed admin.json on the card when the LAN is not trusted.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from . import daemon, forms
from .auth import audit, client, log_in, logged_in, state
from .daemon import ControlError, DaemonUnreachable
from .store import AdminExists, password_problem

log = logging.getLogger("ikebox.webui")

bp = Blueprint("setup", __name__, url_prefix="/setup")


@bp.before_request
def only_until_done() -> None:
    if state().setup_done():
        abort(404)


@bp.route("", methods=["GET"])
def start():  # noqa: ANN201
    if not state().has_admin():
        return redirect(url_for("setup.password"))
    if not logged_in():
        return redirect(url_for("views.login", next=url_for("setup.box")))
    return redirect(url_for("setup.box"))


@bp.route("/password", methods=["GET", "POST"])
def password():  # noqa: ANN201
    if state().has_admin():
        return redirect(url_for("setup.start"))
    if request.method == "POST":
        new = request.form.get("password") or ""
        problem = password_problem(new, request.form.get("confirm") or "")
        if problem:
            return render_template("setup_password.html", error=problem), 400
        try:
            state().set_admin_password(new, first=True)
        except AdminExists:
            flash("Someone else set the admin password a moment ago; log in with it.",
                  "error")
            return redirect(url_for("setup.start"))
        log_in()
        audit("admin_password_set", "admin")
        log.info("admin password set by the setup wizard from %s", client())
        return redirect(url_for("setup.box"))
    return render_template("setup_password.html")


def _fields_from(cfg: dict[str, Any], status: dict[str, Any] | None) -> dict[str, str]:
    identity = cfg["box"]["identity"]
    wan = ((status or {}).get("wan") or {}).get("address") or ""
    return {"identity": identity if identity != "ikebox.local" or not wan else wan,
            "pool": cfg["pool"]["ipv4"], "dns": ", ".join(cfg["pool"]["dns"]),
            "lan": ", ".join(cfg["lan"]["subnets"]), "user": ""}


def apply(identity: str, pool: str, dns: list[str], lan: list[str], user: str | None,
          password: str) -> dict[str, Any]:
    """All or nothing: a later step's refusal undoes the earlier ones, so a retry
    starts from the state the box was in."""
    before = daemon.call("config_get")
    changes = {"box": {"identity": identity}, "pool": {"ipv4": pool, "dns": dns},
               "lan": {"subnets": lan}}
    daemon.call("config_set", config=changes)
    undo = [lambda: daemon.call("config_set", config={
        section: {key: before[section][key] for key in values}
        for section, values in changes.items()})]
    try:
        if user:
            daemon.call("user_add", name=user, password=password)
            undo.insert(0, lambda: daemon.call("user_del", name=user))
        return daemon.call("cert_regenerate", names=[identity])
    except ControlError:
        for step in undo:
            try:
                step()
            except ControlError as exc:
                log.error("setup: could not undo a step: %s", exc)
        raise


def _existing_users() -> list[str]:
    return [u["name"] for u in daemon.call("user_list")]


@bp.route("/box", methods=["GET", "POST"])
def box():  # noqa: ANN201
    if not state().has_admin():
        return redirect(url_for("setup.start"))
    if not logged_in():
        return redirect(url_for("views.login", next=url_for("setup.box")))
    if request.method == "GET":
        try:
            status = daemon.call("status")
        except DaemonUnreachable:
            raise
        except ControlError:
            status = None
        return render_template("setup_box.html", existing=_existing_users(),
                               f=_fields_from(daemon.call("config_get"), status))

    f = {k: forms.text(k) for k in ("identity", "pool", "dns", "lan", "user")}
    # A card seeded with users needs no new one; a bare box needs its first.
    existing = _existing_users()
    error = None
    user_password = request.form.get("user_password") or ""
    if not f["identity"]:
        error = "Enter the box's public name or address."
    elif not f["user"] and not existing:
        error = "Enter a name for the first VPN user."
    elif user_password != (request.form.get("user_confirm") or ""):
        error = "The two VPN passwords differ."
    if error is None:
        try:
            cert = apply(f["identity"], f["pool"], forms.words("dns"), forms.words("lan"),
                         f["user"], user_password)
        except DaemonUnreachable:
            raise
        except ControlError as exc:
            error = str(exc)
            audit("setup", f["identity"], "refused", reason=error)
    if error is not None:
        # The form comes back filled in, but never with a password.
        return render_template("setup_box.html", f=f, error=error, existing=existing), 400
    state().mark_setup_done(f["identity"])
    audit("setup", f["identity"], first_user=f["user"] or None,
          fingerprint=cert.get("fingerprint"))
    log.info("setup completed for %s", f["identity"])
    who = f["user"] or "one of the box's users"
    flash(f"Setup complete. Install the CA certificate on each client, then connect "
          f"to {f['identity']} as {who}.", "ok")
    return redirect(url_for("views.status"))
