"""`next=` after login: a same-origin path, or `/`."""

from __future__ import annotations

from urllib.parse import urlsplit


def safe_next(value: str | None) -> str:
    """Accept only an absolute path on this origin. `//evil.com`, `/\\evil.com`, `https://evil.com`,
    `javascript:...`, control characters and anything a browser could read as another host: `/`."""
    if not value or not value.startswith("/") or len(value) > 2048:
        return "/"
    if value.startswith(("//", "/\\")) or "\\" in value:
        return "/"
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    if value.startswith("/auth/"):
        return "/"
    return value
