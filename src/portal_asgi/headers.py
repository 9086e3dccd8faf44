"""Security headers. The portal's own pages get a strict set (CSP without inline script or
style, no framing, nosniff, a Referrer-Policy, no-store on the auth pages); products keep their
own headers and only receive the `[security] product_headers` defaults they did not set. HSTS goes
on every response when the portal is served over https. Any response that sets a cookie (a login,
a session refreshed by identity.py on a product's page) says `Cache-Control: private, no-store`,
whatever the product said: a shared cache must never hand one person's cookie to another."""

from __future__ import annotations

from collections.abc import Callable

from .types import ASGIApp, Message, Receive, Scope, Send

Headers = list[tuple[bytes, bytes]]


def portal_csp(form_targets: tuple[str, ...] = ()) -> str:
    # form-action must also allow the identity provider: logout ends its session by redirect
    form_action = " ".join(("'self'", *form_targets))
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"object-src 'none'; base-uri 'none'; form-action {form_action}; frame-ancestors 'none'"
    )


class SecurityHeaders:
    def __init__(
        self,
        app: ASGIApp,
        *,
        is_product: Callable[[Scope], bool],
        product_headers: tuple[tuple[str, str], ...],
        https: bool,
        hsts_max_age: int,
        form_targets: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.is_product = is_product
        self.product: Headers = [(k.lower().encode(), v.encode()) for k, v in product_headers]
        self.portal: Headers = [
            (b"content-security-policy", portal_csp(form_targets).encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"same-origin"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
        ]
        self.always: Headers = (
            [(b"strict-transport-security", f"max-age={hsts_max_age}".encode())] if https else []
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def adding(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                message["headers"] = self.headers_for(scope, list(message.get("headers", ())))
            await send(message)

        await self.app(scope, receive, adding)

    def headers_for(self, scope: Scope, headers: Headers) -> Headers:
        # read at response time: the level guard has marked the scope when a product answers
        product = self.is_product(scope)
        if any(k.lower() == b"set-cookie" for k, _ in headers):
            headers = _replace(headers, b"cache-control", b"private, no-store")
        elif not product and str(scope.get("path", "")).startswith("/auth/"):
            headers = _replace(headers, b"cache-control", b"no-store")
        present = {k.lower() for k, _ in headers}
        for name, value in [*(self.product if product else self.portal), *self.always]:
            if name not in present:
                headers.append((name, value))
        return headers


def _replace(headers: Headers, name: bytes, value: bytes) -> Headers:
    return [*((k, v) for k, v in headers if k.lower() != name), (name, value)]
