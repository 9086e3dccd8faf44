"""The admin API (`/admin/api/`, docs/admin.md) through the whole request path, in process, on
SQLite and MariaDB: every operation, and every refusal (no identity 401, not an admin 403, no
CSRF token 403, last admin 409, stale re-authentication 403, bad input 422 naming the field,
404, duplicate 409), each checked for what it did not change as well."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import update

from portal_asgi.admin import openapi, service
from portal_asgi.db import store
from portal_asgi.db.models import Session, utcnow

from .admin_harness import ROOT, AdminHarness, admin_portal
from .servers import password_for

pytestmark = pytest.mark.anyio

API = "/admin/api"


@pytest.fixture
async def h(tmp_path: Path, database_url: str) -> AsyncIterator[AdminHarness]:
    async with admin_portal(tmp_path, database_url) as harness:
        yield harness


async def audit_events(h: AdminHarness, event: str) -> list[dict[str, object]]:
    page = await service.list_audit(h.ctx, event=event)
    return [{"username": e.username, "client": e.client, **e.detail} for e in page.events]


# --- who may call ------------------------------------------------------------------------------


async def test_no_identity_is_401_json_and_lists_nothing(h: AdminHarness) -> None:
    answer = await h.call("GET", f"{API}/users")
    assert answer.status == 401
    assert answer.json()["error"] == "authentication_required"
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert b"root" not in answer.body


@pytest.mark.parametrize("via", ["session", "token"])
async def test_not_admin_is_403_and_changes_nothing(h: AdminHarness, via: str) -> None:
    await h.add_user("dev", "devel")
    creds = await (h.session("dev") if via == "session" else h.token("dev"))
    listing = await h.call("GET", f"{API}/users", creds)
    assert listing.status == 403
    assert listing.json()["error"] == "forbidden"
    assert b"root" not in listing.body
    raised = await h.call("PATCH", f"{API}/users/dev", creds, body={"level": "admin"})
    assert raised.status == 403
    user = await store.get_user(h.runtime.db, "dev")
    assert user is not None and user.level == "devel"


async def test_session_without_csrf_token_is_refused_and_changes_nothing(h: AdminHarness) -> None:
    await h.add_user("alice", "stable")
    creds = await h.session(ROOT)
    no_csrf = {k: v for k, v in creds.items() if k != "x-csrf-token"}
    answer = await h.call("PATCH", f"{API}/users/alice", no_csrf, body={"level": "ea"})
    assert answer.status == 403
    assert answer.json()["error"] == "csrf_required"
    forged = {**creds, "x-csrf-token": "forged"}
    assert (await h.call("PATCH", f"{API}/users/alice", forged, body={"level": "ea"})).status == 403
    user = await store.get_user(h.runtime.db, "alice")
    assert user is not None and user.level == "stable"
    # reading needs no CSRF token; the right token lets the change through
    assert (await h.call("GET", f"{API}/users/alice", no_csrf)).status == 200
    done = await h.call("PATCH", f"{API}/users/alice", creds, body={"level": "ea"})
    assert done.status == 200, done.text
    assert done.json()["level"] == "ea"


async def test_admin_token_needs_no_csrf_token(h: AdminHarness) -> None:
    await h.add_user("alice", "stable")
    answer = await h.call(
        "PATCH", f"{API}/users/alice", await h.token(ROOT), body={"disabled": True}
    )
    assert answer.status == 200, answer.text
    assert answer.json()["disabled"] is True


async def test_unknown_path_and_method_answer_json(h: AdminHarness) -> None:
    creds = await h.token(ROOT)
    missing = await h.call("GET", f"{API}/nothing-here", creds)
    assert missing.status == 404
    assert missing.json()["error"] == "not_found"
    wrong = await h.call("PUT", f"{API}/users", creds)
    assert wrong.status == 405
    assert wrong.json()["error"] == "method_not_allowed"


# --- users -------------------------------------------------------------------------------------


async def test_list_users_searches_and_pages_in_the_database(h: AdminHarness) -> None:
    for i in range(12):
        await h.add_user(f"user{i:02d}", "stable", email=f"u{i}@lab.example")
    await h.add_user("carol", "ea", email="carol@other.example")
    creds = await h.token(ROOT)
    page = (await h.call("GET", f"{API}/users?q=lab.example&offset=5&limit=4", creds)).json()
    assert page["total"] == 12
    assert [u["username"] for u in page["users"]] == ["user05", "user06", "user07", "user08"]
    everyone = (await h.call("GET", f"{API}/users?limit=500", creds)).json()
    assert everyone["total"] == 15  # admin, root, carol and twelve
    carol = (await h.call("GET", f"{API}/users?q=carol", creds)).json()
    assert carol["total"] == 1
    assert set(carol["users"][0]) >= {
        "username",
        "email",
        "level",
        "disabled",
        "provider",
        "created_at",
        "last_login_at",
    }
    assert carol["users"][0]["created_at"].endswith("Z")
    # wildcards in q are taken literally
    assert (await h.call("GET", f"{API}/users?q=%25", creds)).json()["total"] == 0


BAD_PAGING = [
    ("limit=0", "limit"),
    ("limit=501", "limit"),
    ("offset=-1", "offset"),
    ("limit=x", "limit"),
]


async def test_list_users_bad_paging_is_422_naming_the_field(h: AdminHarness) -> None:
    creds = await h.token(ROOT)
    for query, field in BAD_PAGING:
        answer = await h.call("GET", f"{API}/users?{query}", creds)
        assert answer.status == 422, query
        assert answer.json()["field"] == field, query


async def test_create_user_with_password_then_signs_in(h: AdminHarness) -> None:
    creds = await h.session(ROOT)
    body = {"username": "dana", "email": "dana@example.org", "level": "ea", "password": "x" * 12}
    answer = await h.call("POST", f"{API}/users", creds, body=body)
    assert answer.status == 201, answer.text
    made = answer.json()
    assert made["username"] == "dana" and made["level"] == "ea" and made["provider"] == "local"
    assert "password" not in made and made["must_change_password"] is False
    assert await store.check_password(h.runtime.db, "dana", "x" * 12) is not None
    events = await audit_events(h, "user.add")
    assert events[0]["username"] == "dana" and events[0]["by"] == ROOT


async def test_create_user_without_password_answers_a_one_time_one(h: AdminHarness) -> None:
    answer = await h.call(
        "POST", f"{API}/users", await h.token(ROOT), body={"username": "eve", "level": "stable"}
    )
    assert answer.status == 201, answer.text
    made = answer.json()
    assert len(made["password"]) >= 12
    assert made["must_change_password"] is True
    assert await store.check_password(h.runtime.db, "eve", made["password"]) is not None
    assert h.runtime.directory.user("eve") is not None  # known to this worker at once
    state = h.runtime.directory.user("eve")
    assert state is not None and state.must_change_password


async def test_create_duplicate_is_409(h: AdminHarness) -> None:
    await h.add_user("alice", "stable", email="a@example.org")
    answer = await h.call(
        "POST",
        f"{API}/users",
        await h.token(ROOT),
        body={"username": "alice", "level": "admin", "password": "y" * 12},
    )
    assert answer.status == 409
    assert answer.json()["error"] == "exists"
    user = await store.get_user(h.runtime.db, "alice")
    assert user is not None and user.level == "stable"


BAD_NEW_USERS: list[tuple[dict[str, object], str]] = [
    ({"username": "has space", "level": "ea"}, "username"),
    ({"username": "../x", "level": "ea"}, "username"),
    ({"level": "ea"}, "username"),
    ({"username": "ok", "level": "wizard"}, "level"),
    ({"username": "ok"}, "level"),
    ({"username": "ok", "level": "public"}, "level"),
    ({"username": "ok", "level": "ea", "password": "short"}, "password"),
    ({"username": "ok", "level": "ea", "email": "not-an-address"}, "email"),
    ({"username": "ok", "level": "ea", "shoe_size": 9}, "shoe_size"),
]


async def test_create_bad_input_is_422_naming_the_field(h: AdminHarness) -> None:
    creds = await h.token(ROOT)
    for body, field in BAD_NEW_USERS:
        answer = await h.call("POST", f"{API}/users", creds, body=body)
        assert answer.status == 422, (body, answer.text)
        assert answer.json()["error"] == "invalid"
        assert answer.json()["field"] == field, body
    assert await store.get_user(h.runtime.db, "ok") is None


async def test_body_that_is_not_a_json_object_is_400(h: AdminHarness) -> None:
    creds = await h.token(ROOT)
    assert (await h.call("POST", f"{API}/users", creds, raw=b"{nope")).status == 400
    assert (await h.call("POST", f"{API}/users", creds, body=["x"])).status == 400


async def test_get_user_with_sessions_and_tokens(h: AdminHarness) -> None:
    await h.add_user("alice", "ea")
    browser = await h.session("alice")
    token = await h.token("alice")
    answer = await h.call("GET", f"{API}/users/alice", await h.token(ROOT))
    assert answer.status == 200
    found = answer.json()
    assert found["username"] == "alice" and found["level"] == "ea"
    assert [s["id"] for s in found["sessions"]] == [browser["x-sid"]]
    assert [t["id"] for t in found["tokens"]] == [token["x-sid"]]
    assert found["tokens"][0]["kind"] == "token" and found["tokens"][0]["label"] == "test"
    assert set(found["sessions"][0]) >= {
        "id",
        "kind",
        "label",
        "created_at",
        "last_seen_at",
        "expires_at",
        "client",
    }


async def test_unknown_user_is_404_everywhere(h: AdminHarness) -> None:
    creds = await h.session(ROOT)
    for method, path, body in [
        ("GET", "/users/ghost", None),
        ("PATCH", "/users/ghost", {"level": "ea"}),
        ("DELETE", "/users/ghost", None),
        ("POST", "/users/ghost/password", {}),
        ("POST", "/users/ghost/sign-out", None),
        ("POST", "/users/ghost/tokens", {"label": "x"}),
        ("DELETE", "/sessions/no-such-session-id", None),
    ]:
        answer = await h.call(method, API + path, creds, body=body)
        assert answer.status == 404, (method, path, answer.text)
        assert answer.json()["error"] == "not_found"
    assert await store.get_user(h.runtime.db, "ghost") is None


async def test_patch_level_applies_at_once_and_is_audited(h: AdminHarness) -> None:
    await h.add_user("alice", "stable")
    alice = await h.session("alice")
    assert (await h.call("GET", "/ea/whoami", alice)).status == 403
    answer = await h.call(
        "PATCH", f"{API}/users/alice", await h.session(ROOT), body={"level": "ea"}
    )
    assert answer.status == 200, answer.text
    assert (await h.call("GET", "/ea/whoami", alice)).status == 200
    event = (await audit_events(h, "user.level"))[0]
    assert event == {
        "username": "alice",
        "client": "127.0.0.1",
        "by": ROOT,
        "level": "ea",
        "was": "stable",
    }


BAD_CHANGES: list[tuple[dict[str, object], str]] = [
    ({"level": "wizard"}, "level"),
    ({"level": None}, "level"),
    ({"disabled": "yes"}, "disabled"),
    ({"email": "nope"}, "email"),
    ({"email": 5}, "email"),
    ({"name": "x"}, "name"),
]


async def test_patch_bad_input_is_422(h: AdminHarness) -> None:
    await h.add_user("alice", "stable", email="a@example.org")
    creds = await h.token(ROOT)
    for body, field in BAD_CHANGES:
        answer = await h.call("PATCH", f"{API}/users/alice", creds, body=body)
        assert answer.status == 422, (body, answer.text)
        assert answer.json()["field"] == field, body
    user = await store.get_user(h.runtime.db, "alice")
    assert user is not None and (user.level, user.active, user.email) == (
        "stable",
        True,
        "a@example.org",
    )


async def test_disable_ends_their_sessions_and_enable_lets_them_sign_in(h: AdminHarness) -> None:
    await h.add_user("alice", "ea")
    alice = await h.session("alice")
    creds = await h.token(ROOT)
    assert (
        await h.call("PATCH", f"{API}/users/alice", creds, body={"disabled": True})
    ).status == 200
    assert (await h.call("GET", "/ea/whoami", alice)).status == 401
    assert await store.check_password(h.runtime.db, "alice", password_for("alice")) is None
    assert (
        await h.call("PATCH", f"{API}/users/alice", creds, body={"disabled": False})
    ).status == 200
    assert await store.check_password(h.runtime.db, "alice", password_for("alice")) is not None
    assert [e["username"] for e in await audit_events(h, "user.")][:2] == ["alice", "alice"]


async def _only_root_is_admin(h: AdminHarness) -> None:
    """Disable the first start's `admin`: `root` is then the last enabled admin."""
    await service.set_disabled(h.ctx, service.Actor.cli(), "admin", True)


