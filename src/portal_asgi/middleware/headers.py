"""Security headers. The portal's own pages get a strict set (CSP without inline script or
style, no framing, nosniff, a Referrer-Policy, no-store on the auth pages); products keep their
own headers and only receive the `[security] product_headers` defaults they did not set. HSTS goes
on every response when the portal is served over https. Any response that sets a cookie (a login,
a session refreshed by identity.py on a product's page) says `Cache-Control: private, no-store`,
whatever the product said: a shared cache must never hand one person's cookie to another."""

from __future__ import annotations

from collections.abc import Awaitable

from ..types import Message, Send

Headers = list[tuple[bytes, bytes]]


def portal_csp(form_targets: tuple[str, ...] = ()) -> str:
    # form-action must also allow the identity provider: logout ends its session by redirect
    form_action = " ".join(("'self'", *form_targets))
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"object-src 'none'; base-uri 'none'; form-action {form_action}; frame-ancestors 'none'"
    )


class SecurityHeaders:
    """The headers policy of one portal: a strict set for its own pages, defaults for products."""

    def __init__(
        self,
        *,
        product_headers: tuple[tuple[str, str], ...],
        https: bool,
        hsts_max_age: int,
        form_targets: tuple[str, ...] = (),
    ) -> None:
        always: Headers = (
            [(b"strict-transport-security", f"max-age={hsts_max_age}".encode())] if https else []
        )
        self.product: Headers = [
            *((k.lower().encode(), v.encode()) for k, v in product_headers),
            *always,
        ]
        self.portal: Headers = [
            (b"content-security-policy", portal_csp(form_targets).encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"same-origin"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
            *always,
        ]

    def headers_for(self, headers: Headers, *, product: bool, no_store: bool = False) -> Headers:
        """`headers` of an answer by a product or by the portal (`no_store`: its auth pages)."""
        present = []  # a loop, not a comprehension: there are only a few
        for name, _ in headers:
            present.append(name.lower())
        if b"set-cookie" in present:
            headers = _replace(headers, b"cache-control", b"private, no-store")
        elif no_store:
            headers = _replace(headers, b"cache-control", b"no-store")
        for name, value in self.product if product else self.portal:
            if name not in present:
                headers.append((name, value))
        return headers


class Outgoing:
    """The `send` of one request: as the answer starts, the session cookie re-issued by
    `identity.py` (unless the answer sets its own) and the security headers of whoever answers;
    it remembers the status, for the audit of the portal's refusals."""

    __slots__ = ("cookie", "cookie_name", "no_store", "policy", "product", "send", "status")

    def __init__(
        self,
        send: Send,
        policy: SecurityHeaders,
        *,
        product: bool,
        no_store: bool = False,
        cookie: bytes | None = None,
        cookie_name: bytes = b"",
    ) -> None:
        self.send = send
        self.policy = policy
        self.product = product
        self.no_store = no_store
        self.cookie = cookie
        self.cookie_name = cookie_name  # only read when `cookie` is set
        self.status = 0  # 0 until the answer started

    def __call__(self, message: Message) -> Awaitable[None]:
        # not a coroutine of its own: the `send` it wraps is awaited directly
        kind = message["type"]
        if kind == "http.response.body":  # the most frequent, first
            return self.send(message)
        if kind == "http.response.start" or kind == "websocket.http.response.start":
            self.status = int(message["status"])
            headers = [*message.get("headers", ())]
            if self.cookie is not None:
                prefix = self.cookie_name + b"="
                if not any(  # a response that sets the session cookie itself (login, logout) wins
                    k.lower() == b"set-cookie" and v.startswith(prefix) for k, v in headers
                ):
                    headers.append((b"set-cookie", self.cookie))
            message["headers"] = self.policy.headers_for(
                headers, product=self.product, no_store=self.no_store
            )
        elif kind == "websocket.accept" or kind == "websocket.close":
            self.status = self.status or 101
        return self.send(message)


def _replace(headers: Headers, name: bytes, value: bytes) -> Headers:
    return [*((k, v) for k, v in headers if k.lower() != name), (name, value)]
