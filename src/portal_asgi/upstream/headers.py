"""What an upstream receives, and what comes back from it: the headers either way, and the
upstream's address for a request.

To the upstream: the request's headers without the hop-by-hop ones (and those the `Connection`
header names), without the portal's own cookies and without the Bearer token the portal
identified the caller by (both are credentials for the portal, not for the product); with
`Host` set to the upstream's, `X-Forwarded-For`, `-Proto`, `-Host` and `-Prefix` set by the
portal, the trusted `X-Portal-*` headers identity.py added, and `X-Portal-Assertion`.

From the upstream: its headers without the hop-by-hop ones, `Server` and `Date` (the portal's
server sets its own), and any `Set-Cookie` naming one of the portal's cookies; with `rewrite =
true`, `Location` and the `Path` of `Set-Cookie` moved from the upstream's prefix to the mount's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from ..types import Scope
from ..user import PortalUser

logger = logging.getLogger("portal_asgi.upstream")

Headers = list[tuple[bytes, bytes]]

# RFC 9110 section 7.6.1, and the old names proxies still meet
HOP_BY_HOP = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    )
)
# what the portal sets itself; Expect: the portal's server already answered 100-continue
_SET_BY_PORTAL = frozenset(
    (
        b"host",
        b"expect",
        b"forwarded",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-prefix",
        b"x-real-ip",
    )
)
_REQUEST_DROPPED = HOP_BY_HOP | _SET_BY_PORTAL
# the handshake's own headers, which the WebSocket client library writes
_HANDSHAKE_DROPPED = _REQUEST_DROPPED | {
    b"sec-websocket-key",
    b"sec-websocket-version",
    b"sec-websocket-extensions",
    b"sec-websocket-protocol",
}
_RESPONSE_DROPPED = HOP_BY_HOP | {b"server", b"date"}
_PATH_SAFE = "/!$&'()*+,;=:@-._~"


def is_portal_cookie(name: str) -> bool:
    """The portal's cookies (session, CSRF, OIDC sign-in): `portal_*`, `__Host-portal_*`."""
    return name.strip().removeprefix("__Host-").startswith("portal_")


