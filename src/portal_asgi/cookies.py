"""The session cookie: HttpOnly, SameSite=Lax, `Secure` and the `__Host-` prefix over https."""

from __future__ import annotations

from dataclasses import dataclass


def read_cookie(raw: str, name: str) -> str | None:
    """One cookie's value from a Cookie header; tolerant of junk around it."""
    for part in raw.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"') or None
    return None


@dataclass(frozen=True, slots=True)
class SessionCookie:
    secure: bool
    base: str = "portal_session"

    @property
    def name(self) -> str:
        return f"__Host-{self.base}" if self.secure else self.base

    def read(self, raw: str) -> str | None:
        return read_cookie(raw, self.name)

    def set(self, value: str, *, max_age: int) -> bytes:
        parts = [f"{self.name}={value}", "Path=/", "HttpOnly", "SameSite=Lax", f"Max-Age={max_age}"]
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts).encode("latin-1")

    def clear(self) -> bytes:
        return self.set("", max_age=0)
