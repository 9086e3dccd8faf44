"""Rules inside a mount (`[[mount]] rules`): the settings that define them and every error they
can make, how a path inside a mount is read for them (rulepaths.py), how the route table picks
the rule (segment boundaries, the longest path, nested mounts), what `check` and `routes` print,
and the request path in process on SQLite and MariaDB: a blocked path is a 404 behind the mount's
level, a raised one requires the higher of its level and the mount's live level."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from portal_asgi import rulepaths
from portal_asgi.db import store
from portal_asgi.db.models import AuditEvent
from portal_asgi.exceptions import SettingsError
from portal_asgi.routes import Route, RouteTable
from portal_asgi.runtime import Runtime
from portal_asgi.settings import RuleSettings, Settings, load_settings
from portal_asgi.types import Receive, Scope, Send

from .asgi import Answer, request, started
from .cli_runner import mint_token, run_cli
from .rule_product import MARKER, SECRETS
from .servers import ROOT, password_for

HEAD = f"""
[portal]
title = "T"
base_url = "http://127.0.0.1:8000"
app_dir = "{ROOT}"
"""


def mount(rules: str, *, path: str = "/ruled", level: str = "stable", extra: str = "") -> str:
    return (
        f'\n[[mount]]\npath = "{path}"\napp = "tests.rule_product:app"\nlevel = "{level}"\n'
        f"{rules}\n{extra}"
    )


def parse(
    tmp_path: Path, text: str, environ: dict[str, str] | None = None
) -> tuple[Path, Settings | SettingsError]:
    file = tmp_path / "settings.toml"
    file.write_text(HEAD + text)
    try:
        return file, load_settings(file, environ=environ or {})
    except SettingsError as error:
        return file, error


def rules_of(tmp_path: Path, text: str, **environ: str) -> tuple[RuleSettings, ...]:
    _, settings = parse(tmp_path, text, environ)
    assert isinstance(settings, Settings), settings
    return settings.mounts[0].rules


# --- settings ---------------------------------------------------------------------------------


def test_rules_parse_in_both_toml_forms(tmp_path: Path) -> None:
    inline = rules_of(
        tmp_path,
        mount('rules = [{ path = "/admin/", level = "admin" }, { path = "/debug", block = true }]'),
    )
    assert inline == (
        RuleSettings(path="/admin", level="admin"),  # the trailing slash dropped
        RuleSettings(path="/debug", block=True),
    )
    tables = rules_of(
        tmp_path,
        mount("")
        + '[[mount.rules]]\npath = "/Admin"\nlevel = "env:RULE_LEVEL"\n'
        + '[[mount.rules]]\npath = "/debug"\nblock = true\n',
        RULE_LEVEL="devel",
    )
    assert tables == (RuleSettings("/Admin", "devel"), RuleSettings("/debug", None, True))
    assert tables[0].key == "/admin"  # case kept as written, read folded


def test_a_rule_may_keep_the_mounts_level_and_a_longer_rule_may_be_lower(tmp_path: Path) -> None:
    """Equal to the mount's level pins it against a lowering override; a longer rule inside a
    raised one may come back down, but never below the mount."""
    rules = rules_of(
        tmp_path,
        mount(
            'rules = [{ path = "/admin", level = "admin" }, { path = "/admin/docs", level = "ea" },'
            ' { path = "/pinned", level = "ea" }]',
            level="ea",
        ),
    )
    assert [rule.level for rule in rules] == ["admin", "ea", "ea"]


def test_a_public_mount_may_raise_a_sub_path(tmp_path: Path) -> None:
    rules = rules_of(
        tmp_path, mount('rules = [{ path = "/staff", level = "stable" }]', level="public")
    )
    assert rules == (RuleSettings("/staff", "stable"),)


def test_a_rule_beside_a_nested_mount_is_fine(tmp_path: Path) -> None:
    text = mount('rules = [{ path = "/debug", block = true }, { path = "/innerx", block = true }]')
    text += mount("", path="/ruled/inner")
    assert len(rules_of(tmp_path, text)) == 2


RULE_ERRORS = [
    ('rules = "admin"', "mount[1].rules", "expected a list like"),
    ('rules = ["/admin"]', "mount[1].rules[1]", "expected a table"),
    (
        'rules = [{ path = "/admin", level = "admin", colour = "red" }]',
        "mount[1].rules[1].colour",
        "unknown key (known keys: path, level, block)",
    ),
    ('rules = [{ level = "admin" }]', "mount[1].rules[1].path", "is required"),
    ('rules = [{ path = 7, level = "admin" }]', "mount[1].rules[1].path", "expected a string"),
    ('rules = [{ path = "admin", level = "admin" }]', "mount[1].rules[1].path", "starts with '/'"),
    ('rules = [{ path = "/", block = true }]', "mount[1].rules[1].path", "the whole mount"),
    ('rules = [{ path = "/a//b", block = true }]', "mount[1].rules[1].path", "no '//'"),
    ('rules = [{ path = "/a//", block = true }]', "mount[1].rules[1].path", "no '//'"),
    ('rules = [{ path = "/%61dmin", block = true }]', "mount[1].rules[1].path", "%-escapes"),
    ('rules = [{ path = "/a/../admin", block = true }]', "mount[1].rules[1].path", "'..'"),
    ('rules = [{ path = "/./admin", block = true }]', "mount[1].rules[1].path", "'.'"),
    ('rules = [{ path = "/ad min", block = true }]', "mount[1].rules[1].path", "not a rule path"),
    ('rules = [{ path = "/admin;x", block = true }]', "mount[1].rules[1].path", "not a rule path"),
    ('rules = [{ path = "/debug.", block = true }]', "mount[1].rules[1].path", "ends with '.'"),
    (
        'rules = [{ path = "/admin", level = "admin" }, { path = "/Admin/", block = true }]',
        "mount[1].rules[2].path",
        "duplicate rule path '/Admin' (also rules[1]; rule paths are matched without regard",
    ),
    (
        'rules = [{ path = "/admin", level = "admin", block = true }]',
        "mount[1].rules[1]",
        'exactly one of level = "..." or block = true',
    ),
    ('rules = [{ path = "/admin" }]', "mount[1].rules[1]", "exactly one of level"),
    (
        'rules = [{ path = "/admin", level = "admin", block = false }]',
        "mount[1].rules[1].block",
        "only block = true",
    ),
    ('rules = [{ path = "/admin", block = "yes" }]', "mount[1].rules[1].block", "true or false"),
    ('rules = [{ path = "/admin", level = "boss" }]', "mount[1].rules[1].level", "unknown level"),
    (
        'rules = [{ path = "/admin", level = "stable" }]',
        "mount[1].rules[1].level",
        "'stable' is below the mount's level 'ea': a rule may only raise",
    ),
    ('rules = [{ path = "/admin", level = "public" }]', "mount[1].rules[1].level", "is below"),
]


@pytest.mark.parametrize(("rules", "key", "problem"), RULE_ERRORS, ids=[e[0] for e in RULE_ERRORS])
def test_rule_errors_name_file_key_and_problem(
    tmp_path: Path, rules: str, key: str, problem: str
) -> None:
    file, error = parse(tmp_path, mount(rules, level="ea"))
    assert isinstance(error, SettingsError), error
    assert (error.file, error.key) == (str(file), key)
    assert problem in str(error)
    assert str(error).startswith(f"{file}: {key}: ")


@pytest.mark.parametrize(
    ("rule", "nested"),
    [
        ("/inner", "/ruled/inner"),  # the same path
        ("/inner", "/ruled/inner/deep"),  # the rule reaches into the nested mount
        ("/inner/x", "/ruled/inner"),  # the rule lies inside it, where it would never be met
        ("/Inner", "/ruled/inner"),  # rules fold case
    ],
)
def test_a_rule_overlapping_a_nested_mount_is_an_error(
    tmp_path: Path, rule: str, nested: str
) -> None:
    text = mount(
        f'rules = [{{ path = "/debug", block = true }}, {{ path = "{rule}", block = true }}]'
    )
    _, error = parse(tmp_path, text + mount("", path=nested))
    assert isinstance(error, SettingsError), error
    assert error.key == "mount[1].rules[2].path"
    assert f"overlaps the nested mount '{nested}' (mount[2])" in str(error)


# --- reading a path for the rules -----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("", ""),
        ("/", ""),
        ("/admin", "/admin"),
        ("/admin/", "/admin"),
        ("//admin//x/", "/admin/x"),
        ("/Admin/X", "/admin/x"),
        ("/admin;jsessionid=1/x", "/admin/x"),
        ("/admin./x", "/admin/x"),
        ("/admin . /x", "/admin/x"),
        ("/admin%/x", "/admin%/x"),  # a lone percent sign is no escape
        ("/\uff21\uff24\uff2d\uff29\uff2e", "/admin"),  # fullwidth ADMIN
        ("/\u212aey", "/key"),  # KELVIN SIGN
        ("/stra\u00dfe", "/strasse"),
        ("/..;/admin", None),
        ("/.../admin", None),
        ("/;x/admin", None),
        ("/x/\uff0e\uff0e/admin", None),  # fullwidth dots
        ("/x\uff0f..\uff0fadmin", None),  # fullwidth slashes
        ("/%61dmin", None),  # an escape left after the server decoded once
        ("/\uff05\uff16\uff11dmin", None),  # the same in fullwidth
        ("/\ufffd\ufffd/admin", None),  # bytes that were not UTF-8
    ],
)
def test_how_a_path_is_read_for_the_rules(path: str, key: str | None) -> None:
    assert rulepaths.read(path) == key


def test_covers_is_on_segment_boundaries() -> None:
    assert rulepaths.covers("/admin", "/admin")
    assert rulepaths.covers("/admin", "/admin/x")
    assert not rulepaths.covers("/admin", "/administer")
    assert not rulepaths.covers("/admin/x", "/admin")


# --- the route table --------------------------------------------------------------------------


async def nothing(scope: Scope, receive: Receive, send: Send) -> None:
    return None


def level(name: str) -> Callable[[], str]:
    return lambda: name


def table() -> RouteTable:
    def rule(path: str, required: str, kind: str = "product") -> Route:
        app = None if kind == "missing" else nothing
        return Route(kind, app, level(required), path="/m", rule=path)  # type: ignore[arg-type]

    rules = {
        "/admin": rule("/admin", "admin"),
        "/admin/docs": rule("/admin/docs", "stable"),
        "/debug": rule("/debug", "stable", "missing"),
        "/a/b/c": rule("/a/b/c", "devel"),
    }
    mounts = [
        Route("product", nothing, level("stable"), path="/m", rules=rules),
        Route("product", nothing, level("ea"), path="/m/inner"),
        Route("product", nothing, level("ea"), path="/plain"),
    ]
    return RouteTable(pages=nothing, catalogue_level="stable", mounts=mounts)


@pytest.mark.parametrize(
    ("path", "mount", "rule"),
    [
        ("/m/", "/m", ""),
        ("/m/x", "/m", ""),
        ("/m/admin", "/m", "/admin"),
        ("/m/admin/", "/m", "/admin"),
        ("/m/admin/x/y", "/m", "/admin"),
        ("/m/administer", "/m", ""),  # segment boundaries
        ("/m/admi", "/m", ""),
        ("/m/x/admin", "/m", ""),  # rule paths are relative to the mount's root
        ("/m/admin/docs", "/m", "/admin/docs"),  # the longest rule path wins
        ("/m/admin/docs/x", "/m", "/admin/docs"),
        ("/m/admin/docsx", "/m", "/admin"),
        ("/m/a/b", "/m", ""),
        ("/m/a/b/c/d", "/m", "/a/b/c"),
        ("/m/ADMIN", "/m", "/admin"),  # read as the rules read it
        ("/m/Admin;x/y", "/m", "/admin"),
        ("/m//admin", "/m", "/admin"),
        ("/m/admin./", "/m", "/admin"),
        ("/m/debug", "/m", "/debug"),
        ("/m/inner/admin", "/m/inner", ""),  # the nested mount answers: not the outer's rules
        ("/m/inner/debug", "/m/inner", ""),
        ("/m/Inner/debug", "/m", ""),  # mount paths keep their case: the outer answers
        ("/plain/admin", "/plain", ""),
    ],
)
def test_the_route_table_picks_the_rule(path: str, mount: str, rule: str) -> None:
    route = table().match(path)
    assert (route.path, route.rule) == (mount, rule)
    assert route.kind == ("missing" if rule == "/debug" else "product")


def test_the_route_table_refuses_what_the_rules_cannot_read() -> None:
    routes = table()
    for path in ("/m/x/%61dmin", "/m/..;/admin", "/m/\ufffd/admin"):
        route = routes.match(path)
        assert (route.kind, route.status) == ("missing", 400), path
    # only inside a mount with rules: another mount's product reads its own paths
    assert routes.match("/plain/x/%61dmin").path == "/plain"
    assert routes.match("/m").kind == "bare"
    assert (routes.match("/nothing/admin").kind, routes.match("/nothing").status) == (
        "missing",
        404,
    )


# --- the command line -------------------------------------------------------------------------


def test_check_and_routes_show_the_rules(tmp_path: Path) -> None:
    text = mount(
        'rules = [{ path = "/admin", level = "admin" }, { path = "/debug", block = true }]'
    )
    file, _ = parse(tmp_path, text + mount("", path="/plain", level="ea"))
    done = run_cli(file, "check")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{file}: OK, 2 mounts (2 rules), levels public < stable")
    rows = [re.split(r"\s{2,}", line.strip()) for line in done.stdout.splitlines()[1:]]
    assert rows[1:4] == [  # each rule right below its mount
        ["/ruled", "stable", "stable, ea, devel, admin"],
        ["/ruled/admin", "admin", "admin"],
        ["/ruled/debug", "blocked", "nobody: answers 404"],
    ]
    done = run_cli(file, "routes")
    assert done.returncode == 0, done.stderr
    rows = [re.split(r"\s{2,}", line.strip()) for line in done.stdout.splitlines()]
    assert ["/ruled/admin", "admin", "rule of /ruled/: level admin"] in rows
    assert ["/ruled/debug", "blocked", "rule of /ruled/: blocked (404)"] in rows


def test_check_refuses_a_rule_below_the_mount(tmp_path: Path) -> None:
    file, _ = parse(tmp_path, mount('rules = [{ path = "/x", level = "stable" }]', level="devel"))
    done = run_cli(file, "check")
    assert done.returncode != 0 and done.stdout == ""
    assert f"{file}: mount[1].rules[1].level: 'stable' is below" in done.stderr
    assert "Traceback" not in done.stderr


# --- in process, on SQLite and MariaDB ----------------------------------------------------------

MOUNTS = """
[[mount]]
path = "/ruled"
app = "tests.rule_product:app"
level = "stable"
rules = [
  { path = "/admin", level = "admin" },
  { path = "/admin/docs", level = "stable" },
  { path = "/debug", block = true },
]

