"""The steps of the request path, one concern a module. `portal_asgi.app.RequestPath` calls them
in order; nothing here routes, and nothing reads what a product wrote into the scope.

| module | step |
| --- | --- |
| `inbound.py` | one pass over the request headers: what the portal reads, what products may see |
| `proxies.py` | the real client address and scheme, from trusted proxies only |
| `limits.py` | too many or too large headers (431); bodies too large for the portal's pages (413) |
| `paths.py` | paths that could be read two ways (400) |
| `identity.py` | who is calling: session cookie or Bearer token; the session's refresh |
| `crosssite.py`, `origins.py` | unsafe cross-site requests on the session cookie, cross-site WebSocket handshakes (403) |
| `guard.py` | the level a route requires, checked where the route was chosen |
| `headers.py` | security headers on every answer, by who answered (the portal or a product) |
| `denials.py` | the portal's refusals, rate-limited, into the audit log |
"""
