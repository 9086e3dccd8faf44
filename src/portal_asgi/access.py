"""One verdict on a caller: does their credential still speak for them, and may they reach a
level. The request path asks at dispatch (`middleware/identity.py` for the credential, the route
for the level); an open WebSocket is asked again whenever the directory changes (`sockets.py`).
Both call these functions, so the HTTP and WebSocket rules cannot drift apart.

| answer | HTTP | open WebSocket |
| --- | --- | --- |
| `ENDED`: logged out, session or token revoked, user removed (or the name now someone else's), expired | no identity (401, or 303 to sign in) | closed 4401 |
| `BARRED`: the user is disabled | no identity | closed 4403 (signing in again cannot help) |
| level too low (`verdict`) | 403 | closed 4403 |
"""

from __future__ import annotations

from .directory import Directory
from .levels import Levels
from .user import PortalUser

GOOD = 0
ENDED = 401
BARRED = 403


def standing(directory: Directory, user: PortalUser, now: float) -> int:
    """GOOD while `user`'s credential still speaks for them, else ENDED or BARRED."""
    # by name and id: a token of a deleted user does not fit whoever has their name now
    state = directory.holder(user.username, user.uid) if user.uid else None
    if state is not None and not state.active:
        return BARRED  # checked before revocation: disabling also revokes
    if now >= user.expires:
        return ENDED
    if user.via == "provider":
        return GOOD  # the provider's own token: its signature and expiry were its checks
    if state is None or directory.is_revoked(user.sid):
        return ENDED
    return GOOD


def level_of(directory: Directory, user: PortalUser) -> str:
    """The level `user` holds now: the directory's for the portal's own sessions and tokens (a
    changed level applies at once, and a hand-edited claim gains nothing); a provider's access
    token carries its level in its own claims."""
    if user.via == "provider":
        return user.level
    state = directory.holder(user.username, user.uid)
    return state.level if state is not None else user.level


def verdict(
    directory: Directory, levels: Levels, user: PortalUser | None, required: str, now: float
) -> int:
    """GOOD when the caller may reach a mount at `required`; ENDED (no valid identity where one
    is needed) or BARRED (disabled, or a level too low) otherwise."""
    if user is None:
        return GOOD if levels.allows(None, required) else ENDED
    status = standing(directory, user, now)
    if status:
        return status
    return GOOD if levels.allows(level_of(directory, user), required) else BARRED
