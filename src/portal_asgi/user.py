"""Who is calling, as Starlette's authentication objects (`request.user`, `request.auth`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from starlette.authentication import AuthCredentials, BaseUser, UnauthenticatedUser

__all__ = ["AuthCredentials", "PortalUser", "UnauthenticatedUser"]


@dataclass(frozen=True, slots=True)
class PortalUser(BaseUser):
    username: str
    level: str
    email: str = ""
    name: str = ""
    sid: str = ""
    uid: str = ""  # the user's never-reused id (users.uid); "" for a provider's machine client
    via: str = "session"  # "session" (cookie), "token" (portal API token), "provider" (OIDC bearer)
    expires: float = math.inf  # `exp` of the credential: when an open WebSocket must close
    # a reset or first-start password not changed yet: the portal's pages lead to /account
    must_change_password: bool = False

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.name or self.username

    @property
    def identity(self) -> str:
        return self.username
