"""The admin area's users: a table searched and paged in the database, a page per user with
their sessions and API tokens, and every change the service offers.

GET  /admin/users?q=&offset=         the table (50 a page) and the form that creates a user
POST /admin/users                    create a local user (a one-time password shown once when
                                     none is given)
GET  /admin/user?name=               one user: facts, actions, sessions, API tokens
POST /admin/user/level               `username`, `level`
POST /admin/user/state               `username`, `active` (1 enables, 0 disables)
POST /admin/user/password            `username`: a one-time password, shown once (re-auth)
POST /admin/user/sign-out            `username`: every session and token revoked
POST /admin/user/delete              `username`, `confirm=yes` (re-auth)
POST /admin/user/tokens              `username`, `label`, `ttl`: shown once (re-auth for
                                     someone else's)
POST /admin/sessions/revoke          `id`, `username` (the page to go back to)

A user is named by a query parameter or a form field, never a path segment: a name may hold
characters that a path cannot carry unambiguously (the portal refuses `%2F`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..exceptions import DatabaseUnavailable
from ..pages.forms import TOKEN_LIFETIMES, with_query
from . import service
from .errors import AdminError, Invalid, NotFound
from .section import GET, PAGE_SIZE, POST, EndpointSpec, Section

NOTICES = {
    "created": "User created.",
    "level": "Level changed: it applies from their next request, on every worker.",
    "disabled": "User disabled and signed out everywhere.",
    "enabled": "User enabled: they may sign in again.",
    "signed-out": "Every session and API token of theirs is revoked.",
    "revoked": "Revoked: that session or token no longer works.",
    "deleted": "User deleted, and everything of theirs revoked.",
}

Run = Callable[[dict[str, str]], Awaitable[Response]]


def user_url(username: str) -> str:
    return with_query("/admin/user", name=username)


def _offset(request: Request) -> int:
    value = request.query_params.get("offset", "0")
    return int(value) if value.isdigit() and len(value) < 10 else 0


class UsersPage(Section):
    heading = "Users"
    path = "/admin/users"

    def endpoints(self) -> list[EndpointSpec]:
        return [
            ("/admin/users", self.list, GET),
            ("/admin/users", self.create, POST),
            ("/admin/user", self.show, GET),
            ("/admin/user/level", self.set_level, POST),
            ("/admin/user/state", self.set_state, POST),
            ("/admin/user/password", self.reset_password, POST),
            ("/admin/user/sign-out", self.sign_out, POST),
            ("/admin/user/delete", self.delete, POST),
            ("/admin/user/tokens", self.mint, POST),
            ("/admin/sessions/revoke", self.revoke, POST),
        ]

    # --- the table ------------------------------------------------------------------------------

    async def list(self, request: Request) -> Response:
        return await self.render_list(request)

    async def render_list(
        self,
        request: Request,
        *,
        status: int = 200,
        error: str = "",
        form: dict[str, str] | None = None,
    ) -> Response:
        q = request.query_params.get("q", "").strip()
        offset = _offset(request)
        try:
            found = await service.list_users(self.ctx, q=q, offset=offset, limit=PAGE_SIZE)
        except AdminError as exc:
            found = await service.list_users(self.ctx, q="", offset=0, limit=PAGE_SIZE)
            error = error or exc.detail
        except DatabaseUnavailable:
            return self.unavailable(request)
        here = found.offset
        previous_url = (
            with_query("/admin/users", q=found.q, offset=max(0, here - PAGE_SIZE))
            if here > 0
            else ""
        )
        next_url = (
            with_query("/admin/users", q=found.q, offset=here + PAGE_SIZE)
            if here + PAGE_SIZE < found.total
            else ""
        )
        return self.admin_page(
            request,
            "admin/users.html",
            status=status,
            users=found.users,
            total=found.total,
            q=found.q,
            offset=here,
            count=len(found.users),
            previous_url=previous_url,
            next_url=next_url,
            form=form or {"username": "", "email": "", "level": self.runtime.levels.lowest},
            notice=self.notice(request, NOTICES),
            error=error,
        )

    async def create(self, request: Request) -> Response:
        form: dict[str, str] = {}

        async def again(status: int, error: str) -> Response:
            return await self.render_list(request, status=status, error=error, form=form)

        async def run(fields: dict[str, str]) -> Response:
            form.update(
                username=fields.get("username", "").strip(),
                email=fields.get("email", "").strip(),
                level=fields.get("level", ""),
            )
            created = await service.create_user(
                self.ctx,
                self.actor(request),
                username=form["username"],
                level=form["level"],
                email=form["email"],
                password=fields.get("password") or None,
            )
            username = created.user.username
            if created.password is None:
                return self.back(user_url(username), "created")
            return self.shown_once(
                request,
                heading=f"{username} is created",
                text=f"Give {username} this one-time password; they must choose their own at "
                "their first sign-in.",
                value=created.password,
                back=user_url(username),
            )

        return await self.handle(request, run, again)

    def shown_once(self, request: Request, **shown: Any) -> Response:
        return self.admin_page(request, "admin/secret.html", shown=shown)

    # --- one user -------------------------------------------------------------------------------

    async def show(self, request: Request) -> Response:
        return await self.render_user(request, request.query_params.get("name", ""))

    async def render_user(
        self, request: Request, username: str, *, status: int = 200, error: str = ""
    ) -> Response:
        try:
            detail = await service.get_user(self.ctx, username)
        except NotFound:
            return self.refusal(request, 404, "No such user", f"There is no user {username!r}.")
        except DatabaseUnavailable:
            return self.unavailable(request)
        me = self.user(request)
        return self.admin_page(
            request,
            "admin/user.html",
            status=status,
            heading=detail.user.username,
            target=detail.user,
            browser_sessions=detail.sessions,
            api_tokens=detail.tokens,
            current_sid=me.sid if me.via == "session" else "",
            ttls=TOKEN_LIFETIMES,
            notice=self.notice(request, NOTICES),
            error=error,
        )

    async def on_user(self, request: Request, run: Run) -> Response:
        """A change to the user the form names; a refusal shows their page again with it."""
        named: dict[str, str] = {}

        async def again(status: int, error: str) -> Response:
            if status == 404 or not named.get("username"):
                return self.refusal(request, status, "Not changed", error)
            return await self.render_user(request, named["username"], status=status, error=error)

        async def checked(fields: dict[str, str]) -> Response:
            named["username"] = fields.get("username", "")
            return await run(fields)

        return await self.handle(request, checked, again)

    async def set_level(self, request: Request) -> Response:
        async def run(fields: dict[str, str]) -> Response:
            username = fields["username"]
            await service.set_level(
                self.ctx, self.actor(request), username, fields.get("level", "")
            )
            return self.back(user_url(username), "level")

        return await self.on_user(request, run)

    async def set_state(self, request: Request) -> Response:
        async def run(fields: dict[str, str]) -> Response:
            username, active = fields["username"], fields.get("active")
            if active not in ("0", "1"):
                raise Invalid("active", "active is 1 (enable) or 0 (disable)")
            disabled = active == "0"
            await service.set_disabled(self.ctx, self.actor(request), username, disabled)
            return self.back(user_url(username), "disabled" if disabled else "enabled")

        return await self.on_user(request, run)

    async def reset_password(self, request: Request) -> Response:
        async def run(fields: dict[str, str]) -> Response:
            username = fields["username"]

            async def reset() -> Response:
                done = await service.reset_password(self.ctx, self.actor(request), username)
                return self.shown_once(
                    request,
                    heading=f"New password for {username}",
                    text=f"Give {username} this one-time password; they must choose their own "
                    "at their next sign-in.",
                    value=done.password,
                    back=user_url(username),
                )

            what = f"Resetting the password of {username}"
            return await self.sensitive(request, fields, what, user_url(username), reset)

        return await self.on_user(request, run)

    async def sign_out(self, request: Request) -> Response:
        async def run(fields: dict[str, str]) -> Response:
            username = fields["username"]
            await service.sign_out_everywhere(self.ctx, self.actor(request), username)
            return self.back(user_url(username), "signed-out")

        return await self.on_user(request, run)

    async def delete(self, request: Request) -> Response:
        async def run(fields: dict[str, str]) -> Response:
            username = fields["username"]
            if fields.get("confirm") != "yes":
                raise Invalid("confirm", f"tick the box to confirm deleting {username}")

            async def delete() -> Response:
                await service.delete_user(self.ctx, self.actor(request), username)
                return self.back("/admin/users", "deleted")

            what = f"Deleting {username}"
            return await self.sensitive(request, fields, what, user_url(username), delete)

        return await self.on_user(request, run)

    async def mint(self, request: Request) -> Response:
        async def run(fields: dict[str, str]) -> Response:
            username = fields["username"]

            async def mint() -> Response:
                minted = await service.mint_token(
                    self.ctx,
                    self.actor(request),
                    username,
                    label=fields.get("label", "").strip(),
                    ttl=fields.get("ttl") or None,
                )
                label = f" “{minted.label}”" if minted.label else ""
                return self.shown_once(
                    request,
                    heading=f"API token for {username}",
                    text=f"The token{label} opens what {username}'s level opens, sent as "
                    "Authorization: Bearer <token>, until it expires or is revoked.",
                    value=minted.token,
                    expires=minted.expires_at,
                    back=user_url(username),
                )

            what = f"Creating an API token for {username}"
            return await self.sensitive(request, fields, what, user_url(username), mint)

        return await self.on_user(request, run)

    async def revoke(self, request: Request) -> Response:
        async def run(fields: dict[str, str]) -> Response:
            found = await service.revoke_session(
                self.ctx, self.actor(request), fields.get("id", "")
            )
            return self.back(user_url(fields.get("username") or found.username), "revoked")

        return await self.on_user(request, run)
