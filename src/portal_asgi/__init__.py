"""portal-asgi: many Flask and Starlette products behind one login, each at its own level."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import Portal, build_app
    from .settings import Settings, load_settings

    app: Portal

__all__ = ["Portal", "Settings", "app", "build_app", "load_settings"]
__version__ = "0.1.0"

# Importing the package stays cheap, so that the command line starts in a fraction of a second:
# the app (and with it Starlette, Authlib, the WSGI bridge...) is imported on first use of a name.
_SETTINGS_NAMES = ("Settings", "load_settings")


def __getattr__(name: str) -> Any:
    if name in ("app", "Portal", "build_app"):
        module = importlib.import_module(".app", __name__)
        # Importing the submodule bound `portal_asgi.app` to it; `portal_asgi:app`, what uvicorn
        # serves, is the Portal instance. Creating one reads nothing: that waits for the lifespan.
        names = {"Portal": module.Portal, "build_app": module.build_app, "app": module.Portal()}
        globals().update(names)
        return names[name]
    if name in _SETTINGS_NAMES:
        value = getattr(importlib.import_module(".settings", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
