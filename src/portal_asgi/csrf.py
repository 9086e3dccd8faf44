"""CSRF tokens for the portal's forms: a random value in an HttpOnly cookie, and in the form the
same value signed with itsdangerous. A cross-site page can neither read the cookie nor forge the
signature; the signature also expires."""

from __future__ import annotations

import hmac
import secrets

from itsdangerous import BadSignature, URLSafeTimedSerializer

from .cookies import cookie_name, read_cookie, set_cookie

CSRF_MAX_AGE = 12 * 3600


class CSRF:
    def __init__(self, secret: bytes, *, secure: bool) -> None:
        self.serializer = URLSafeTimedSerializer(secret, salt="portal-asgi csrf")
        self.secure = secure
        self.cookie_name = cookie_name("portal_csrf", secure=secure)

    def cookie_value(self, cookie_header: str) -> str | None:
        return read_cookie(cookie_header, self.cookie_name)

    def new_value(self) -> str:
        return secrets.token_urlsafe(24)

    def token_for(self, value: str) -> str:
        return self.serializer.dumps(value)

    def set_cookie(self, value: str) -> str:
        return set_cookie(self.cookie_name, value, secure=self.secure)

    def check(self, cookie_header: str, token: str | None) -> bool:
        value = self.cookie_value(cookie_header)
        if not value or not token:
            return False
        try:
            signed = self.serializer.loads(token, max_age=CSRF_MAX_AGE)
        except BadSignature:
            return False
        return isinstance(signed, str) and hmac.compare_digest(signed, value)
