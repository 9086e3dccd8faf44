"""The admin area's pages (`/admin`, docs/admin.md) through the whole request path, in process,
on SQLite and MariaDB: every page, every form's operation, and every refusal (no identity, not
an admin, no CSRF token, bad input naming the field, the last admin, a stale sign-in asking to
confirm the password), each checked for what it did not change or show as well. The rules
themselves are the admin service's, tested through the API in test_admin_api.py."""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import anyio
import pytest

from portal_asgi.admin import service
from portal_asgi.db import store

from .admin_harness import ROOT, AdminHarness, Response, admin_portal
from .helpers import HTML
from .servers import password_for

pytestmark = pytest.mark.anyio

SECRET = re.compile(r'<code class="secret" id="secret">([^<]+)</code>')
FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
async def h(tmp_path: Path, database_url: str) -> AsyncIterator[AdminHarness]:
    async with admin_portal(tmp_path, database_url) as harness:
        yield harness


def browser(creds: dict[str, str]) -> dict[str, str]:
    """A browser's headers: the cookies, HTML wanted, no X-CSRF-Token (forms carry the token)."""
    return {**HTML, **{k: v for k, v in creds.items() if k in ("cookie", "authorization")}}


async def page(h: AdminHarness, path: str, creds: dict[str, str] | None = None) -> Response:
    return await h.call("GET", path, browser(creds or {}))


async def post(
    h: AdminHarness,
    target: str,
    creds: dict[str, str],
    fields: dict[str, str],
    *,
    csrf: bool = True,
) -> Response:
    """POST `fields` to `target` as a browser's form, with the page's CSRF token unless `csrf`
    is False."""
    if csrf:
        fields = {"csrf_token": creds["x-csrf-token"], **fields}
    body = urlencode(fields).encode()
    return await h.call("POST", target, {**browser(creds), **FORM}, raw=body)


async def form(h: AdminHarness, target: str, creds: dict[str, str], /, **fields: str) -> Response:
    return await post(h, target, creds, fields)


async def level_of(h: AdminHarness, username: str) -> str | None:
    user = await store.get_user(h.runtime.db, username)
    return user.level if user else None


async def events(h: AdminHarness, event: str) -> list[dict[str, object]]:
    found = await service.list_audit(h.ctx, event=event)
    return [{"username": e.username, **e.detail} for e in found.events]


def showing(first: int | str, last: int | str, total: int | str) -> str:
    """The pager's words."""
    return f"Showing {first}\N{EN DASH}{last} of {total}"


def shown_once(answer: Response) -> str:
    found = SECRET.findall(answer.text)
    assert len(found) == 1, answer.text
    return html.unescape(found[0])


PAGES = ["/admin", "/admin/users", "/admin/user?name=root", "/admin/products", "/admin/audit"]
PAGES += ["/admin/settings"]


# --- who may see the admin area -----------------------------------------------------------------


async def test_no_identity_is_sent_to_sign_in_and_sees_nothing(h: AdminHarness) -> None:
    for path in PAGES:
        answer = await page(h, path)
        assert answer.status == 303, path
        target = path.replace("?", "%3F").replace("=", "%3D")
        assert answer.headers["location"] == f"/auth/login?next={target}"
        assert b"root" not in answer.body
        machine = await h.call("GET", path, {"accept": "application/json"})
        assert machine.status == 401, path
        assert machine.json() == {"error": "authentication_required"}


async def test_not_admin_gets_the_403_page_and_nothing_else(h: AdminHarness) -> None:
    await h.add_user("dev", "devel")
    dev = await h.session("dev")
    for path in PAGES:
        answer = await page(h, path, dev)
        assert answer.status == 403, path
        assert answer.headers["content-type"].startswith("text/html")
        assert "For administrators" in answer.text
        assert "root" not in answer.text and "root@example.org" not in answer.text
        assert 'href="/admin"' not in answer.text  # no link to where they may not go


async def test_not_admin_changes_nothing(h: AdminHarness) -> None:
    await h.add_user("dev", "devel")
    creds = await h.session("dev")
    raised = await form(h, "/admin/user/level", creds, username="dev", level="admin")
    assert raised.status == 403
    assert await level_of(h, "dev") == "devel"
    made = await form(h, "/admin/users", creds, username="mallory", level="admin")
    assert made.status == 403
    assert await store.get_user(h.runtime.db, "mallory") is None
    # an API token of a devel user does not open the pages either
    assert (await page(h, "/admin/users", await h.token("dev"))).status == 403


