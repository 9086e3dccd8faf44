"""Jinja2 templates shipped with the package; autoescaped, no inline script (CSP-friendly)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

environment = Environment(
    loader=PackageLoader("portal_asgi", "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def when(value: dt.datetime | None) -> Markup:
    """A time (naive means UTC, as stored) as the pages show it, to the minute; `—` for none."""
    if value is None:
        return Markup("—")
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    stamp = value.replace(microsecond=0).isoformat()
    return Markup('<time datetime="{}Z" title="{} UTC">{}</time>').format(
        stamp, stamp.replace("T", " "), value.strftime("%Y-%m-%d %H:%M")
    )


environment.filters["when"] = when


def render(template: str, **context: Any) -> str:
    return environment.get_template(template).render(**context)


def render_error(
    *, status: int, heading: str, text: str, portal_title: str = "portal-asgi", **frame: Any
) -> str:
    """error.html; `frame` is the page frame's context (pages/frame.py: `user`, `csrf_token`,
    `badge`), or nothing for a page without a signed-in user's header."""
    context: dict[str, Any] = {"user": None, "csrf_token": "", **frame}
    return render(
        "error.html",
        status=status,
        heading=heading,
        text=text,
        portal_title=portal_title,
        **context,
    )
