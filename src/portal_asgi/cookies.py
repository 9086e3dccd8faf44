"""The portal's cookies: HttpOnly, SameSite=Lax, Path=/, and `Secure` with the `__Host-` prefix
over https. The session cookie is here; the CSRF and OIDC cookies build theirs with the same two
functions."""

from __future__ import annotations

from dataclasses import dataclass


def read_cookie(raw: str, name: str) -> str | None:
    """One cookie's value from a Cookie header; tolerant of junk around it."""
    for part in raw.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"') or None
    return None


def cookie_name(base: str, *, secure: bool) -> str:
    """`__Host-` over https: the browser then takes it only from this host, Secure, on Path=/."""
    return f"__Host-{base}" if secure else base


def set_cookie(name: str, value: str, *, secure: bool, max_age: int | None = None) -> str:
    """A Set-Cookie value; without `max_age` the cookie lasts as long as the browser session."""
    parts = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=Lax"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class SessionCookie:
    secure: bool
    base: str = "portal_session"

    @property
    def name(self) -> str:
        return cookie_name(self.base, secure=self.secure)

    def read(self, raw: str) -> str | None:
        return read_cookie(raw, self.name)

    def set(self, value: str, *, max_age: int) -> bytes:
        return set_cookie(self.name, value, secure=self.secure, max_age=max_age).encode("latin-1")

    def clear(self) -> bytes:
        return self.set("", max_age=0)
