"""Why an OIDC login was refused. Sits beside the tree in portal_asgi.exceptions:

PortalError
└── LoginRefused          the callback cannot finish a login: says why, to the user and the audit log
"""

from __future__ import annotations

from collections.abc import Mapping

from ..exceptions import PortalError


class LoginRefused(PortalError):
    def __init__(
        self, status: int, message: str, reason: str, *, detail: Mapping[str, str] | None = None
    ) -> None:
        self.status = status  # HTTP status of the page
        self.message = message  # plain words for the person at the browser
        self.reason = reason  # for the log and the audit entry
        self.detail = dict(detail or {})  # more for the audit entry (who, when the provider said)
        super().__init__(reason)
