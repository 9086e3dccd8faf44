"""portal-asgi: many Flask and Starlette products behind one login, each at its own level."""

from __future__ import annotations

from .app import Portal, build_app
from .settings import Settings, load_settings

__all__ = ["Portal", "Settings", "app", "build_app", "load_settings"]
__version__ = "0.1.0"

app = Portal()
