"""`[logging] format = "json"`: every log line one JSON object (the fields: docs/operations.md).

uvicorn configures its loggers before the portal starts; at the portal's startup (`configure`)
their handlers, the root logger's (one is added when there is none) and the audit logger's get
the JSON formatter, the portal's loggers take uvicorn's `--log-level`, and uvicorn's access line
gives way to the portal's own (`portal_asgi.access`, written by observe.py), which also names the
user and the mount. `--no-access-log` silences both. `format = "text"` leaves logging as uvicorn
set it up. Lines uvicorn writes before the portal starts are JSON only with `--log-config` naming
a file that uses `JsonFormatter` (deploy/logging.json).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from .observe import ACCESS, request_id
from .settings import LoggingSettings

UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
AUDIT = "portal_asgi.audit"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, request_id (null
    outside a request), the access line's fields, an audit event's fields under `audit`, and
    any exception's traceback under `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
            "request_id": getattr(record, "request_id", None) or request_id(),
        }
        fields = getattr(record, "portal_request", None)
        if isinstance(fields, dict):
            line.update(fields)
        elif record.name == "uvicorn.access" and isinstance(record.args, tuple):
            line.update(_uvicorn_access(record.args))
        if record.name == AUDIT:
            try:
                line["audit"] = json.loads(message)
            except ValueError:
                pass
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def _uvicorn_access(args: tuple[object, ...]) -> dict[str, object]:
    """uvicorn's access record: (client, method, path, HTTP version, status)."""
    if len(args) != 5:
        return {}
    client, method, path, _version, status = args
    return {"method": method, "path": path, "status": status, "client": client}


def configure(settings: LoggingSettings) -> None:
    """Apply `[logging]`. For the rest of the process: the lines uvicorn writes after the
    portal's shutdown are JSON too. Applying it again changes nothing more."""
    if settings.format != "json":
        return
    formatter = JsonFormatter()
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())  # standard error, like uvicorn's own
    for name in ("", *UVICORN, "portal_asgi", AUDIT, ACCESS.name):
        for handler in logging.getLogger(name).handlers:
            handler.setFormatter(formatter)
    audit = logging.getLogger(AUDIT)
    if audit.handlers:  # its own handler writes it: not a second time through the root's
        audit.propagate = False
    # setLevel, not the attribute: it also clears the loggers' caches
    logging.getLogger("portal_asgi").setLevel(
        logging.getLogger("uvicorn.error").getEffectiveLevel()
    )
    # The portal's access line instead of uvicorn's, at uvicorn's access level, unless uvicorn
    # was told not to log access (`--no-access-log` leaves uvicorn.access without handlers).
    uvicorn_access = logging.getLogger("uvicorn.access")
    ACCESS.setLevel(uvicorn_access.getEffectiveLevel())
    ACCESS.disabled = not uvicorn_access.hasHandlers()
    uvicorn_access.disabled = True


def access_log(settings: LoggingSettings) -> bool:
    """Whether the portal writes its access lines (after `configure`)."""
    return settings.format == "json" and not ACCESS.disabled and ACCESS.isEnabledFor(logging.INFO)