async def test_admin_sees_the_header_link_and_every_tab(h: AdminHarness) -> None:
    creds = await h.session(ROOT)
    home = await page(h, "/admin", creds)
    assert home.status == 303 and home.headers["location"] == "/admin/users"
    catalogue = await page(h, "/", creds)
    assert '<a class="nav-link" href="/admin">Admin</a>' in catalogue.text
    for path in PAGES[1:]:
        answer = await page(h, path, creds)
        assert answer.status == 200, (path, answer.text)
        assert answer.headers["cache-control"] == "no-store"
        for tab in ("/admin/users", "/admin/products", "/admin/audit", "/admin/settings"):
            assert f'href="{tab}"' in answer.text
        assert 'name="csrf_token"' in answer.text


# --- CSRF ------------------------------------------------------------------------------------------

CHANGES = [
    ("/admin/users", {"username": "newbie", "level": "stable"}),
    ("/admin/user/level", {"username": "alice", "level": "devel"}),
    ("/admin/user/state", {"username": "alice", "active": "0"}),
    ("/admin/user/password", {"username": "alice"}),
    ("/admin/user/sign-out", {"username": "alice"}),
    ("/admin/user/delete", {"username": "alice", "confirm": "yes"}),
    ("/admin/user/tokens", {"username": "alice", "label": "x", "ttl": "1d"}),
    ("/admin/products/level", {"path": "/ea", "level": "stable"}),
    ("/admin/settings/reload", {}),
]


async def test_form_without_or_with_a_forged_csrf_token_changes_nothing(h: AdminHarness) -> None:
    await h.add_user("alice", "stable")
    alice = await h.session("alice")
    creds = await h.session(ROOT)
    for path, fields in CHANGES:
        for forged in ({}, {"csrf_token": "forged"}, {"csrf_token": alice["x-csrf-token"]}):
            answer = await post(h, path, creds, {**forged, **fields}, csrf=False)
            assert answer.status == 403, (path, answer.text)
            assert "Form expired" in answer.text
            assert 'id="secret"' not in answer.text
    user = await store.get_user(h.runtime.db, "alice")
    assert user is not None and user.level == "stable" and user.active
    assert not user.must_change_password
    assert await store.get_user(h.runtime.db, "newbie") is None
    assert h.runtime.policy.level("/ea") == "ea"
    assert (await h.call("GET", "/", browser(alice))).status == 200  # still signed in
    assert await events(h, "token.mint") == []


# --- users -----------------------------------------------------------------------------------------


async def test_users_table_is_searched_and_paged(h: AdminHarness) -> None:
    for i in range(60):  # without passwords: hashing sixty would only slow the test down
        await store.add_user(
            h.runtime.db, f"user{i:02d}", level="stable", password=None, email=f"u{i}@lab.example"
        )
    await h.add_user("carol", "ea", email="carol@other.example")
    creds = await h.session(ROOT)
    first = await page(h, "/admin/users", creds)
    assert "63 users" in first.text  # admin, root, carol and sixty
    assert showing(1, 50, 63) in first.text
    assert 'href="/admin/users?offset=50"' in first.text
    second = await page(h, "/admin/users?offset=50", creds)
    assert showing(51, 63, 63) in second.text
    assert "user59" in second.text and "user00" not in second.text
    found = await page(h, "/admin/users?q=lab.example&offset=50", creds)
    assert showing(51, 60, 60) in found.text
    assert 'href="/admin/users?q=lab.example&amp;offset=0"' in found.text
    carol = await page(h, "/admin/users?q=carol", creds)
    assert "1 user matching" in carol.text
    assert 'href="/admin/user?name=carol"' in carol.text and "user00" not in carol.text
    # what was searched for is shown, escaped
    hostile = await page(h, "/admin/users?q=%3Cscript%3Ealert(1)%3C/script%3E", creds)
    assert hostile.status == 200
    assert "<script>alert(1)" not in hostile.text
    assert "&lt;script&gt;alert(1)" in hostile.text
    assert "No user matches" in hostile.text


