"""What an admin or account operation refuses, each with the HTTP status and the JSON `error`
code the admin API answers with (`{"error": code, "detail": ..., "field": ...}`).

AdminError (UserError)            400 bad_request
├── BadRequest                    400 bad_request     (e.g. a local-only action on an OIDC user)
├── ReauthenticationRequired      403 reauthentication_required
├── NotFound                      404 not_found
├── Conflict                      409 conflict
│   ├── Exists                    409 exists          (a username taken)
│   └── LastAdmin                 409 last_admin      (no enabled admin would be left)
├── Invalid                       422 invalid         (names the `field`)
└── TooManyAttempts               429 too_many_attempts (login regulation; `retry_after`)
"""

from __future__ import annotations

from ..exceptions import UserError


class AdminError(UserError):
    status = 400
    code = "bad_request"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field

    def body(self) -> dict[str, str]:
        """The admin API's answer: `error`, `detail`, and `field` when one is at fault."""
        found = {"error": self.code, "detail": self.detail}
        if self.field is not None:
            found["field"] = self.field
        return found


class BadRequest(AdminError):
    pass


class ReauthenticationRequired(AdminError):
    """The caller's sign-in is older than the window sensitive actions allow: enter the current
    password again (or sign in again through the identity provider)."""

    status = 403
    code = "reauthentication_required"


class NotFound(AdminError):
    status = 404
    code = "not_found"


class Conflict(AdminError):
    status = 409
    code = "conflict"


class Exists(Conflict):
    code = "exists"


class LastAdmin(Conflict):
    code = "last_admin"


class Invalid(AdminError):
    """Bad input: `field` names what is wrong."""

    status = 422
    code = "invalid"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail, field=field)


class TooManyAttempts(AdminError):
    """Password checks for this account or address are banned for a while (login regulation)."""

    status = 429
    code = "too_many_attempts"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed password checks; try again in {retry_after} s")
        self.retry_after = retry_after