LAST_ADMIN_CHANGES: list[tuple[str, dict[str, object] | None]] = [
    ("PATCH", {"level": "devel"}),
    ("PATCH", {"disabled": True}),
    ("DELETE", None),
]


async def test_last_enabled_admin_is_409_and_unchanged(h: AdminHarness) -> None:
    await _only_root_is_admin(h)
    creds = await h.session(ROOT)
    for method, body in LAST_ADMIN_CHANGES:
        answer = await h.call(method, f"{API}/users/root", creds, body=body)
        assert answer.status == 409, (method, body, answer.text)
        assert answer.json()["error"] == "last_admin"
    root = await store.get_user(h.runtime.db, ROOT)
    assert root is not None and root.level == "admin" and root.active


async def test_another_admin_may_be_lowered_while_one_is_left(h: AdminHarness) -> None:
    await _only_root_is_admin(h)
    await h.add_user("second", "admin")
    creds = await h.session(ROOT)
    lowered = await h.call("PATCH", f"{API}/users/second", creds, body={"level": "ea"})
    assert lowered.status == 200, lowered.text
    # root is alone again: lowering root now is refused
    again = await h.call("PATCH", f"{API}/users/root", creds, body={"level": "ea"})
    assert again.status == 409


async def test_delete_needs_recent_authentication(h: AdminHarness) -> None:
    await h.add_user("alice", "ea")
    alice_token = await h.token("alice")
    stale = await h.session(ROOT, signed_in_ago=11 * 60)
    refused = await h.call("DELETE", f"{API}/users/alice", stale)
    assert refused.status == 403
    assert refused.json()["error"] == "reauthentication_required"
    assert await store.get_user(h.runtime.db, "alice") is not None
    wrong = await h.call("POST", f"{API}/reauthenticate", stale, body={"password": "wrong-one"})
    assert wrong.status == 422
    assert wrong.json()["field"] == "password"
    assert (await h.call("DELETE", f"{API}/users/alice", stale)).status == 403
    right = await h.call(
        "POST", f"{API}/reauthenticate", stale, body={"password": password_for(ROOT)}
    )
    assert right.status == 204, right.text
    done = await h.call("DELETE", f"{API}/users/alice", stale)
    assert done.status == 204, done.text
    assert await store.get_user(h.runtime.db, "alice") is None
    assert (await h.call("GET", "/ea/whoami", alice_token)).status == 401
    assert (await audit_events(h, "user.delete"))[0]["by"] == ROOT
    assert (await audit_events(h, "reauth.failed"))[0]["username"] == ROOT