async def test_create_user_with_a_password(h: AdminHarness) -> None:
    creds = await h.session(ROOT)
    answer = await form(
        h,
        "/admin/users",
        creds,
        username="alice",
        email="alice@example.org",
        level="ea",
        password="a long password 1",
    )
    assert answer.status == 303
    assert answer.headers["location"] == "/admin/user?name=alice&done=created"
    user = await store.get_user(h.runtime.db, "alice")
    assert user is not None and user.level == "ea" and user.email == "alice@example.org"
    assert not user.must_change_password
    assert [e["by"] for e in await events(h, "user.add")] == [ROOT]
    shown = await page(h, answer.headers["location"], creds)
    assert "User created." in shown.text and "alice@example.org" in shown.text


async def test_create_user_without_a_password_shows_a_one_time_one_once(h: AdminHarness) -> None:
    creds = await h.session(ROOT)
    answer = await form(h, "/admin/users", creds, username="bob", level="stable", password="")
    assert answer.status == 200
    assert answer.headers["cache-control"] == "no-store"
    password = shown_once(answer)
    user = await store.get_user(h.runtime.db, "bob")
    assert user is not None and user.must_change_password
    assert await store.check_password(h.runtime.db, "bob", password) is not None
    # never again: not on the user's page, not in the audit log
    assert password not in (await page(h, "/admin/user?name=bob", creds)).text
    assert password not in (await page(h, "/admin/audit", creds)).text


@pytest.mark.parametrize(
    ("fields", "status", "says"),
    [
        ({"username": "has space", "level": "stable"}, 422, "Username:"),
        ({"username": "dora", "level": "wizard"}, 422, "Level:"),
        ({"username": "dora", "level": "stable", "email": "no-at-sign"}, 422, "E-mail:"),
        ({"username": "dora", "level": "stable", "password": "short"}, 422, "Password:"),
        ({"username": ROOT, "level": "stable"}, 409, "already exists"),
    ],
)
async def test_create_user_bad_input_names_the_field_and_keeps_the_form(
    h: AdminHarness, fields: dict[str, str], status: int, says: str
) -> None:
    creds = await h.session(ROOT)
    answer = await form(h, "/admin/users", creds, **fields)
    assert answer.status == status, answer.text
    assert 'class="error"' in answer.text and says in answer.text
    assert f'value="{html.escape(fields["username"])}"' in answer.text  # what was typed stays
    assert await store.get_user(h.runtime.db, "dora") is None
    assert 'id="secret"' not in answer.text


async def test_user_page_shows_sessions_and_tokens_of_the_user(h: AdminHarness) -> None:
    await h.add_user("alice", "stable", email="alice@example.org")
    alice = await h.session("alice")
    token = await h.token("alice")
    creds = await h.session(ROOT)
    answer = await page(h, "/admin/user?name=alice", creds)
    assert answer.status == 200
    assert "alice@example.org" in answer.text
    assert alice["x-sid"][:8] in answer.text and token["x-sid"][:8] in answer.text
    assert token["authorization"].split()[1] not in answer.text  # ids, never tokens
    missing = await page(h, "/admin/user?name=nobody", creds)
    assert missing.status == 404 and "There is no user" in missing.text


async def test_set_level_applies_at_once_and_is_audited(h: AdminHarness) -> None:
    await h.add_user("alice", "stable")
    alice = await h.session("alice")
    assert (await h.call("GET", "/ea/", {**browser(alice), "accept": "*/*"})).status == 403
    creds = await h.session(ROOT)
    answer = await form(h, "/admin/user/level", creds, username="alice", level="ea")
    assert answer.status == 303
    assert answer.headers["location"] == "/admin/user?name=alice&done=level"
    assert await level_of(h, "alice") == "ea"
    assert (await h.call("GET", "/ea/", {**browser(alice), "accept": "*/*"})).status == 200
    assert await events(h, "user.level") == [
        {"username": "alice", "by": ROOT, "level": "ea", "was": "stable"}
    ]
    bad = await form(h, "/admin/user/level", creds, username="alice", level="wizard")
    assert bad.status == 422 and "Level:" in bad.text
    assert await level_of(h, "alice") == "ea"


