"""Trusted proxies: `X-Forwarded-For` and `X-Forwarded-Proto` are honoured only when the peer is
one of `[security] trusted_proxies` (uvicorn's `--forwarded-allow-ips` semantics: the client is
the nearest address in `X-Forwarded-For` that is not itself a trusted proxy). From any other peer,
every forwarding header is removed, so neither the portal (regulation, audit) nor a product can
be told a made-up address. Run uvicorn with `--no-proxy-headers` and let this do the work
(docs/security.md)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from .types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# compared with `_` read as `-`: WSGI bridges turn both into the same HTTP_X_FORWARDED_FOR
_FORWARDING = (b"x-forwarded-", b"forwarded", b"x-real-ip", b"x-client-ip", b"true-client-ip")


def is_forwarding_header(name: bytes) -> bool:
    return name.lower().replace(b"_", b"-").startswith(_FORWARDING)


def _address(value: str) -> Address | None:
    value = value.strip()
    if value.startswith("["):  # [v6]:port
        value = value[1 : value.find("]")] if "]" in value else ""
    elif value.count(":") == 1:  # v4:port
        value = value.partition(":")[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


class TrustedProxies:
    def __init__(self, app: ASGIApp, *, trusted: Iterable[str]) -> None:
        self.app = app
        self.networks: list[Network] = [ipaddress.ip_network(t, strict=False) for t in trusted]

    def trusts(self, address: Address | None) -> bool:
        return address is not None and any(address in network for network in self.networks)

    def client_from(self, forwarded_for: list[str], peer: str) -> str:
        """The nearest untrusted address, reading right (nearest) to left."""
        hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
        for hop in reversed(hops):
            address = _address(hop)
            if address is None:
                return peer  # a malformed hop: trust nothing further left of it
            if not self.trusts(address):
                return str(address)
        first = _address(hops[0]) if hops else None
        return str(first) if first else peer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = list(scope.get("headers", ()))
        client = scope.get("client")
        peer = str(client[0]) if client else ""
        kept = [(k, v) for k, v in headers if not is_forwarding_header(k)]
        if self.networks and self.trusts(_address(peer)):
            forwarded_for = [v.decode("latin-1") for k, v in headers if k == b"x-forwarded-for"]
            protos = [v.decode("latin-1").strip() for k, v in headers if k == b"x-forwarded-proto"]
            if forwarded_for:
                real = self.client_from(forwarded_for, peer)
                scope["client"] = (real, 0)
                kept.append((b"x-forwarded-for", real.encode()))
            if protos and protos[-1] in ("http", "https"):
                scheme = protos[-1]
                scope["scheme"] = (
                    scheme.replace("http", "ws") if scope["type"] == "websocket" else scheme
                )
                kept.append((b"x-forwarded-proto", scheme.encode()))
            kept += [(k, v) for k, v in headers if k == b"x-forwarded-host"]
        scope["headers"] = kept
        await self.app(scope, receive, send)
