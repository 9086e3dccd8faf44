"""`/account` (docs/admin.md): the signed-in user's level, sessions, API tokens and password,
through the whole request path, in process, on SQLite and MariaDB; and the forced password
change: a user whose password was set for them reaches nothing but `/account`, sign-out and the
stylesheet until they choose their own (a browser is sent to `/account`, anything else gets 403
`password_change_required`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from portal_asgi.admin import service
from portal_asgi.db import store
from portal_asgi.routes import RouteTable

from .admin_harness import ROOT, AdminHarness, admin_portal
from .servers import password_for
from .test_admin_pages import browser, form, page, post, shown_once

pytestmark = pytest.mark.anyio

NEW_PASSWORD = "a brand new password 42"


@pytest.fixture
async def h(tmp_path: Path, database_url: str) -> AsyncIterator[AdminHarness]:
    async with admin_portal(tmp_path, database_url) as harness:
        await harness.add_user("alice", "ea", email="alice@example.org")
        yield harness


async def test_needs_a_signed_in_user(h: AdminHarness) -> None:
    answer = await page(h, "/account")
    assert answer.status == 303
    assert answer.headers["location"] == "/auth/login?next=/account"
    machine = await h.call("GET", "/account", {"accept": "application/json"})
    assert machine.status == 401
    post = await h.call("POST", "/account/sign-out-others", {"accept": "text/html"})
    assert post.status == 401


async def test_shows_level_sessions_and_tokens(h: AdminHarness) -> None:
    alice, other = await h.session("alice"), await h.session("alice")
    token = await h.token("alice")
    root = await h.session(ROOT)
    answer = await page(h, "/account", alice)
    assert answer.status == 200
    assert answer.headers["cache-control"] == "no-store"
    text = answer.text
    assert "alice@example.org" in text and ">ea<" in text
    assert "2 browsers, 1 API token" in text
    this = next(row for row in text.split("<tr>") if alice["x-sid"] in row)
    assert "this browser" in this and ">Sign out<" in this
    assert other["x-sid"][:8] in text and token["x-sid"][:8] in text
    assert root["x-sid"][:8] not in text  # nobody else's
    assert token["authorization"].split()[1] not in text
    assert 'name="current"' in text  # a local user changes their password here
    assert '<a class="nav-link" href="/admin">' not in text  # not an admin


async def test_change_password(h: AdminHarness) -> None:
    alice = await h.session("alice")
    changed = await form(
        h,
        "/account/password",
        alice,
        current=password_for("alice"),
        new=NEW_PASSWORD,
        repeat=NEW_PASSWORD,
    )
    assert changed.status == 303
    assert changed.headers["location"] == "/account?done=password"
    assert await store.check_password(h.runtime.db, "alice", NEW_PASSWORD) is not None
    assert await store.check_password(h.runtime.db, "alice", password_for("alice")) is None
    assert (await page(h, "/account?done=password", alice)).status == 200  # still signed in


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"current": "not my password", "new": NEW_PASSWORD, "repeat": NEW_PASSWORD}, "Current"),
        ({"current": password_for("alice"), "new": NEW_PASSWORD, "repeat": "typo"}, "differ"),
        ({"current": password_for("alice"), "new": "short", "repeat": "short"}, "New password:"),
    ],
)
async def test_change_password_refusals_change_nothing(
    h: AdminHarness, fields: dict[str, str], says: str
) -> None:
    alice = await h.session("alice")
    answer = await form(h, "/account/password", alice, **fields)
    assert answer.status == 422, answer.text
    assert 'class="error"' in answer.text and says in answer.text
    assert await store.check_password(h.runtime.db, "alice", password_for("alice")) is not None
    assert NEW_PASSWORD not in answer.text and password_for("alice") not in answer.text


async def test_revoke_one_of_their_own_and_not_someone_elses(h: AdminHarness) -> None:
    alice, other = await h.session("alice"), await h.session("alice")
    root = await h.session(ROOT)
    done = await form(h, "/account/sessions/revoke", alice, id=other["x-sid"])
    assert done.status == 303 and done.headers["location"] == "/account?done=revoked"
    assert (await page(h, "/", other)).status == 303
    assert (await page(h, "/", alice)).status == 200
    theirs = await form(h, "/account/sessions/revoke", alice, id=root["x-sid"])
    assert theirs.status == 404
    assert (await page(h, "/", root)).status == 200


async def test_revoking_this_browsers_session_signs_it_out(h: AdminHarness) -> None:
    alice = await h.session("alice")
    done = await form(h, "/account/sessions/revoke", alice, id=alice["x-sid"])
    assert done.status == 303 and done.headers["location"] == "/auth/login"
    assert "portal_session=;" in done.headers["set-cookie"]
    assert (await page(h, "/", alice)).status == 303


async def test_sign_out_everywhere_else(h: AdminHarness) -> None:
    alice, other = await h.session("alice"), await h.session("alice")
    token = await h.token("alice")
    done = await form(h, "/account/sign-out-others", alice)
    assert done.status == 303 and done.headers["location"] == "/account?done=others"
    assert (await page(h, "/", other)).status == 303
    assert (await h.call("GET", "/", token)).status == 401
    shown = await page(h, "/account?done=others", alice)
    assert "Every other browser" in shown.text and "1 browser, 0 API tokens" in shown.text


async def test_mint_a_token_shown_once(h: AdminHarness) -> None:
    alice = await h.session("alice")
    minted = await form(h, "/account/tokens", alice, label="laptop script", ttl="7d")
    assert minted.status == 200, minted.text
    assert minted.headers["cache-control"] == "no-store"
    token = shown_once(minted)
    assert (await h.call("GET", "/ea/", {"authorization": f"Bearer {token}"})).status == 200
    listed = await page(h, "/account", alice)
    assert "laptop script" in listed.text and token not in listed.text
    bad = await form(h, "/account/tokens", alice, label="x", ttl="forever")
    assert bad.status == 422 and "Expires after:" in bad.text


async def test_forms_without_csrf_token_change_nothing(h: AdminHarness) -> None:
    alice, other = await h.session("alice"), await h.session("alice")
    for target, fields in [
        ("/account/password", {"current": password_for("alice"), "new": NEW_PASSWORD}),
        ("/account/sessions/revoke", {"id": other["x-sid"]}),
        ("/account/sign-out-others", {}),
        ("/account/tokens", {"label": "x", "ttl": "1d"}),
    ]:
        fields = {**fields, "repeat": NEW_PASSWORD} if "new" in fields else fields
        answer = await post(h, target, alice, fields, csrf=False)
        assert answer.status == 403, target
        assert 'id="secret"' not in answer.text
    assert await store.check_password(h.runtime.db, "alice", password_for("alice")) is not None
    assert (await page(h, "/", other)).status == 200
    assert (await service.get_user(h.ctx, "alice")).tokens == []


# --- the forced password change -------------------------------------------------------------------


async def test_a_reset_password_leads_to_account_until_changed(h: AdminHarness) -> None:
    reset = await service.reset_password(h.ctx, service.Actor.cli(), "alice")
    assert reset.password is not None
    alice = await h.session("alice")
    # a browser is sent to /account from everything else
    for path in ("/", "/ea/", "/public/", "/admin/users", "/auth/login", "/healthz"):
        answer = await page(h, path, alice)
        assert answer.status == 303, path
        assert answer.headers["location"] == "/account", path
    # anything else is told why, and nothing of the product is served
    refused = await h.call("GET", "/ea/", {**browser(alice), "accept": "application/json"})
    assert refused.status == 403
    assert refused.json() == {"error": "password_change_required"}
    posted = await h.call("POST", "/ea/", {**browser(alice), "accept": "text/html"})
    assert posted.status == 403 and "Choose a new password" in posted.text
    # what stays open: the account page, the stylesheet, signing out
    shown = await page(h, "/account", alice)
    assert shown.status == 200
    assert "Choose a new password to continue" in shown.text
    assert ">Your products<" not in shown.text
    assert (await h.call("GET", "/static/portal.css", {})).status == 200
    assert (await h.call("GET", "/static/portal.css", browser(alice))).status == 200
    changed = await form(
        h, "/account/password", alice, current=reset.password, new=NEW_PASSWORD, repeat=NEW_PASSWORD
    )
    assert changed.status == 303, changed.text
    assert (await page(h, "/", alice)).status == 200
    assert (await h.call("GET", "/ea/", {**browser(alice), "accept": "*/*"})).status == 200
    user = await store.get_user(h.runtime.db, "alice")
    assert user is not None and not user.must_change_password


async def test_a_user_who_must_change_may_still_sign_out(h: AdminHarness) -> None:
    await service.reset_password(h.ctx, service.Actor.cli(), "alice")
    alice = await h.session("alice")
    out = await form(h, "/auth/logout", alice)
    assert out.status == 303 and out.headers["location"] == "/auth/login"
    assert (await page(h, "/account", alice)).status == 303  # revoked: sent to sign in


async def test_the_first_starts_admin_must_change_their_password(h: AdminHarness) -> None:
    admin = await h.session("admin")
    answer = await page(h, "/admin/users", admin)
    assert answer.status == 303 and answer.headers["location"] == "/account"
    token = await h.token("admin")
    api = await h.call("GET", "/admin/api/users", token)
    assert api.status == 403 and api.json()["error"] == "password_change_required"


def test_the_route_table_marks_what_stays_open_during_a_password_change() -> None:
    table = RouteTable(pages=object(), catalogue_level="stable", mounts=[])  # type: ignore[arg-type]
    for path in ("/account", "/account/password", "/auth/logout", "/static/portal.css"):
        assert table.match(path).before_password_change, path
    for path in ("/", "/auth/login", "/auth/callback", "/admin", "/admin/api/users", "/healthz"):
        assert not table.match(path).before_password_change, path
    assert table.match("/account").required() == "stable"  # signed in, whoever


def test_account_is_a_reserved_path() -> None:
    from portal_asgi.settings import RESERVED_PATHS

    assert "/account" in RESERVED_PATHS