async def test_delete_by_a_fresh_session(h: AdminHarness) -> None:
    await h.add_user("alice", "ea")
    answer = await h.call("DELETE", f"{API}/users/alice", await h.session(ROOT))
    assert answer.status == 204
    assert await store.get_user(h.runtime.db, "alice") is None


async def test_reset_password_generated_must_be_changed(h: AdminHarness) -> None:
    await h.add_user("alice", "ea")
    answer = await h.call("POST", f"{API}/users/alice/password", await h.session(ROOT), body={})
    assert answer.status == 200, answer.text
    found = answer.json()
    assert found["must_change_password"] is True
    assert await store.check_password(h.runtime.db, "alice", password_for("alice")) is None
    user = await store.check_password(h.runtime.db, "alice", found["password"])
    assert user is not None and user.must_change_password
    state = h.runtime.directory.user("alice")
    assert state is not None and state.must_change_password


async def test_reset_password_explicit_and_stale_and_bad(h: AdminHarness) -> None:
    await h.add_user("alice", "ea")
    stale = await h.session(ROOT, signed_in_ago=11 * 60)
    refused = await h.call(
        "POST", f"{API}/users/alice/password", stale, body={"password": "n" * 14}
    )
    assert refused.status == 403
    assert refused.json()["error"] == "reauthentication_required"
    assert await store.check_password(h.runtime.db, "alice", password_for("alice")) is not None
    fresh = await h.session(ROOT)
    short = await h.call("POST", f"{API}/users/alice/password", fresh, body={"password": "n"})
    assert short.status == 422 and short.json()["field"] == "password"
    done = await h.call("POST", f"{API}/users/alice/password", fresh, body={"password": "n" * 14})
    assert done.status == 200
    assert "password" not in done.json()
    assert await store.check_password(h.runtime.db, "alice", "n" * 14) is not None


