"""Why an OIDC login was refused. Sits beside the tree in portal_asgi.exceptions:

PortalError
└── LoginRefused          the callback cannot finish a login: says why, to the user and the audit log
"""

from __future__ import annotations

from ..exceptions import PortalError


class LoginRefused(PortalError):
    def __init__(self, status: int, message: str, reason: str) -> None:
        self.status = status  # HTTP status of the page
        self.message = message  # plain words for the person at the browser
        self.reason = reason  # for the log and the audit entry
        super().__init__(reason)