async def test_the_last_admin_is_not_lowered_disabled_or_deleted(h: AdminHarness) -> None:
    # the first start's `admin` is an admin too: without them root is the last one
    await service.delete_user(h.ctx, service.Actor.cli(), "admin")
    creds = await h.session(ROOT)
    lowered = await form(h, "/admin/user/level", creds, username=ROOT, level="devel")
    assert lowered.status == 409, lowered.text
    assert "last enabled admin" in lowered.text
    disabled = await form(h, "/admin/user/state", creds, username=ROOT, active="0")
    assert disabled.status == 409
    deleted = await form(h, "/admin/user/delete", creds, username=ROOT, confirm="yes")
    assert deleted.status == 409
    user = await store.get_user(h.runtime.db, ROOT)
    assert user is not None and user.level == "admin" and user.active
    assert (await page(h, "/admin/users", creds)).status == 200  # still signed in


async def test_disable_signs_them_out_and_enable_lets_them_back(h: AdminHarness) -> None:
    await h.add_user("alice", "stable")
    alice = await h.session("alice")
    creds = await h.session(ROOT)
    off = await form(h, "/admin/user/state", creds, username="alice", active="0")
    assert off.status == 303 and off.headers["location"].endswith("done=disabled")
    assert (await page(h, "/", alice)).status == 303  # out: sent to sign in
    on = await form(h, "/admin/user/state", creds, username="alice", active="1")
    assert on.status == 303 and on.headers["location"].endswith("done=enabled")
    assert (await page(h, "/", await h.session("alice"))).status == 200
    bad = await form(h, "/admin/user/state", creds, username="alice", active="maybe")
    assert bad.status == 422 and "State:" in bad.text


async def test_sign_out_everywhere_revokes_sessions_and_tokens(h: AdminHarness) -> None:
    await h.add_user("alice", "stable")
    alice, token = await h.session("alice"), await h.token("alice")
    creds = await h.session(ROOT)
    answer = await form(h, "/admin/user/sign-out", creds, username="alice")
    assert answer.status == 303 and answer.headers["location"].endswith("done=signed-out")
    assert (await page(h, "/", alice)).status == 303
    assert (await h.call("GET", "/", token)).status == 401
    assert (await page(h, "/", creds)).status == 200  # the admin's own session is not touched


async def test_revoke_one_session(h: AdminHarness) -> None:
    await h.add_user("alice", "stable")
    first, second = await h.session("alice"), await h.session("alice")
    creds = await h.session(ROOT)
    answer = await form(h, "/admin/sessions/revoke", creds, id=first["x-sid"], username="alice")
    assert answer.status == 303
    assert answer.headers["location"] == "/admin/user?name=alice&done=revoked"
    assert (await page(h, "/", first)).status == 303
    assert (await page(h, "/", second)).status == 200
    gone = await form(h, "/admin/sessions/revoke", creds, id="nope-nope-nope", username="alice")
    assert gone.status == 404


async def test_reset_password_asks_a_stale_admin_to_confirm_then_shows_it_once(
    h: AdminHarness,
) -> None:
    await h.add_user("alice", "stable")
    stale = await h.session(ROOT, signed_in_ago=service.REAUTH_WINDOW + 60)
    asked = await form(h, "/admin/user/password", stale, username="alice")
    assert asked.status == 200
    assert "Confirm it is you" in asked.text
    assert 'action="/admin/user/password"' in asked.text
    assert 'name="username" value="alice"' in asked.text  # the action's fields go along
    assert 'id="secret"' not in asked.text
    assert await store.check_password(h.runtime.db, "alice", password_for("alice"))
    wrong = await form(
        h, "/admin/user/password", stale, username="alice", reauth_password="not it at all"
    )
    assert wrong.status == 422 and "Password:" in wrong.text
    assert 'id="secret"' not in wrong.text
    assert await store.check_password(h.runtime.db, "alice", password_for("alice"))
    assert [e["username"] for e in await events(h, "reauth.failed")] == [ROOT]
    done = await form(
        h, "/admin/user/password", stale, username="alice", reauth_password=password_for(ROOT)
    )
    assert done.status == 200, done.text
    one_time = shown_once(done)
    assert await store.check_password(h.runtime.db, "alice", password_for("alice")) is None
    user = await store.check_password(h.runtime.db, "alice", one_time)
    assert user is not None and user.must_change_password
    # confirmed: the next sensitive action is not asked again
    again = await form(h, "/admin/user/password", stale, username="alice")
    assert again.status == 200 and shown_once(again) != one_time