async def test_reset_password_of_an_oidc_user_is_400(h: AdminHarness) -> None:
    await store.upsert_oidc_user(
        h.runtime.db,
        subject="sub-1",
        username="olga",
        email="olga@example.org",
        name="Olga",
        level="ea",
        default_level="stable",
        fallback_username="olga-1",
    )
    answer = await h.call("POST", f"{API}/users/olga/password", await h.session(ROOT), body={})
    assert answer.status == 400
    listing = (await h.call("GET", f"{API}/users?q=olga", await h.token(ROOT))).json()
    assert listing["users"][0]["provider"] == "oidc"


async def test_sign_out_everywhere(h: AdminHarness) -> None:
    await h.add_user("alice", "ea")
    browser = await h.session("alice")
    token = await h.token("alice")
    answer = await h.call("POST", f"{API}/users/alice/sign-out", await h.session(ROOT))
    assert answer.status == 204
    assert (await h.call("GET", "/ea/whoami", browser)).status == 401
    assert (await h.call("GET", "/ea/whoami", token)).status == 401
    detail = (await h.call("GET", f"{API}/users/alice", await h.token(ROOT))).json()
    assert detail["sessions"] == [] and detail["tokens"] == []


async def test_mint_token_for_someone_else(h: AdminHarness) -> None:
    await h.add_user("alice", "devel")
    stale = await h.session(ROOT, signed_in_ago=11 * 60)
    refused = await h.call("POST", f"{API}/users/alice/tokens", stale, body={"label": "ci"})
    assert refused.status == 403 and refused.json()["error"] == "reauthentication_required"
    assert (await service.get_user(h.ctx, "alice")).tokens == []
    answer = await h.call(
        "POST",
        f"{API}/users/alice/tokens",
        await h.session(ROOT),
        body={"label": "ci", "ttl": "2d"},
    )
    assert answer.status == 201, answer.text
    minted = answer.json()
    expires = dt.datetime.fromisoformat(minted["expires_at"].replace("Z", ""))
    assert abs((expires - utcnow()).total_seconds() - 2 * 86400) < 120
    whoami = await h.call("GET", "/devel/whoami", {"authorization": f"Bearer {minted['token']}"})
    assert whoami.status == 200 and whoami.json()["user"] == "alice"
    listed = (await service.get_user(h.ctx, "alice")).tokens
    assert [(t.id, t.label) for t in listed] == [(minted["id"], "ci")]
    assert minted["token"] not in str(await audit_events(h, "token.mint"))


