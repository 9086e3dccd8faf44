"""The admin API's OpenAPI 3.1 document (`GET /admin/api/openapi.json`), written by hand: the
API is small, and its shapes are a contract that should change only on purpose."""

from __future__ import annotations

from typing import Any

from ..levels import Levels

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {JSON: {"schema": schema}}


def _answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"description": description}
    if schema is not None:
        found["content"] = _content(schema)
    return found


def _errors(*statuses: int) -> dict[str, Any]:
    words = {
        400: "Bad request (not JSON, or a local-only action on an OIDC user)",
        401: "No identity",
        403: "Not an admin, no CSRF token on a session, or re-authentication required",
        404: "No such user, session or mount",
        409: "Conflict: the name exists, or the last enabled admin",
        422: "Bad input; `field` names it",
        429: "Too many failed password checks",
        503: "The database does not answer",
    }
    return {str(s): _answer(words[s], _ref("Error")) for s in (401, 403, *statuses)}


def _query(name: str, description: str, kind: str = "string") -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": kind},
    }


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": _content(schema)}


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    found: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        found["required"] = list(required)
    return found


TIME = {"type": "string", "format": "date-time"}
NULL_TIME = {"type": ["string", "null"], "format": "date-time"}


def document(levels: Levels) -> dict[str, Any]:
    configured = list(levels.configured)
    every = list(levels.names)
    name = _path("name", "the username")
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error", "detail"],
            "properties": {
                "error": {"type": "string", "examples": ["last_admin"]},
                "detail": {"type": "string"},
                "field": {"type": "string", "description": "the field at fault (422)"},
            },
        },
        "User": {
            "type": "object",
            "required": [
                "username",
                "email",
                "level",
                "disabled",
                "provider",
                "created_at",
                "last_login_at",
            ],
            "properties": {
                "username": {"type": "string"},
                "email": {"type": "string"},
                "name": {"type": "string"},
                "level": {"type": "string", "enum": configured},
                "disabled": {"type": "boolean"},
                "provider": {"type": "string", "enum": ["local", "oidc"]},
                "created_at": TIME,
                "last_login_at": NULL_TIME,
                "must_change_password": {"type": "boolean"},
                "password": {
                    "type": "string",
                    "description": "a generated one-time password, shown once",
                },
            },
        },
        "Session": {
            "type": "object",
            "required": ["id", "kind", "label", "created_at", "last_seen_at", "expires_at"],
            "properties": {
                "id": {"type": "string"},
                "kind": {"type": "string", "enum": ["session", "token"]},
                "label": {"type": "string"},
                "created_at": TIME,
                "last_seen_at": TIME,
                "expires_at": TIME,
                "authenticated_at": NULL_TIME,
                "client": {"type": "string"},
            },
        },
        "UserDetail": {
            "allOf": [
                _ref("User"),
                {
                    "type": "object",
                    "required": ["sessions", "tokens"],
                    "properties": {
                        "sessions": {"type": "array", "items": _ref("Session")},
                        "tokens": {"type": "array", "items": _ref("Session")},
                    },
                },
            ]
        },
        "Mount": {
            "type": "object",
            "required": ["path", "title", "kind", "file_level", "level", "override", "rules"],
            "properties": {
                "path": {"type": "string"},
                "title": {"type": "string"},
                "kind": {"type": "string", "enum": ["flask", "starlette", "mixed", "upstream"]},
                "file_level": {"type": "string"},
                "level": {"type": "string", "enum": every},
                "override": {"type": ["string", "null"]},
                "override_by": {"type": ["string", "null"]},
                "override_at": NULL_TIME,
                "rules": {"type": "array", "items": {"type": "object"}},
                "upstream": {"type": "string"},
            },
        },
        "AuditEvent": {
            "type": "object",
            "required": ["id", "at", "event", "username", "by", "client", "detail"],
            "properties": {
                "id": {"type": "integer"},
                "at": TIME,
                "event": {"type": "string"},
                "username": {"type": "string"},
                "by": {"type": "string"},
                "client": {"type": "string"},
                "detail": {"type": "object"},
            },
        },
    }
    paging = [
        _query("offset", "first row, from 0", "integer"),
        _query("limit", "rows in the answer, 1 to 500", "integer"),
    ]
    audit_filters = [
        _query("user", "events about this user or made by them"),
        _query("event", "an event name, or a prefix ending in '.' (user.)"),
        _query("since", "ISO 8601 time; without a zone, UTC"),
    ]
    paths: dict[str, Any] = {
        "/admin/api/users": {
            "get": {
                "summary": "Users, searched and paged in the database",
                "parameters": [_query("q", "part of the username or email"), *paging],
                "responses": {
                    "200": _answer(
                        "A page of users",
                        {
                            "type": "object",
                            "required": ["users", "total"],
                            "properties": {
                                "users": {"type": "array", "items": _ref("User")},
                                "total": {"type": "integer"},
                                "offset": {"type": "integer"},
                                "limit": {"type": "integer"},
                            },
                        },
                    ),
                    **_errors(422),
                },
            },
            "post": {
                "summary": "Create a local user (without a password: a one-time one, answered)",
                "requestBody": _body(
                    _object(
                        {
                            "username": {"type": "string"},
                            "email": {"type": "string"},
                            "name": {"type": "string"},
                            "level": {"type": "string", "enum": configured},
                            "password": {"type": "string", "minLength": 12},
                        },
                        ("username", "level"),
                    )
                ),
                "responses": {"201": _answer("The user", _ref("User")), **_errors(400, 409, 422)},
            },
        },
        "/admin/api/users/{name}": {
            "parameters": [name],
            "get": {
                "summary": "A user, with their sessions and API tokens in force",
                "responses": {"200": _answer("The user", _ref("UserDetail")), **_errors(404)},
            },
            "patch": {
                "summary": "Change level, disabled or email",
                "requestBody": _body(
                    _object(
                        {
                            "level": {"type": "string", "enum": configured},
                            "disabled": {"type": "boolean"},
                            "email": {"type": "string"},
                        }
                    )
                ),
                "responses": {
                    "200": _answer("The user", _ref("User")),
                    **_errors(400, 404, 409, 422),
                },
            },
            "delete": {
                "summary": "Delete a user; everything of theirs revoked (re-authentication)",
                "responses": {"204": _answer("Deleted"), **_errors(404, 409)},
            },
        },
        "/admin/api/users/{name}/password": {
            "parameters": [name],
            "post": {
                "summary": "Reset a local user's password (re-authentication); changed at next "
                "sign-in",
                "requestBody": _body(
                    _object({"password": {"type": "string", "minLength": 12}}), required=False
                ),
                "responses": {
                    "200": _answer(
                        "Done; `password` when one was generated",
                        {
                            "type": "object",
                            "required": ["username", "must_change_password"],
                            "properties": {
                                "username": {"type": "string"},
                                "password": {"type": "string"},
                                "must_change_password": {"type": "boolean"},
                            },
                        },
                    ),
                    **_errors(400, 404, 422),
                },
            },
        },
        "/admin/api/users/{name}/sign-out": {
            "parameters": [name],
            "post": {
                "summary": "Revoke every session and API token of the user",
                "responses": {"204": _answer("Signed out everywhere"), **_errors(404)},
            },
        },
        "/admin/api/users/{name}/tokens": {
            "parameters": [name],
            "post": {
                "summary": "Mint an API token (shown once; re-authentication for someone else)",
                "requestBody": _body(
                    _object(
                        {
                            "label": {"type": "string", "maxLength": 200},
                            "ttl": {
                                "type": ["string", "integer"],
                                "description": "seconds, or a duration such as 30d",
                            },
                        }
                    ),
                    required=False,
                ),
                "responses": {
                    "201": _answer(
                        "The token",
                        {
                            "type": "object",
                            "required": ["id", "token", "expires_at"],
                            "properties": {
                                "id": {"type": "string"},
                                "token": {"type": "string"},
                                "label": {"type": "string"},
                                "username": {"type": "string"},
                                "expires_at": TIME,
                            },
                        },
                    ),
                    **_errors(404, 409, 422),
                },
            },
        },
        "/admin/api/sessions/{id}": {
            "parameters": [_path("id", "a session or token id, or a unique prefix of 8+")],
            "delete": {
                "summary": "Revoke one session or API token",
                "responses": {"204": _answer("Revoked"), **_errors(404, 409)},
            },
        },
        "/admin/api/mounts": {
            "get": {
                "summary": "Every mount with its levels",
                "responses": {
                    "200": _answer("The mounts", {"type": "array", "items": _ref("Mount")})
                },
            },
            "patch": {
                "summary": "Override a mount's level; level null reverts to settings.toml",
                "parameters": [_query("path", "the mount path, when not in the body")],
                "requestBody": _body(
                    _object(
                        {
                            "path": {"type": "string"},
                            "level": {"type": ["string", "null"], "enum": [*every, None]},
                        },
                        ("level",),
                    )
                ),
                "responses": {"200": _answer("The mount", _ref("Mount")), **_errors(404, 422)},
            },
        },
        "/admin/api/audit": {
            "get": {
                "summary": "The audit log, newest first",
                "parameters": [*audit_filters, *paging],
                "responses": {
                    "200": _answer(
                        "Events",
                        {
                            "type": "object",
                            "required": ["events"],
                            "properties": {
                                "events": {"type": "array", "items": _ref("AuditEvent")},
                                "total": {"type": "integer"},
                                "offset": {"type": "integer"},
                                "limit": {"type": "integer"},
                            },
                        },
                    ),
                    **_errors(422),
                },
            },
        },
        "/admin/api/audit.csv": {
            "get": {
                "summary": "The audit log as CSV (also at /admin/audit.csv)",
                "parameters": [
                    *audit_filters,
                    _query("limit", "at most this many events (10000)", "integer"),
                ],
                "responses": {
                    "200": {
                        "description": "CSV",
                        "content": {"text/csv": {"schema": {"type": "string"}}},
                    },
                    **_errors(422),
                },
            },
        },
        "/admin/api/reauthenticate": {
            "post": {
                "summary": "Confirm the current password (browser sessions): opens the "
                "re-authenticated actions for 10 minutes",
                "requestBody": _body(_object({"password": {"type": "string"}}, ("password",))),
                "responses": {"204": _answer("Confirmed"), **_errors(400, 422, 429)},
            },
        },
        "/admin/api/reload": {
            "post": {
                "summary": "Re-read settings.toml; the old settings stay on an error",
                "responses": {
                    "200": _answer("What changed", {"type": "object"}),
                    **_errors(400, 422),
                },
            },
        },
        "/admin/api/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": _answer("OpenAPI 3.1", {"type": "object"})},
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "portal-asgi admin API",
            "version": "1",
            "description": "Users, sessions, API tokens, product levels and the audit log. "
            "Authenticate with an admin's API token, or an admin session plus X-CSRF-Token for "
            "unsafe methods.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "session": {"type": "apiKey", "in": "cookie", "name": "portal_session"},
            },
        },
        "security": [{"bearer": []}, {"session": []}],
    }
