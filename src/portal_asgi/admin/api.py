"""`/admin/api/`: the admin operations (service.py) as JSON, for scripts and for a job that syncs
users from an identity provider. docs/admin.md shows every call.

Who may call: a user at the highest level, by their API token (`Authorization: Bearer`), or by
their session cookie, when an unsafe method also carries the page's CSRF token in
`X-CSRF-Token`. The route table lets every caller reach `/admin` (it is a portal page), so this
app is where the level is enforced: no identity answers 401, any other level 403.

Answers are JSON; refusals are `{"error": code, "detail": text}` (plus `field` for bad input)
with 400, 403, 404, 409, 422 or 429, and 503 when the database does not answer. Times are
ISO 8601 UTC. Mount paths travel in the body or the `path` query parameter: a path inside the
URL would need `%2F`, which the portal refuses.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, request_response

from ..db.accounts import AuditRecord, SessionRecord
from ..db.store import UserRecord
from ..exceptions import DatabaseUnavailable
from ..reload import ReloadResult
from ..runtime import Runtime
from ..types import ASGIApp, Receive, Scope, Send
from ..user import PortalUser
from . import openapi, service
from .errors import AdminError, BadRequest, Invalid, TooManyAttempts

logger = logging.getLogger("portal_asgi.admin")

UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
NO_STORE = {"cache-control": "no-store"}
CSRF_HEADER = b"x-csrf-token"

Endpoint = Callable[[Request], Awaitable[Response]]


# --- JSON shapes -------------------------------------------------------------------------------


def when(value: dt.datetime | None) -> str | None:
    """A naive UTC time as ISO 8601 with `Z`."""
    return None if value is None else value.isoformat() + "Z"


def user_json(user: UserRecord) -> dict[str, Any]:
    return {
        "username": user.username,
        "email": user.email,
        "name": user.name,
        "level": user.level,
        "disabled": not user.active,
        "provider": user.provider,
        "created_at": when(user.created_at),
        "last_login_at": when(user.last_login_at),
        "must_change_password": user.must_change_password,
    }


def session_json(row: SessionRecord) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": "token" if row.kind == "api" else "session",
        "label": row.label,
        "created_at": when(row.created_at),
        "last_seen_at": when(row.last_seen_at),
        "expires_at": when(row.expires_at),
        "authenticated_at": when(row.authenticated_at),
        "client": row.client,
    }


def mount_json(view: service.MountView) -> dict[str, Any]:
    found: dict[str, Any] = {
        "path": view.path,
        "title": view.title,
        "kind": view.kind,
        "file_level": view.file_level,
        "level": view.level,
        "override": view.override.level if view.override else None,
        "override_by": view.override.changed_by if view.override else None,
        "override_at": when(view.override.changed_at) if view.override else None,
        "rules": list(view.rules),
    }
    if view.upstream:
        found["upstream"] = view.upstream
    return found


def audit_json(event: AuditRecord) -> dict[str, Any]:
    detail = {key: value for key, value in event.detail.items() if key != "by"}
    return {
        "id": event.id,
        "at": when(event.at),
        "event": event.event,
        "username": event.username,
        "by": event.detail.get("by", ""),
        "client": event.client,
        "detail": detail,
    }


# --- answers -----------------------------------------------------------------------------------


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={**NO_STORE, **(headers or {})})


def refusal(status: int, error: str, detail: str, **extra: Any) -> JSONResponse:
    headers = {}
    if status == 401:
        headers["www-authenticate"] = 'Bearer realm="portal-asgi admin"'
    return _json({"error": error, "detail": detail, **extra}, status, headers)


def _no_content() -> Response:
    return Response(status_code=204, headers=NO_STORE)


# --- who calls ---------------------------------------------------------------------------------


class AdminOnly:
    """Pure ASGI: only an admin passes; an unsafe request on the session cookie also needs the
    CSRF token in `X-CSRF-Token` (the token of any portal page's forms)."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        answer = self.check(scope)
        if answer is not None:
            await answer(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def check(self, scope: Scope) -> Response | None:
        user = scope.get("user")
        if not isinstance(user, PortalUser):
            return refusal(401, "authentication_required", "sign in, or send an admin's API token")
        if user.level != self.runtime.levels.highest:
            return refusal(
                403, "forbidden", f"the admin API is for level {self.runtime.levels.highest}"
            )
        if user.via == "session" and scope.get("method") in UNSAFE:
            headers = dict(scope.get("headers", ()))
            cookie = headers.get(b"cookie", b"").decode("latin-1")
            token = headers.get(CSRF_HEADER, b"").decode("latin-1") or None
            if not self.runtime.csrf.check(cookie, token):
                return refusal(
                    403,
                    "csrf_required",
                    "a request on the session cookie needs the page's CSRF token in X-CSRF-Token",
                )
        return None


def actor(request: Request) -> service.Actor:
    user = request.scope["user"]
    assert isinstance(user, PortalUser)
    return service.Actor.of(user, request.client.host if request.client else "")


# --- request bodies and parameters -------------------------------------------------------------


async def body_of(request: Request, allowed: tuple[str, ...]) -> dict[str, Any]:
    """The JSON object of the body ({} when empty); BadRequest when it is not JSON or not an
    object, Invalid naming the first key that is not in `allowed`."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        found = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not JSON") from None
    if not isinstance(found, dict):
        raise BadRequest("the body must be a JSON object")
    for key in found:
        if key not in allowed:
            raise Invalid(str(key)[:100], f"unknown field; expected any of {', '.join(allowed)}")
    return found


def int_param(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise Invalid(name, f"{name} must be a whole number") from None


def _string(body: dict[str, Any], key: str, *, default: str | None = None) -> str | None:
    value = body.get(key, default)
    if value is not None and not isinstance(value, str):
        raise Invalid(key, f"{key} must be a string")
    return value


# --- the endpoints -----------------------------------------------------------------------------


class AdminAPI:
    def __init__(self, runtime: Runtime, context: service.Context | None = None) -> None:
        self.runtime = runtime
        self.ctx = context or service.Context.of(runtime)

    def routes(self) -> list[Route]:
        e = self.errors
        return [
            Route("/openapi.json", e(self.openapi_document), methods=["GET"]),
            Route("/users", e(self.list_users), methods=["GET"]),
            Route("/users", e(self.create_user), methods=["POST"]),
            Route("/users/{name}", e(self.get_user), methods=["GET"]),
            Route("/users/{name}", e(self.update_user), methods=["PATCH"]),
            Route("/users/{name}", e(self.delete_user), methods=["DELETE"]),
            Route("/users/{name}/password", e(self.reset_password), methods=["POST"]),
            Route("/users/{name}/sign-out", e(self.sign_out), methods=["POST"]),
            Route("/users/{name}/tokens", e(self.mint_token), methods=["POST"]),
            Route("/sessions/{id}", e(self.revoke_session), methods=["DELETE"]),
            Route("/mounts", e(self.list_mounts), methods=["GET"]),
            Route("/mounts", e(self.set_mount_level), methods=["PATCH"]),
            Route("/audit", e(self.audit), methods=["GET"]),
            Route("/audit.csv", e(self.audit_csv), methods=["GET"]),
            Route("/reauthenticate", e(self.reauthenticate), methods=["POST"]),
            Route("/reload", e(self.reload), methods=["POST"]),
        ]

    def app(self) -> AdminOnly:
        """The API as an ASGI app, to mount at `/admin/api`."""
        app = Starlette(
            routes=self.routes(),
            exception_handlers={404: _http_error, 405: _http_error, 500: _server_error},
        )
        return AdminOnly(app, self.runtime)

    def errors(self, endpoint: Endpoint) -> Endpoint:
        """Refusals of the service as JSON answers; a database that does not answer as 503."""

        async def answer(request: Request) -> Response:
            try:
                return await endpoint(request)
            except TooManyAttempts as exc:
                return _json(exc.body(), exc.status, {"retry-after": str(exc.retry_after)})
            except AdminError as exc:
                return _json(exc.body(), exc.status)
            except DatabaseUnavailable as exc:
                logger.error("admin API: database unavailable: %s", exc)
                return refusal(503, "unavailable", "the portal cannot reach its database")

        answer.__name__ = endpoint.__name__
        return answer

    async def openapi_document(self, request: Request) -> Response:
        return _json(openapi.document(self.runtime.levels))

    async def list_users(self, request: Request) -> Response:
        page = await service.list_users(
            self.ctx,
            q=request.query_params.get("q", ""),
            offset=int_param(request, "offset", 0),
            limit=int_param(request, "limit", 50),
        )
        return _json(
            {
                "users": [user_json(user) for user in page.users],
                "total": page.total,
                "offset": page.offset,
                "limit": page.limit,
            }
        )

    async def create_user(self, request: Request) -> Response:
        body = await body_of(request, ("username", "email", "level", "password", "name"))
        if "username" not in body:
            raise Invalid("username", "username is required")
        if "level" not in body:
            raise Invalid("level", "level is required")
        created = await service.create_user(
            self.ctx,
            actor(request),
            username=body["username"],
            level=body["level"],
            email=_string(body, "email", default="") or "",
            name=_string(body, "name", default="") or "",
            password=body.get("password"),
        )
        answer = user_json(created.user)
        if created.password is not None:
            answer["password"] = created.password
        return _json(answer, 201, {"location": f"/admin/api/users/{created.user.username}"})

    async def get_user(self, request: Request) -> Response:
        detail = await service.get_user(self.ctx, request.path_params["name"])
        return _json(
            {
                **user_json(detail.user),
                "sessions": [session_json(row) for row in detail.sessions],
                "tokens": [session_json(row) for row in detail.tokens],
            }
        )

    async def update_user(self, request: Request) -> Response:
        body = await body_of(request, ("level", "disabled", "email"))
        if "level" in body and body["level"] is None:
            raise Invalid("level", "level cannot be null")
        if "disabled" in body and not isinstance(body["disabled"], bool):
            raise Invalid("disabled", "disabled is true or false")
        user = await service.update_user(
            self.ctx,
            actor(request),
            request.path_params["name"],
            level=body.get("level"),
            disabled=body.get("disabled"),
            email=_string(body, "email"),
        )
        return _json(user_json(user))

    async def delete_user(self, request: Request) -> Response:
        await service.delete_user(self.ctx, actor(request), request.path_params["name"])
        return _no_content()

    async def reset_password(self, request: Request) -> Response:
        body = await body_of(request, ("password",))
        if "password" in body and not isinstance(body["password"], str):
            raise Invalid("password", "password must be a string")
        done = await service.reset_password(
            self.ctx, actor(request), request.path_params["name"], body.get("password")
        )
        answer: dict[str, Any] = {"username": done.username, "must_change_password": True}
        if done.password is not None:
            answer["password"] = done.password
        return _json(answer)

    async def sign_out(self, request: Request) -> Response:
        await service.sign_out_everywhere(self.ctx, actor(request), request.path_params["name"])
        return _no_content()

    async def mint_token(self, request: Request) -> Response:
        body = await body_of(request, ("label", "ttl"))
        ttl = body.get("ttl")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, str | int | float)):
            raise Invalid("ttl", "ttl is a number of seconds or a duration such as '30d'")
        minted = await service.mint_token(
            self.ctx,
            actor(request),
            request.path_params["name"],
            label=_string(body, "label", default="") or "",
            ttl=ttl,
        )
        return _json(
            {
                "id": minted.id,
                "token": minted.token,
                "label": minted.label,
                "username": minted.username,
                "expires_at": when(minted.expires_at),
            },
            201,
        )

    async def revoke_session(self, request: Request) -> Response:
        await service.revoke_session(self.ctx, actor(request), request.path_params["id"])
        return _no_content()

    async def list_mounts(self, request: Request) -> Response:
        return _json([mount_json(view) for view in await service.list_mounts(self.ctx)])

    async def set_mount_level(self, request: Request) -> Response:
        body = await body_of(request, ("path", "level"))
        path = _string(body, "path") or request.query_params.get("path")
        if not path:
            raise Invalid("path", "path is required, in the body or the query")
        if "level" not in body:
            raise Invalid("level", "level is required: a level name, or null to revert")
        view = await service.set_mount_level(self.ctx, actor(request), path, body["level"])
        return _json(mount_json(view))

    def _audit_filters(self, request: Request) -> dict[str, Any]:
        params = request.query_params
        return {
            "user": params.get("user", ""),
            "event": params.get("event", ""),
            "since": params.get("since") or None,
            "client": params.get("client", ""),
            "outcome": params.get("outcome", ""),
        }

    async def audit(self, request: Request) -> Response:
        page = await service.list_audit(
            self.ctx,
            **self._audit_filters(request),
            offset=int_param(request, "offset", 0),
            limit=int_param(request, "limit", 100),
        )
        return _json(
            {
                "events": [audit_json(event) for event in page.events],
                "total": page.total,
                "offset": page.offset,
                "limit": page.limit,
            }
        )

    async def audit_csv(self, request: Request) -> Response:
        text = await service.export_audit(
            self.ctx, **self._audit_filters(request), limit=int_param(request, "limit", 10_000)
        )
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={**NO_STORE, "content-disposition": 'attachment; filename="audit.csv"'},
        )

    async def reauthenticate(self, request: Request) -> Response:
        body = await body_of(request, ("password",))
        await service.reauthenticate(self.ctx, actor(request), body.get("password", ""))
        return _no_content()

    async def reload(self, request: Request) -> Response:
        """This worker reads settings.toml again (the others follow the file on their own):
        200 with what changed, or 422 with the error while the old settings keep serving."""
        result = await service.reload_settings(self.ctx, actor(request))
        if result.applied:
            return _json(result.as_json())
        return _json(
            {"error": "settings_refused", "detail": result.error, **_without_error(result)}, 422
        )


def _without_error(result: ReloadResult) -> dict[str, Any]:
    found = result.as_json()
    found.pop("error", None)
    return found


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 405:
        return refusal(405, "method_not_allowed", f"{request.method} is not allowed here")
    return refusal(404, "not_found", "no such admin API path")


async def _server_error(request: Request, exc: Exception) -> Response:
    logger.exception(
        "admin API: unhandled error on %s %s", request.method, request.url.path, exc_info=exc
    )
    return refusal(500, "server_error", "the portal could not answer this request")


def audit_csv_endpoint(api: AdminAPI) -> AdminOnly:
    """`/admin/audit.csv` (for a `Route`): the audit log as CSV, for the same callers as the API."""
    return AdminOnly(request_response(api.errors(api.audit_csv)), api.runtime)


def admin_api_routes(runtime: Runtime, context: service.Context | None = None) -> list[BaseRoute]:
    """What the portal's pages mount: the API at `/admin/api`, and `/admin/audit.csv`. Listed
    before the admin pages, so that their `/admin` routes never take these paths."""
    api = AdminAPI(runtime, context)
    return [
        Mount("/admin/api", api.app()),
        Route("/admin/audit.csv", audit_csv_endpoint(api), methods=["GET", "HEAD"]),
    ]
