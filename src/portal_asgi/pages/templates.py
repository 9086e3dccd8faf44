"""Jinja2 templates shipped with the package; autoescaped, no inline script (CSP-friendly)."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

environment = Environment(
    loader=PackageLoader("portal_asgi", "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(template: str, **context: Any) -> str:
    return environment.get_template(template).render(**context)


def render_error(*, status: int, heading: str, text: str, title: str) -> str:
    return render(
        "error.html", status=status, heading=heading, text=text, portal_title=title, user=None
    )
