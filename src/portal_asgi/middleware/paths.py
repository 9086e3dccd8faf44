"""Request paths that could mean two things answer 400 before any routing (docs/architecture.md):
dot segments, encoded slashes or backslashes, encoded NUL, control characters, backslashes, and
paths over 4 KiB. Whatever is left reads one way, so the route table's choice is the only one."""

from __future__ import annotations

import re

from ..types import Scope

_ENCODED = re.compile(rb"%(2f|5c|00)", re.IGNORECASE)
_UNREADABLE = re.compile(r"[\x00-\x1f\x7f\\]|(?:^|/)\.\.?(?:/|$)")
_MAX_PATH = 4096
_PERCENT = ord("%")  # `b"%" in raw` would cost a TypeError raised and caught inside CPython


def is_ambiguous(scope: Scope) -> bool:
    path: str = scope.get("path", "")
    raw: bytes = scope.get("raw_path") or path.encode("utf-8", "surrogateescape")
    if len(raw) > _MAX_PATH:
        return True
    # Most paths hold none of the characters the patterns look for (a `%`, a `.`, a backslash,
    # a control character: not printable): no pattern can match them.
    if _PERCENT not in raw and "." not in path and "\\" not in path and path.isprintable():
        return False
    return bool(_ENCODED.search(raw) or _UNREADABLE.search(path))