@dataclass(frozen=True, slots=True)
class Target:
    """An upstream's address: `origin` (`http://host:port`) and `prefix` (`/app` or "")."""

    origin: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        return cls(f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/"))

    @property
    def host(self) -> bytes:
        return self.origin.partition("://")[2].encode("latin-1")

    @property
    def websocket_origin(self) -> str:
        return "ws" + self.origin.removeprefix("http")  # http -> ws, https -> wss

    def path(self, scope: Scope) -> str:
        """The request's path below its mount, under the upstream's prefix, with its query.
        As the client encoded it (`raw_path`) where that still starts with the mount's path."""
        mount = str(scope["portal"]["mount"])
        raw = scope.get("raw_path")
        text = raw.decode("latin-1") if raw else ""
        if text.startswith(mount + "/"):
            below = text[len(mount) :]
        else:  # no raw path, or the mount's own letters percent-encoded
            below = quote(str(scope["path"])[len(mount) :], safe=_PATH_SAFE)
        query = scope.get("query_string", b"")
        return self.prefix + below + ("?" + query.decode("latin-1") if query else "")

    def url(self, scope: Scope) -> str:
        return self.origin + self.path(scope)

    def websocket_url(self, scope: Scope) -> str:
        return self.websocket_origin + self.path(scope)


def to_upstream(
    scope: Scope, target: Target, *, assertion: bytes | None, websocket: bool = False
) -> Headers:
    """The headers the upstream receives (without `Host` for a WebSocket: its client writes
    that one)."""
    dropped = _HANDSHAKE_DROPPED if websocket else _REQUEST_DROPPED
    user = scope.get("user")
    # the Bearer token the portal identified the caller by: a credential for the portal only
    bearer_used = isinstance(user, PortalUser) and user.via in ("token", "provider")
    headers: Headers = []
    named: set[bytes] = set()  # what `Connection` says is hop-by-hop too
    host = forwarded_host = b""
    for name, value in scope.get("headers", ()):
        if name == b"connection":
            named.update(part.strip().lower() for part in value.split(b","))
        elif name == b"host":
            host = value
        elif name == b"x-forwarded-host":  # a trusted proxy's (proxies.py), kept by the portal
            forwarded_host = forwarded_host or value
        if name in dropped:
            continue
        if name == b"cookie":
            value = _without_portal_cookies(value)
            if not value:
                continue
        elif name == b"authorization" and bearer_used:
            continue
        headers.append((name, value))
    if named:
        headers = [(name, value) for name, value in headers if name not in named]
    client = scope.get("client")
    secure = scope.get("scheme") in ("https", "wss")
    if not websocket:
        headers.append((b"host", target.host))
    if client:
        headers.append((b"x-forwarded-for", str(client[0]).encode("latin-1")))
    headers.append((b"x-forwarded-proto", b"https" if secure else b"http"))
    if forwarded_host or host:
        headers.append((b"x-forwarded-host", forwarded_host or host))
    headers.append((b"x-forwarded-prefix", str(scope.get("root_path", "")).encode("latin-1")))
    if assertion is not None:
        headers.append((b"x-portal-assertion", assertion))
    return headers


def _without_portal_cookies(value: bytes) -> bytes:
    parts = value.split(b";")
    kept = [
        part.strip()
        for part in parts
        if part.strip() and not is_portal_cookie(part.partition(b"=")[0].decode("latin-1"))
    ]
    return b"; ".join(kept) if len(kept) != len(parts) else value


@dataclass(frozen=True, slots=True)
class Rewrite:
    """`rewrite = true`: paths of the upstream (under its prefix) put under the mount (`root`,
    the path the browser sees the mount at)."""

    target: Target
    root: str

    def path(self, path: str) -> str | None:
        """The path under the mount, or None when `path` is not under the upstream's prefix."""
        prefix = self.target.prefix
        if prefix:
            if not (path == prefix or path.startswith((prefix + "/", prefix + "?"))):
                return None
            path = path[len(prefix) :]
        if not path.startswith("/"):
            path = "/" + path
        return self.root + path

    def location(self, value: str) -> str:
        origin = self.target.origin
        if value[: len(origin)].lower() == origin.lower() and (
            len(value) == len(origin) or value[len(origin)] in "/?"
        ):
            path = value[len(origin) :]
        elif value.startswith("/") and not value.startswith("//"):
            path = value
        else:
            return value  # relative, or somewhere else entirely
        moved = self.path(path)
        return value if moved is None else moved

    def cookie(self, value: str) -> str:
        """`Path` moved under the mount; `Domain` dropped (it named the upstream's host)."""
        parts = value.split(";")
        kept = [parts[0]]
        for part in parts[1:]:
            name, sep, attribute = part.strip().partition("=")
            if name.lower() == "domain":
                continue
            if name.lower() == "path" and sep:
                moved = self.path(attribute.strip())
                if moved is not None:  # `Path=/` becomes the mount's path, not its slash form
                    part = f" Path={self.root if moved == self.root + '/' else moved}"
            kept.append(part)
        return ";".join(kept)


def from_upstream(headers: Headers, *, mount: str, rewrite: Rewrite | None) -> Headers:
    """The upstream's answer's headers, as the client receives them."""
    named: set[bytes] = set()
    answer: Headers = []
    for raw_name, value in headers:
        name = raw_name.lower()
        if name == b"connection":
            named.update(part.strip().lower() for part in value.split(b","))
        if name in _RESPONSE_DROPPED:
            continue
        if name == b"set-cookie":
            text = value.decode("latin-1")
            cookie = text.partition("=")[0]
            if is_portal_cookie(cookie):
                logger.warning("upstream of %s tried to set the portal's cookie %s", mount, cookie)
                continue
            if rewrite is not None:
                value = rewrite.cookie(text).encode("latin-1")
        elif name == b"location" and rewrite is not None:
            value = rewrite.location(value.decode("latin-1")).encode("latin-1")
        answer.append((name, value))
    if named:
        answer = [(name, value) for name, value in answer if name not in named]
    return answer
