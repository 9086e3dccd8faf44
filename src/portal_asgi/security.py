"""The security middlewares, in the order they wrap the request path (docs/security.md):

SecurityHeaders     headers on every answer, decided when the answer starts
  TrustedProxies    the real client address and scheme; forwarding headers from others removed
    AuditDenials    the portal's refusals, rate-limited, into the audit log
      RequestLimits too many headers (431), bodies too large for the portal's pages (413)
        PathCheck, Identity (app.py)
          CrossSiteCheck  unsafe cross-site requests carrying the session cookie (403)
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.middleware import Middleware

from .audit import AuditDenials, ensure_log_handler
from .crosssite import CrossSiteCheck, MountTable
from .headers import SecurityHeaders
from .limits import RequestLimits
from .proxies import TrustedProxies
from .runtime import Runtime
from .types import Scope


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def security_outer(runtime: Runtime) -> list[Middleware]:
    settings = runtime.settings
    security = settings.security
    products = frozenset(product.mount.path for product in runtime.products)

    def is_product(scope: Scope) -> bool:
        return scope.get("portal", {}).get("mount") in products

    oidc = settings.auth.oidc
    form_targets = tuple(filter(None, [_origin(oidc.issuer)])) if oidc is not None else ()
    ensure_log_handler()
    return [
        Middleware(
            SecurityHeaders,
            is_product=is_product,
            product_headers=security.product_headers,
            https=settings.https,
            hsts_max_age=security.hsts_max_age,
            form_targets=form_targets,
        ),
        Middleware(TrustedProxies, trusted=security.trusted_proxies),
        Middleware(
            AuditDenials,
            db=runtime.db,
            per_minute=security.audit_denials_per_minute,
            products=products,
        ),
        Middleware(
            RequestLimits,
            max_body_size=security.max_body_size,
            max_headers=security.max_headers,
            max_header_size=security.max_header_size,
        ),
    ]


def security_inner(runtime: Runtime) -> list[Middleware]:
    mounts = MountTable((m.path, m.csrf) for m in runtime.settings.mounts)
    return [Middleware(CrossSiteCheck, origin=runtime.settings.portal.base_url, mounts=mounts)]
