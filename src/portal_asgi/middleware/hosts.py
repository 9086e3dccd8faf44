"""The portal's own address. A browser keeps cookies per host name: signed in at `localhost`
while `[portal] base_url` says `127.0.0.1`, its session would belong to `localhost` alone, and
everything the portal builds from base_url (the Origin checks of forms and WebSockets, the OIDC
callback, addresses it hands out) would point at the other name. So a browser's page request
(GET or HEAD asking for text/html) whose `Host` is not base_url's is sent (307) to the same path
and query at base_url, before the portal reads anything else of it.

Left alone:
- anything but a browser's page request: scripts, probes and API clients work at any name, and
  a form post is never sent elsewhere with its body;
- a request from a trusted proxy, or carrying forwarding headers (`X-Forwarded-*`,
  `Forwarded`...): a proxy knows the address the browser used, and one that does not pass
  `Host` on would otherwise be sent round in circles;
- a browser that was just sent here (a short-lived marker cookie): should it arrive with the
  wrong `Host` again, a proxy in front rewrites it; the request is served, and the log says why.

The `Location` is made of base_url and the request's path and query: the `Host` a client sent
never appears in an answer (no Host header injection), and a path starting `//` stays a path.
"""

from __future__ import annotations

import ipaddress
import logging
from urllib.parse import quote, quote_from_bytes, urlsplit

from ..answers import header, is_browser, send_response
from ..cookies import cookie_name, read_cookie, set_cookie
from ..types import Scope, Send
from .inbound import Inbound
from .proxies import Proxies

logger = logging.getLogger("portal_asgi.hosts")

_DEFAULT_PORTS = {"http": "80", "https": "443"}
# seconds the marker cookie lasts: long enough for the redirect to be followed
MARKER_AGE = 30
# what may stay as it is in a path and a query; everything else is percent-encoded
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
_QUERY_SAFE = _PATH_SAFE + "?"


def normal_host(host: str, scheme: str) -> str:
    """`host[:port]` in lower case, without the scheme's default port."""
    host = host.strip().lower()
    default = _DEFAULT_PORTS.get(scheme)
    if default and host.endswith(":" + default) and not host.endswith("]"):
        host = host[: -len(default) - 1]
    return host


class Hosts:
    def __init__(self, base_url: str, proxies: Proxies) -> None:
        parts = urlsplit(base_url)
        self.base_url = base_url.rstrip("/")
        self.host = normal_host(parts.netloc, parts.scheme)
        self.scheme = parts.scheme
        self.proxies = proxies
        secure = parts.scheme == "https"
        self.marker = cookie_name("portal_moved", secure=secure)
        self.marker_cookie = set_cookie(self.marker, "1", secure=secure, max_age=MARKER_AGE).encode(
            "latin-1"
        )
        self.warned = False

    def elsewhere(self, scope: Scope, inbound: Inbound) -> bytes | None:
        """The `Location` at base_url for a browser that came by another name, or None."""
        if scope["type"] != "http" or not is_browser(scope, inbound.accept):
            return None
        host = header(scope, b"host")
        if not host or normal_host(host, self.scheme) == self.host:
            return None
        if inbound.forwarded or self._from_proxy(scope):
            return None
        if read_cookie(inbound.cookie, self.marker):
            if not self.warned:  # once per worker: it would be every page otherwise
                self.warned = True
                logger.warning(
                    "a browser sent to %s came back with Host %r: does the proxy in front pass "
                    "Host on (nginx: proxy_set_header Host $host)? Served as it is.",
                    self.base_url,
                    host[:100],
                )
            return None
        raw = scope.get("raw_path")  # as sent, percent-encoding and all
        path = (
            quote_from_bytes(raw, safe=_PATH_SAFE)
            if raw
            else quote(str(scope.get("path", "/")), safe=_PATH_SAFE.replace("%", ""))
        )
        query = scope.get("query_string", b"")
        target = (
            self.base_url + path + (f"?{quote_from_bytes(query, _QUERY_SAFE)}" if query else "")
        )
        return target.encode("latin-1")

    def _from_proxy(self, scope: Scope) -> bool:
        client = scope.get("client")
        if not client or not self.proxies.networks:
            return False
        try:
            return self.proxies.trusts(ipaddress.ip_address(str(client[0])))
        except ValueError:
            return False

    async def send_there(self, send: Send, location: bytes) -> None:
        # `location` is base_url and percent-encoded parts: nothing in it needs escaping
        body = b'This portal is at <a href="' + location + b'">its own address</a>.'
        extra = [(b"location", location), (b"set-cookie", self.marker_cookie)]
        await send_response(send, 307, body, "text/html; charset=utf-8", extra)