[[mount]]
path = "/ruled/inner"
app = "tests.rule_product:app"
level = "stable"

[[mount]]
path = "/open"
app = "tests.rule_product:app"
level = "public"
rules = [{ path = "/admin", level = "devel" }, { path = "/debug", block = true }]
"""
JSON = [(b"accept", b"application/json")]
BROWSER = [(b"accept", b"text/html")]


async def users(runtime: Runtime, file: Path) -> dict[str, list[tuple[bytes, bytes]]]:
    """A Bearer token's headers for a user at each level."""
    headers = {}
    for name in ("stable", "devel", "admin"):
        await store.add_user(runtime.db, f"u-{name}", level=name, password=password_for(name))
        token = await asyncio.to_thread(mint_token, file, f"u-{name}")
        headers[name] = [(b"authorization", f"Bearer {token}".encode()), *JSON]
    for _ in range(200):
        if all(runtime.directory.user(f"u-{name}") for name in headers):
            break
        await asyncio.sleep(0.05)
    return headers


def product(answer: Answer) -> dict[str, object]:
    assert answer.status == 200, (answer.status, answer.body[:200])
    body = json.loads(answer.body)
    assert isinstance(body, dict) and body["product"] == MARKER
    return body


def refused(answer: Answer, status: int) -> None:
    assert answer.status == status, (answer.status, answer.body[:200])
    assert MARKER.encode() not in answer.body
    assert not any(secret.encode() in answer.body for secret in SECRETS.values())


