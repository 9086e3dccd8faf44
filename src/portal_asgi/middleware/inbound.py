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
# what the portal itself reads (ASGI names are lower case)
_READ = frozenset((b"cookie", b"authorization", b"accept"))


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
    accept: str = ""  # the first Accept header (is this a browser's navigation: answers.py)


def read(scope: Scope) -> Inbound:
    kept: Headers = []
    forwarded: Headers = []
    cookie = authorization = accept = ""
    size = 0
    raw = scope.get("headers") or ()
    for header in raw:
        name, value = header
        size += len(name) + len(value)
        if name[:1] in _SUSPECT:
            normal = name.lower().replace(b"_", b"-")
            if normal.startswith(_PORTAL):
                continue
            if normal.startswith(_FORWARDING):
                forwarded.append(header)  # as sent: `x_forwarded_for` is not it
                continue
        elif name in _READ:
            if name == b"cookie":
                # several Cookie headers (HTTP/2 may split one) read as one: RFC 9113 8.2.3
                text = value.decode("latin-1")
                cookie = f"{cookie}; {text}" if cookie else text
            elif name == b"authorization":
                authorization = authorization or value.decode("latin-1")
            else:
                accept = accept or value.decode("latin-1")
        kept.append(header)
    return Inbound(kept, len(raw), size, cookie, authorization, forwarded, accept)
