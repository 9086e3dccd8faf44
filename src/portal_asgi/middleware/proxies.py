"""Trusted proxies: `X-Forwarded-For` and `X-Forwarded-Proto` are honoured only when the peer is
one of `[security] trusted_proxies` (uvicorn's `--forwarded-allow-ips` semantics: the client is
the nearest address in `X-Forwarded-For` that is not itself a trusted proxy). From any other
peer every forwarding header was already dropped (`inbound.py`), so neither the portal
(regulation, audit) nor a product can be told a made-up address. uvicorn must run with
`--no-proxy-headers`: its own rewrite would have replaced the peer before the portal sees it
(docs/security.md)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from ..types import Scope
from .inbound import Inbound, is_forwarding_header

__all__ = ["Proxies", "is_forwarding_header"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


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


class Proxies:
    def __init__(self, trusted: Iterable[str]) -> None:
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

    def apply(self, scope: Scope, inbound: Inbound) -> None:
        """From a trusted peer, the client address and scheme it reports, and the forwarding
        headers it sent (normalised) back among those products see."""
        if not self.networks or not inbound.forwarded:
            return
        client = scope.get("client")
        if not self.trusts(_address(str(client[0]) if client else "")):
            return
        sent = inbound.forwarded
        forwarded_for = [v.decode("latin-1") for k, v in sent if k == b"x-forwarded-for"]
        protos = [v.decode("latin-1").strip() for k, v in sent if k == b"x-forwarded-proto"]
        if forwarded_for:
            real = self.client_from(forwarded_for, str(client[0]) if client else "")
            scope["client"] = (real, 0)
            inbound.headers.append((b"x-forwarded-for", real.encode()))
        if protos and protos[-1] in ("http", "https"):
            scheme = protos[-1]
            scope["scheme"] = (
                scheme.replace("http", "ws") if scope["type"] == "websocket" else scheme
            )
            inbound.headers.append((b"x-forwarded-proto", scheme.encode()))
        inbound.headers += [(k, v) for k, v in sent if k == b"x-forwarded-host"]