async def test_mint_token_for_oneself_needs_no_reauthentication(h: AdminHarness) -> None:
    stale = await h.session(ROOT, signed_in_ago=11 * 60)
    answer = await h.call("POST", f"{API}/users/root/tokens", stale, body={"label": "mine"})
    assert answer.status == 201, answer.text


BAD_TOKENS: list[tuple[dict[str, object], str]] = [
    ({"ttl": "forever"}, "ttl"),
    ({"ttl": 5}, "ttl"),
    ({"ttl": "400d"}, "ttl"),
    ({"label": "x" * 201}, "label"),
    ({"ttl": True}, "ttl"),
]


async def test_mint_token_bad_input_is_422(h: AdminHarness) -> None:
    await h.add_user("alice", "ea")
    creds = await h.token(ROOT)
    for body, field in BAD_TOKENS:
        answer = await h.call("POST", f"{API}/users/alice/tokens", creds, body=body)
        assert answer.status == 422, (body, answer.text)
        assert answer.json()["field"] == field, body
    assert (await service.get_user(h.ctx, "alice")).tokens == []


async def test_revoke_one_session_by_id_or_prefix(h: AdminHarness) -> None:
    await h.add_user("alice", "ea")
    one = await h.session("alice")
    two = await h.session("alice")
    creds = await h.token(ROOT)
    assert (await h.call("DELETE", f"{API}/sessions/{one['x-sid']}", creds)).status == 204
    assert (await h.call("GET", "/ea/whoami", one)).status == 401
    assert (await h.call("GET", "/ea/whoami", two)).status == 200
    # the 8 characters the audit log shows are enough
    assert (await h.call("DELETE", f"{API}/sessions/{two['x-sid'][:8]}", creds)).status == 204
    assert (await h.call("GET", "/ea/whoami", two)).status == 401
    again = await h.call("DELETE", f"{API}/sessions/{one['x-sid']}", creds)
    assert again.status == 404


