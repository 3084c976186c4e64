"""Turning form fields into what the daemon's commands take. The daemon validates the
values; these only reshape text (lists split on commas, blanks or new lines)."""

from __future__ import annotations

import re

from flask import request


def text(name: str) -> str:
    return (request.form.get(name) or "").strip()


def words(name: str) -> list[str]:
    return [w for w in re.split(r"[\s,;]+", text(name)) if w]


def checked(name: str) -> bool:
    return request.form.get(name) in ("1", "on", "yes", "true")
