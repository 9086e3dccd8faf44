"""Cookies of the OIDC flow, apart from the portal session cookie:

- the login transaction (`state`, `nonce`, PKCE `code_verifier`, `redirect_uri`, `next`), signed
  with itsdangerous and good for ten minutes, read once by the callback and then cleared;
- the ID token of the current login, kept for the `id_token_hint` of the provider's logout.

Both are HttpOnly and SameSite=Lax: the provider's redirect back to `/auth/callback` is a top-level
GET navigation, which Lax cookies follow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

from ..cookies import cookie_name, read_cookie, set_cookie

TRANSACTION_MAX_AGE = 600


@dataclass(frozen=True, slots=True)
class LoginTransaction:
    state: str
    nonce: str
    code_verifier: str
    redirect_uri: str
    next: str


class SignedCookie:
    def __init__(self, secret: bytes, *, name: str, salt: str, secure: bool, max_age: int) -> None:
        self.serializer = URLSafeTimedSerializer(secret, salt=salt)
        self.name = cookie_name(name, secure=secure)
        self.secure = secure
        self.max_age = max_age

    def set(self, value: dict[str, Any]) -> str:
        return self._header(self.serializer.dumps(value), self.max_age)

    def clear(self) -> str:
        return self._header("", 0)

    def read(self, cookie_header: str) -> dict[str, Any] | None:
        raw = read_cookie(cookie_header, self.name)
        if not raw:
            return None
        try:
            value = self.serializer.loads(raw, max_age=self.max_age)
        except BadSignature:  # forged, or older than max_age (SignatureExpired is a BadSignature)
            return None
        return value if isinstance(value, dict) else None

    def _header(self, value: str, max_age: int) -> str:
        return set_cookie(self.name, value, secure=self.secure, max_age=max_age)


class TransactionCookie(SignedCookie):
    def __init__(self, secret: bytes, *, secure: bool) -> None:
        super().__init__(
            secret,
            name="portal_oidc_login",
            salt="portal-asgi oidc login transaction",
            secure=secure,
            max_age=TRANSACTION_MAX_AGE,
        )

    def issue(self, transaction: LoginTransaction) -> str:
        return self.set(asdict(transaction))

    def transaction(self, cookie_header: str) -> LoginTransaction | None:
        value = self.read(cookie_header)
        if value is None:
            return None
        try:
            return LoginTransaction(
                **{f.name: str(value[f.name]) for f in fields(LoginTransaction)}
            )
        except KeyError:
            return None


class HintCookie(SignedCookie):
    """The ID token, for `id_token_hint` at logout; lives as long as a session may."""

    def __init__(self, secret: bytes, *, secure: bool, max_age: int) -> None:
        super().__init__(
            secret,
            name="portal_oidc_hint",
            salt="portal-asgi oidc id token hint",
            secure=secure,
            max_age=max_age,
        )