async def audit_events(runtime: Runtime, event: str) -> list[dict[str, object]]:
    for _ in range(100):  # written after the answer: poll
        async with runtime.db.session() as session:
            rows = await session.scalars(select(AuditEvent).where(AuditEvent.event == event))
            found = [json.loads(row.detail) for row in rows]
        if found:
            return found
        await asyncio.sleep(0.05)
    return []


def test_rules_in_the_request_path(tmp_path: Path, database_url: str) -> None:
    async def scenario() -> None:
        async with started(tmp_path, mounts=MOUNTS, database_url=database_url) as (app, runtime):
            who = await users(runtime, tmp_path / "settings.toml")
            stable, devel, admin = who["stable"], who["devel"], who["admin"]
            # a blocked path: behind the mount's level as any path of the product, then 404
            refused(await request(app, "/ruled/debug/x", headers=JSON), 401)
            sign_in = await request(app, "/ruled/debug", headers=BROWSER)
            assert (sign_in.status, sign_in.header("location")) == (
                303,
                "/auth/login?next=/ruled/debug",
            )
            for path in ("/ruled/debug", "/ruled/debug/", "/ruled/debug/x", "/ruled/DEBUG;x"):
                refused(await request(app, path, headers=admin), 404)
            refused(await request(app, "/ruled/debug", method="POST", headers=admin), 404)
            refused(await request(app, "/open/debug/x", headers=JSON), 404)
            blocked = await audit_events(runtime, "rule.blocked")
            assert {"path": "/ruled/debug", "rule": "/debug", "status": 404}.items() <= (
                blocked[0].items()
            )
            # a raised path: the rule's level, the answers table's way
            refused(await request(app, "/ruled/admin", headers=JSON), 401)
            refused(await request(app, "/ruled/admin/x", headers=stable), 403)
            refused(await request(app, "/ruled/Admin/x", headers=devel), 403)
            refused(await request(app, "/open/admin/x", headers=JSON), 401)
            refused(await request(app, "/open/ADMIN", headers=stable), 403)
            seen = product(await request(app, "/ruled/admin/x", headers=admin))
            assert seen["secrets"] == [SECRETS["/admin"]]
            assert seen["portal"] == {"mount": "/ruled", "level": "admin"}  # what was checked
            assert product(await request(app, "/open/admin", headers=devel))["path"] == "/admin"
            # everything else: the mount's level
            assert product(await request(app, "/ruled/administer", headers=stable))["portal"] == {
                "mount": "/ruled",
                "level": "stable",
            }
            assert product(await request(app, "/open/debugger", headers=JSON))["secrets"] == []
            # the longest rule wins; the nested mount answers its own paths
            docs = product(await request(app, "/ruled/admin/docs/x", headers=stable))
            assert docs["portal"] == {"mount": "/ruled", "level": "stable"}
            inner = product(await request(app, "/ruled/inner/debug", headers=stable))
            assert inner["portal"] == {"mount": "/ruled/inner", "level": "stable"}
            # a path the rules cannot read one way
            refused(await request(app, "/ruled/x/%61dmin", headers=admin), 400)

    asyncio.run(scenario())


