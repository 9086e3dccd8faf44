"""What each request leaves behind: its id, its metrics and, with `[logging] format = "json"`, its
access line. `RequestPath` calls `start()` as a request arrives and `done()` once it is answered;
in between, the request's record is the context variable `CURRENT`, which the log lines written
for it read their request id from (logs.py).

The request id is a trusted proxy's `X-Request-ID` (`[security] trusted_proxies`); any other
client's was dropped with the forwarding headers (middleware/inbound.py) and the portal makes
one. Products receive it as `X-Request-ID`. `start()` runs before `proxies.apply`, while the
scope's client is still the peer that connected: that peer is the one that vouches for the id.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import re
import secrets
from bisect import bisect_left
from collections.abc import Awaitable
from contextvars import ContextVar, Token
from time import perf_counter

from .metrics import BUCKETS, Metrics, Tally
from .middleware.guard import CROSS_SITE, Refusal
from .middleware.inbound import Inbound
from .middleware.proxies import Proxies
from .routes import Route
from .types import Message, Scope, Send
from .user import PortalUser

ACCESS = logging.getLogger("portal_asgi.access")

# Methods named in the metrics; any other is "other" (a client may invent methods).
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "WEBSOCKET"))
# The statuses of the portal's refusals, and of its pages' own (a failed sign-in, a 405...).
REFUSED = frozenset((400, 401, 403, 404, 405, 413, 429, 431))
_STARTS = ("http.response.start", "websocket.http.response.start")
# what a proxy's id may hold: it goes into log lines and a header
_GOOD_ID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")
_HEADER = b"x-request-id"


class Seen:
    """One request as it goes: its `send` (`forward`) that remembers the status, and what the
    request path learns about the request on the way. Made, it is `CURRENT` until
    `Observer.done()`."""

    __slots__ = (
        "method",
        "path",
        "refusal",
        "request_id",
        "route",
        "send",
        "started",
        "status",
        "token",
    )

    def __init__(self, send: Send, request_id: bytes, scope: Scope) -> None:
        self.send = send
        self.request_id = request_id
        self.started = perf_counter()
        # as they arrived: a product may rewrite the scope it is handed
        self.method: str = scope.get("method", "WEBSOCKET")
        self.path: str = scope["path"]
        self.route: Route | None = None  # None: refused before the route was looked up
        self.status = 0  # 0 until the answer started
        self.refusal: str | None = None  # the portal's refusal, by reason
        self.token: Token[Seen | None] = CURRENT.set(self)

    def forward(self, message: Message) -> Awaitable[None]:
        """The request's `send`: the server's, remembering the status. Not a coroutine of its
        own: the server's send is awaited directly."""
        kind = message["type"]
        if kind == "http.response.body":  # the most frequent, first
            return self.send(message)
        if kind in _STARTS:
            self.status = int(message["status"])
        elif kind == "websocket.accept":
            self.status = 101
        elif kind == "websocket.close" and not self.status:
            self.status = 403  # closed before accept: servers answer the handshake 403
        return self.send(message)


CURRENT: ContextVar[Seen | None] = ContextVar("portal_asgi_request", default=None)


def request_id() -> str | None:
    """The id of the request being answered, or None outside one."""
    seen = CURRENT.get()
    return None if seen is None else seen.request_id.decode("latin-1")


def refusing(refusal: Refusal | str) -> None:
    """The portal refuses the request being answered (the reason is counted in `done()`, by
    what was answered: a browser sent to sign in is no refusal)."""
    seen = CURRENT.get()
    if seen is not None:
        seen.refusal = refusal if isinstance(refusal, str) else reason(refusal)


def reason(refusal: Refusal) -> str:
    if refusal.event != "denied":
        return refusal.event
    return "cross-site" if refusal.text == CROSS_SITE else ""  # "": by its status


class Observer:
    def __init__(self, metrics: Metrics, proxies: Proxies, *, access_log: bool) -> None:
        self.metrics = metrics
        self.proxies = proxies
        # A worker's own ids: a random prefix and a counter, unique without a system call.
        self.prefix = secrets.token_hex(8).encode()
        self.counter = itertools.count(1)
        self.access = ACCESS if access_log else None

    def start(self, scope: Scope, inbound: Inbound, send: Send) -> Seen:
        """Before `proxies.apply`: the peer is still the one that connected."""
        forwarded = inbound.forwarded
        given = self._from_proxy(scope, forwarded) if forwarded else None
        request_id = given or b"%b%016x" % (self.prefix, next(self.counter))
        inbound.headers.append((_HEADER, request_id))
        return Seen(send, request_id, scope)  # and CURRENT is the request's until done()

    def _from_proxy(self, scope: Scope, forwarded: list[tuple[bytes, bytes]]) -> bytes | None:
        sent = [value for name, value in forwarded if name.lower() == _HEADER]
        if len(sent) != 1 or not self.proxies.networks or _GOOD_ID.fullmatch(sent[0]) is None:
            return None
        client = scope.get("client")
        try:
            peer = ipaddress.ip_address(str(client[0])) if client else None
        except ValueError:
            return None
        return sent[0] if self.proxies.trusts(peer) else None

    def done(self, scope: Scope, seen: Seen) -> None:
        seconds = perf_counter() - seen.started
        CURRENT.reset(seen.token)
        route = seen.route
        if route is None:
            mount = "none"
        else:
            mount = route.path or ("portal" if route.kind == "page" else "none")
        method = seen.method
        status = seen.status
        key = (mount, method if method in METHODS else "other", status)
        tallies = self.metrics.tallies  # a new dictionary after each flush
        tally = tallies.get(key)
        if tally is None:
            tally = tallies[key] = Tally()
        tally.count += 1
        tally.total += seconds
        tally.buckets[bisect_left(BUCKETS, seconds)] += 1
        refusal = seen.refusal
        if refusal is not None or (status in REFUSED and mount == "portal"):
            self._refused(refusal or "", status)
        if self.access is not None:
            self._access_line(scope, seen, mount, seconds)

    def _refused(self, reason: str, status: int) -> None:
        if not reason:
            if status not in REFUSED:
                return  # answered otherwise (a browser sent to sign in)
            reason = str(status)
        refusals = self.metrics.refusals
        refusals[reason] = refusals.get(reason, 0) + 1

    def _access_line(self, scope: Scope, seen: Seen, mount: str, seconds: float) -> None:
        user = scope.get("user")
        client = scope.get("client")
        fields = {
            "method": seen.method,
            "path": seen.path,
            "status": seen.status,
            "duration_ms": round(seconds * 1000, 3),
            "user": user.username if isinstance(user, PortalUser) else None,
            "mount": mount,
            "client": client[0] if client else None,
        }
        # the request id is read by the formatter from CURRENT, which done() already reset
        self.access.info(  # type: ignore[union-attr]
            "%s %s %d",
            fields["method"],
            fields["path"],
            seen.status,
            extra={"portal_request": fields, "request_id": seen.request_id.decode("latin-1")},
        )
