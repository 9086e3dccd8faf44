"""One pass over the request headers. It counts them for the limits, picks out what the portal
reads (cookie, authorization, the forwarding headers), and keeps what products may see: never a
client's own `X-Portal-*`, nor forwarding headers, which only a trusted proxy may set
(`proxies.py` adds back the ones it vouches for)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..types import Scope

Headers = list[tuple[bytes, bytes]]

# compared with `_` read as `-`: WSGI bridges turn `X_Portal_User` and `X-Portal-User` into the
# same `HTTP_X_PORTAL_USER`, so either spelling could forge the other
_PORTAL = b"x-portal-"
# X-Request-ID too: only a trusted proxy's names a request (observe.py takes it from `forwarded`)
_FORWARDING = (
    b"x-forwarded-",
    b"forwarded",
    b"x-real-ip",
    b"x-client-ip",
    b"true-client-ip",
    b"x-request-id",
)
# a cheap first test before the exact one (ASGI names are lower case; a server may not be)
_SUSPECT = frozenset((b"x", b"X", b"f", b"F", b"t", b"T"))


def is_portal_header(name: bytes) -> bool:
    return name.lower().replace(b"_", b"-").startswith(_PORTAL)


def is_forwarding_header(name: bytes) -> bool:
    return name.lower().replace(b"_", b"-").startswith(_FORWARDING)


@dataclass(slots=True)
class Inbound:
    headers: Headers  # what products will see (before the portal's own are added)
    count: int = 0
    size: int = 0  # names and values together, in bytes
    cookie: str = ""
    authorization: str = ""
    forwarded: Headers = field(default_factory=list)  # what the client sent, dropped above


def read(scope: Scope) -> Inbound:
    kept: Headers = []
    inbound = Inbound(kept)
    cookies: list[str] = []
    size = 0
    raw = scope.get("headers") or ()
    for name, value in raw:
        size += len(name) + len(value)
        if name[:1] in _SUSPECT:
            normal = name.lower().replace(b"_", b"-")
            if normal.startswith(_PORTAL):
                continue
            if normal.startswith(_FORWARDING):
                inbound.forwarded.append((name, value))  # as sent: `x_forwarded_for` is not it
                continue
        elif name == b"cookie":
            cookies.append(value.decode("latin-1"))
        elif name == b"authorization" and not inbound.authorization:
            inbound.authorization = value.decode("latin-1")
        kept.append((name, value))
    inbound.count = len(raw)
    inbound.size = size
    inbound.cookie = "; ".join(cookies)
    return inbound