# --- mounts ------------------------------------------------------------------------------------


async def test_mounts_list_override_and_revert(h: AdminHarness) -> None:
    creds = await h.session(ROOT)
    mounts = (await h.call("GET", f"{API}/mounts", creds)).json()
    by_path = {m["path"]: m for m in mounts}
    ea = by_path["/ea"]
    assert ea == {
        "path": "/ea",
        "title": ea["title"],
        "kind": ea["kind"],
        "file_level": "ea",
        "level": "ea",
        "override": None,
        "override_by": None,
        "override_at": None,
        "rules": ea["rules"],
    }
    assert ea["kind"] in ("flask", "starlette", "mixed")
    await h.add_user("alice", "ea")
    alice = await h.session("alice")
    assert (await h.call("GET", "/ea/whoami", alice)).status == 200
    raised = await h.call("PATCH", f"{API}/mounts", creds, body={"path": "/ea", "level": "devel"})
    assert raised.status == 200, raised.text
    assert raised.json()["override"] == "devel" and raised.json()["level"] == "devel"
    assert raised.json()["override_by"] == ROOT
    assert (await h.call("GET", "/ea/whoami", alice)).status == 403
    reverted = await h.call("PATCH", f"{API}/mounts?path=/ea", creds, body={"level": None})
    assert reverted.status == 200
    assert reverted.json()["override"] is None and reverted.json()["level"] == "ea"
    assert (await h.call("GET", "/ea/whoami", alice)).status == 200
    events = await audit_events(h, "mount.")
    assert [e.get("path") for e in events] == ["/ea", "/ea"]


BAD_MOUNT_CHANGES: list[tuple[dict[str, object], int, str | None]] = [
    ({"path": "/nowhere", "level": "ea"}, 404, None),
    ({"path": "/ea", "level": "wizard"}, 422, "level"),
    ({"path": "/ea"}, 422, "level"),
    ({"level": "ea"}, 422, "path"),
]


async def test_mount_bad_input(h: AdminHarness) -> None:
    creds = await h.token(ROOT)
    for body, status, field in BAD_MOUNT_CHANGES:
        answer = await h.call("PATCH", f"{API}/mounts", creds, body=body)
        assert answer.status == status, (body, answer.text)
        assert answer.json().get("field") == field, body
    assert h.runtime.policy.level("/ea") == "ea"


# --- audit -------------------------------------------------------------------------------------


async def test_audit_filters_and_csv(h: AdminHarness) -> None:
    creds = await h.token(ROOT)
    await h.add_user("alice", "stable")
    await h.call("PATCH", f"{API}/users/alice", creds, body={"level": "ea"})
    await h.call("PATCH", f"{API}/users/alice", creds, body={"email": "=cmd@example.org"})
    found = (await h.call("GET", f"{API}/audit?user=alice&event=user.", creds)).json()
    assert [e["event"] for e in found["events"]] == ["user.email", "user.level"]
    assert all(e["by"] == ROOT for e in found["events"])
    by_root = (await h.call("GET", f"{API}/audit?user=root&limit=1", creds)).json()
    assert by_root["total"] >= 3 and len(by_root["events"]) == 1
    future = (await h.call("GET", f"{API}/audit?since=2999-01-01T00:00:00Z", creds)).json()
    assert future["events"] == []
    bad = await h.call("GET", f"{API}/audit?since=yesterday", creds)
    assert bad.status == 422 and bad.json()["field"] == "since"
    for path in (f"{API}/audit.csv?user=alice", "/admin/audit.csv?user=alice"):
        csv_answer = await h.call("GET", path, creds)
        assert csv_answer.status == 200
        assert csv_answer.headers["content-type"].startswith("text/csv")
        lines = csv_answer.text.splitlines()
        assert lines[0] == "id,at,event,username,by,client,detail"
        assert "user.level" in csv_answer.text and "=cmd@example.org" in csv_answer.text


def test_audit_csv_cells_are_never_formulas() -> None:
    """CSV injection (OWASP): a cell a spreadsheet would run starts with a quote instead."""
    from portal_asgi.db.accounts import AuditRecord

    event = AuditRecord(1, utcnow(), "login.failed", "=HYPERLINK(1)", "+1", {"by": "@x"})
    line = service.audit_csv([event]).splitlines()[1]
    assert ",'=HYPERLINK(1),'@x,'+1," in line