async def test_delete_needs_the_box_ticked_and_a_recent_sign_in(h: AdminHarness) -> None:
    await h.add_user("alice", "stable")
    alice = await h.session("alice")
    stale = await h.session(ROOT, signed_in_ago=service.REAUTH_WINDOW + 60)
    unticked = await form(h, "/admin/user/delete", stale, username="alice")
    assert unticked.status == 422 and "Confirm:" in unticked.text
    asked = await form(h, "/admin/user/delete", stale, username="alice", confirm="yes")
    assert asked.status == 200 and "Confirm it is you" in asked.text
    assert 'name="confirm" value="yes"' in asked.text
    assert await store.get_user(h.runtime.db, "alice") is not None
    done = await form(
        h,
        "/admin/user/delete",
        stale,
        username="alice",
        confirm="yes",
        reauth_password=password_for(ROOT),
    )
    assert done.status == 303
    assert done.headers["location"] == "/admin/users?done=deleted"
    assert await store.get_user(h.runtime.db, "alice") is None
    assert (await page(h, "/", alice)).status == 303


async def test_mint_a_token_for_someone_else(h: AdminHarness) -> None:
    await h.add_user("alice", "ea")
    stale = await h.session(ROOT, signed_in_ago=service.REAUTH_WINDOW + 60)
    asked = await form(h, "/admin/user/tokens", stale, username="alice", label="sync", ttl="7d")
    assert asked.status == 200 and "Confirm it is you" in asked.text
    assert await events(h, "token.mint") == []
    fresh = await h.session(ROOT)
    done = await form(h, "/admin/user/tokens", fresh, username="alice", label="sync", ttl="7d")
    assert done.status == 200, done.text
    token = shown_once(done)
    opened = await h.call("GET", "/ea/", {"authorization": f"Bearer {token}"})
    assert opened.status == 200
    listed = await page(h, "/admin/user?name=alice", fresh)
    assert "sync" in listed.text and token not in listed.text
    bad = await form(h, "/admin/user/tokens", fresh, username="alice", label="x", ttl="9999d")
    assert bad.status == 422 and "Expires after:" in bad.text


async def test_mint_a_token_for_oneself_is_not_asked_to_confirm(h: AdminHarness) -> None:
    stale = await h.session(ROOT, signed_in_ago=service.REAUTH_WINDOW + 60)
    done = await form(h, "/admin/user/tokens", stale, username=ROOT, label="mine", ttl="1d")
    assert done.status == 200
    assert shown_once(done).count(".") == 2


# --- products ---------------------------------------------------------------------------------------


async def test_products_page_lists_every_mount_with_both_levels(h: AdminHarness) -> None:
    creds = await h.session(ROOT)
    answer = await page(h, "/admin/products", creds)
    for product in h.runtime.products:
        assert f'<a href="{product.mount.path}/">{product.mount.path}</a>' in answer.text
    assert "override" not in answer.text.split("<tbody>")[1]


async def test_product_level_override_then_revert(h: AdminHarness) -> None:
    await h.add_user("sam", "stable")
    sam = {**browser(await h.session("sam")), "accept": "*/*"}
    assert (await h.call("GET", "/ea/", sam)).status == 403
    creds = await h.session(ROOT)
    lowered = await form(h, "/admin/products/level", creds, path="/ea", level="stable")
    assert lowered.status == 303
    assert lowered.headers["location"] == "/admin/products?done=level"
    assert (await h.call("GET", "/ea/", sam)).status == 200
    shown = await page(h, "/admin/products?done=level", creds)
    row = shown.text.split('<a href="/ea/">/ea</a>')[1].split("</tr>")[0]
    assert "override" in row and "Revert" in row
    reverted = await form(h, "/admin/products/level", creds, path="/ea", level="")
    assert reverted.headers["location"] == "/admin/products?done=reverted"
    assert (await h.call("GET", "/ea/", sam)).status == 403
    assert [e["event"] for e in await events_named(h, "mount.")] == ["mount.revert", "mount.level"]


