"""The web UI's only way to the daemon: one short control-socket conversation per call.

A fresh connection per request keeps Flask's threads from sharing a socket, and a
daemon restart costs nothing but the request that was in flight.
"""

from __future__ import annotations

from typing import Any

from flask import current_app

from firmware.control import ControlClient, ControlError, DaemonUnreachable

__all__ = ["call", "ControlError", "DaemonUnreachable"]


def call(cmd: str, **args: Any) -> Any:
    cfg = current_app.config
    with ControlClient(cfg["IKEBOX_CONTROL"], timeout=cfg["IKEBOX_CONTROL_TIMEOUT"]) as c:
        return c.call(cmd, **args)