async def test_audit_csv_refuses_non_admins(h: AdminHarness) -> None:
    await h.add_user("dev", "devel")
    answer = await h.call("GET", "/admin/audit.csv", await h.token("dev"))
    assert answer.status == 403
    assert b"user.add" not in answer.body


# --- the rest ----------------------------------------------------------------------------------


async def test_openapi_lists_every_path(h: AdminHarness) -> None:
    answer = await h.call("GET", f"{API}/openapi.json", await h.token(ROOT))
    assert answer.status == 200
    document = answer.json()
    assert document["openapi"].startswith("3.1")
    from portal_asgi.admin.api import AdminAPI

    served = {f"{API}{route.path}" for route in AdminAPI(h.runtime, h.ctx).routes()}
    assert served == set(document["paths"])
    refs = {
        value.rsplit("/", 1)[-1]
        for value in _walk(document)
        if isinstance(value, str) and value.startswith("#/components/schemas/")
    }
    assert refs <= set(document["components"]["schemas"])
    assert document == openapi.document(h.runtime.levels)


def _walk(node: object) -> list[object]:
    if isinstance(node, dict):
        return [v for value in node.values() for v in _walk(value)]
    if isinstance(node, list):
        return [v for value in node for v in _walk(value)]
    return [node]


async def test_stale_session_row_is_not_recent(h: AdminHarness) -> None:
    """Re-authentication reads the session's own row: one moved back in time is stale."""
    creds = await h.session(ROOT)
    actor = service.Actor(ROOT, "session", creds["x-sid"])
    assert await service.recently_authenticated(h.ctx, actor)
    async with h.runtime.db.session() as session:
        await session.execute(
            update(Session)
            .where(Session.sid == creds["x-sid"])
            .values(authenticated_at=utcnow() - dt.timedelta(minutes=11))
        )
    assert not await service.recently_authenticated(h.ctx, actor)
    assert await service.recently_authenticated(h.ctx, service.Actor(ROOT, "token", "x"))


async def test_reload_applies_or_refuses_and_keeps_the_old_settings(
    h: AdminHarness, tmp_path: Path
) -> None:
    creds = await h.token(ROOT)
    await h.add_user("dev", "devel")
    refused = await h.call("POST", f"{API}/reload", await h.token("dev"))
    assert refused.status == 403
    assert await audit_events(h, "settings.") == []

    same = await h.call("POST", f"{API}/reload", creds)
    assert same.status == 200, same.text
    assert same.json()["applied"] is True

    file = tmp_path / "settings.toml"
    good = file.read_text()
    file.write_text(good + '\n[[mount]]\npath = "/broken"\napp = "products.test.app:app"\n')
    bad = await h.call("POST", f"{API}/reload", creds)
    assert bad.status == 422, bad.text
    assert bad.json()["error"] == "settings_refused"
    assert str(file) in bad.json()["detail"] and "level" in bad.json()["detail"]
    assert (await h.call("GET", "/public/whoami", creds)).status == 200  # still serving
    assert (await h.call("GET", "/broken/whoami", creds)).status == 404
    assert (await audit_events(h, "settings.reload.refused"))[0]["by"] == ROOT

    file.write_text(
        good + '\n[[mount]]\npath = "/fresh"\napp = "products.test.app:app"\nlevel = "public"\n'
    )
    applied = await h.call("POST", f"{API}/reload", creds)
    assert applied.status == 200, applied.text
    assert (await h.call("GET", "/fresh/whoami", creds)).status == 200


async def test_last_seen_is_written_by_the_feed_not_the_request(h: AdminHarness) -> None:
    await h.add_user("alice", "ea")
    alice = await h.session("alice", signed_in_ago=600)
    before = (await service.get_user(h.ctx, "alice")).sessions[0]
    assert (await h.call("GET", "/ea/whoami", alice)).status == 200
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        seen = (await service.get_user(h.ctx, "alice")).sessions[0]
        if seen.last_seen_at > before.last_seen_at:
            break
        assert asyncio.get_running_loop().time() < deadline, "last_seen_at never written"
        await asyncio.sleep(0.05)
    assert seen.created_at == before.created_at
    assert (utcnow() - seen.last_seen_at).total_seconds() < 60
