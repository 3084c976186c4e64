"""Who may see what: the admin session, the setup gate and the audit helper."""

from __future__ import annotations

import functools
from typing import Any, Callable

from flask import current_app, redirect, request, session, url_for

from .ratelimit import LoginLimiter
from .store import StateDir

ADMIN = "admin"  # the only web UI account; the audit log names it


def state() -> StateDir:
    return current_app.extensions["ikebox_state"]


def limiter() -> LoginLimiter:
    return current_app.extensions["ikebox_limiter"]


def client() -> str:
    # The web UI faces the LAN directly; no proxy header is trusted.
    return request.remote_addr or "?"


def logged_in() -> bool:
    return session.get("user") == ADMIN


def log_in() -> None:
    session.clear()  # a fresh session (and CSRF token) after authentication
    session.permanent = True
    session["user"] = ADMIN


def audit(action: str, target: str = "", result: str = "ok", **extra: Any) -> None:
    state().audit(session.get("user") or "-", action, target, result, client(), **extra)


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Until setup is complete every page leads to the wizard; after it, to login."""
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not state().setup_done():
            return redirect(url_for("setup.start"))
        if not logged_in():
            return redirect(url_for("views.login", next=request.path))
        return view(*args, **kwargs)
    return wrapped


def safe_next(target: str | None, default: str) -> str:
    # Only local paths: a crafted ?next= must not send the admin to another site.
    if target and target.startswith("/") and not target.startswith("//") \
            and "\\" not in target:
        return target
    return default