def test_a_rules_level_follows_the_mounts_live_level(tmp_path: Path, database_url: str) -> None:
    """Never below the mount's level now: an override raising the mount above a rule raises the
    rule's path with it; one lowering the mount leaves the rule where it is."""

    async def scenario() -> None:
        async with started(tmp_path, mounts=MOUNTS, database_url=database_url) as (app, runtime):
            who = await users(runtime, tmp_path / "settings.toml")

            async def override(level: str | None) -> None:
                await store.set_mount_level(runtime.db, "/ruled", level, by="test")
                expected = level or "stable"
                for _ in range(200):
                    if runtime.policy.level("/ruled") == expected:
                        return
                    await asyncio.sleep(0.05)
                raise AssertionError(f"the override {level} never arrived")

            await override("devel")
            refused(await request(app, "/ruled/x", headers=who["stable"]), 403)
            refused(await request(app, "/ruled/admin/docs", headers=who["stable"]), 403)
            docs = product(await request(app, "/ruled/admin/docs", headers=who["devel"]))
            assert docs["portal"] == {"mount": "/ruled", "level": "devel"}
            refused(await request(app, "/ruled/admin", headers=who["devel"]), 403)
            refused(await request(app, "/ruled/debug", headers=who["stable"]), 403)
            refused(await request(app, "/ruled/debug", headers=who["devel"]), 404)
            await override("public")
            assert product(await request(app, "/ruled/x", headers=JSON))["secrets"] == []
            refused(await request(app, "/ruled/admin/docs", headers=JSON), 401)
            refused(await request(app, "/ruled/admin", headers=who["devel"]), 403)
            refused(await request(app, "/ruled/debug", headers=JSON), 404)
            await override(None)
            refused(await request(app, "/ruled/x", headers=JSON), 401)

    asyncio.run(scenario())