async def events_named(h: AdminHarness, prefix: str) -> list[dict[str, object]]:
    found = await service.list_audit(h.ctx, event=prefix)
    return [{"event": e.event, **e.detail} for e in found.events]


async def test_product_level_bad_input(h: AdminHarness) -> None:
    creds = await h.session(ROOT)
    bad = await form(h, "/admin/products/level", creds, path="/ea", level="wizard")
    assert bad.status == 422 and "Level:" in bad.text
    missing = await form(h, "/admin/products/level", creds, path="/nowhere", level="stable")
    assert missing.status == 404
    assert h.runtime.policy.level("/ea") == "ea"


# --- audit ------------------------------------------------------------------------------------------


async def test_audit_page_filters_and_pages(h: AdminHarness) -> None:
    await h.add_user("alice", "stable")
    for level in ("ea", "devel", "stable") * 20:
        await service.set_level(h.ctx, service.Actor(ROOT, client="10.0.0.9"), "alice", level)
    await service.revoke_session(h.ctx, service.Actor(ROOT), (await h.session("alice"))["x-sid"])
    creds = await h.session(ROOT)
    everything = await page(h, "/admin/audit", creds)
    assert showing(1, 50, "")[:-1] in everything.text
    levels = await page(h, "/admin/audit?event=user.level&user=alice&client=10.0.0.9", creds)
    assert showing(1, 50, 60) in levels.text
    assert "session.revoke" not in levels.text
    assert 'href="/admin/audit.csv?user=alice&amp;event=user.level&amp;client=10.0.0.9"' in (
        levels.text
    )
    later = await page(h, "/admin/audit?event=user.level&offset=50", creds)
    assert showing(51, 60, 60) in later.text
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date().isoformat()
    assert "No events match" in (await page(h, f"/admin/audit?since={future}", creds)).text
    bad = await page(h, "/admin/audit?since=yesterday-ish", creds)
    assert bad.status == 422 and "Since:" in bad.text and "2026-01-31" in bad.text


async def test_audit_outcome_filter(h: AdminHarness) -> None:
    await h.add_user("dev", "devel")
    await page(h, "/admin/users", await h.session("dev"))  # a refusal: denied
    creds = await h.session(ROOT)
    await form(h, "/admin/user/level", creds, username="dev", level="ea")
    refused = await page(h, "/admin/audit?outcome=refused", creds)
    assert "denied" in refused.text and "user.level" not in refused.text
    ok = await page(h, "/admin/audit?outcome=ok", creds)
    assert "user.level" in ok.text and ">denied<" not in ok.text
    csv = await h.call("GET", "/admin/audit.csv?outcome=refused", browser(creds))
    assert csv.status == 200 and "denied" in csv.text and "user.level" not in csv.text


# --- settings -----------------------------------------------------------------------------------------


async def test_settings_page_shows_the_file_and_reloads(h: AdminHarness) -> None:
    creds = await h.session(ROOT)
    runtime = h.runtime
    shown = await page(h, "/admin/settings", creds)
    assert runtime.settings.file in shown.text
    assert "none" in shown.text.split("Last reload error")[1][:200]
    file = anyio.Path(runtime.settings.file)
    good = await file.read_text()
    await file.write_text(good.replace('title = "Test Portal"', 'title = "Renamed Portal"'))
    done = await form(h, "/admin/settings/reload", creds)
    assert done.status == 303, done.text
    assert done.headers["location"] == "/admin/settings?done=reloaded"
    assert "Renamed Portal" in (await page(h, "/admin/settings", creds)).text
    await file.write_text(good.replace('level = "ea"', 'level = "wizard"', 1))
    refused = await form(h, "/admin/settings/reload", creds)
    assert refused.status == 422
    assert "Reload refused" in refused.text and "wizard" in refused.text
    after = await page(h, "/admin/settings", creds)
    assert "The file on disk was refused" in after.text and "Renamed Portal" in after.text
    assert [e["by"] for e in await events(h, "settings.reload.refused")] == [ROOT]
