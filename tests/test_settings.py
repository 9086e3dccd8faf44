"""settings.toml: one test per kind of error, each naming the file and the key; and files that
parse (nested mounts, `env:` values, durations)."""

from __future__ import annotations

from pathlib import Path

import pytest

from portal_asgi.exceptions import SettingsError
from portal_asgi.products import load_products
from portal_asgi.settings import RESERVED_PATHS, Settings, load_settings, parse_duration

from .servers import ROOT

BASE = """
[portal]
title = "T"
base_url = "http://127.0.0.1:8000"
app_dir = "{root}"

[auth]
session_lifetime = "1h"
idle_timeout = "30m"

[[mount]]
path = "/stable"
app = "products.test.app:app"
level = "stable"
"""


def write(tmp_path: Path, text: str, name: str = "settings.toml") -> Path:
    file = tmp_path / name
    file.write_text(text.replace("{root}", str(ROOT)))
    return file


def refused(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> SettingsError:
    file = write(tmp_path, text)
    with pytest.raises(SettingsError) as caught:
        load_settings(file, environ=environ or {})
    error = caught.value
    assert error.file == str(file)
    assert str(file) in str(error)
    return error


def mount(path: str, level: str | None = "stable", app: str = "products.test.app:app") -> str:
    text = f'\n[[mount]]\npath = "{path}"\napp = "{app}"\n'
    return text + (f'level = "{level}"\n' if level is not None else "")


# --- errors ----------------------------------------------------------------------------------


def test_unknown_top_level_key(tmp_path: Path) -> None:
    error = refused(tmp_path, 'colour = "blue"\n' + BASE)
    assert error.key == "colour"
    assert "colour: unknown key" in str(error)


def test_unknown_top_level_table(tmp_path: Path) -> None:
    error = refused(tmp_path, BASE + "\n[portals]\ntitle = 'x'\n")
    assert error.key == "portals"
    assert "unknown key" in error.problem


def test_unknown_portal_key(tmp_path: Path) -> None:
    error = refused(tmp_path, BASE.replace('title = "T"', 'title = "T"\ntitel = "T"'))
    assert error.key == "portal.titel"
    assert "portal.titel: unknown key" in str(error)


def test_unknown_auth_key(tmp_path: Path) -> None:
    error = refused(
        tmp_path, BASE.replace('idle_timeout = "30m"', 'idle_timeout = "30m"\nidle = 3')
    )
    assert error.key == "auth.idle"
    assert "auth.idle: unknown key" in str(error)


def test_unknown_mount_key(tmp_path: Path) -> None:
    error = refused(tmp_path, BASE + mount("/ea", "ea") + 'levle = "ea"\n')
    assert error.key == "mount[2].levle"
    assert "mount[2].levle: unknown key" in str(error)


def test_unknown_oidc_key(tmp_path: Path) -> None:
    text = BASE + '\n[auth.oidc]\nissuer = "https://id.example/"\nclient_id = "x"\n'
    text += 'client_secret = "y"\nclient_secrets = "z"\n'
    error = refused(tmp_path, text)
    assert error.key == "auth.oidc.client_secrets"


def test_unknown_mount_level(tmp_path: Path) -> None:
    error = refused(tmp_path, BASE + mount("/beta", "beta"))
    assert error.key == "mount[2].level"
    assert "'beta'" in error.problem
    assert "mount[2].level" in str(error)


@pytest.mark.parametrize("level", ["Stable", "PUBLIC", "", "admin "])
def test_mount_level_is_exact(tmp_path: Path, level: str) -> None:
    assert refused(tmp_path, BASE + mount("/x", level)).key == "mount[2].level"


def test_unknown_level_with_custom_levels(tmp_path: Path) -> None:
    text = BASE.replace('title = "T"', 'title = "T"\nlevels = ["member", "staff"]')
    error = refused(tmp_path, text)  # the base file's mount is at "stable", not listed here
    assert error.key == "mount[1].level"


@pytest.mark.parametrize(
    ("levels", "problem"),
    [
        ('["stable", "public"]', "built in"),
        ('["stable", "stable"]', "twice"),
        ("[]", "at least one"),
        ('["Stable"]', "not a valid level name"),
        ("[1, 2]", "list of strings"),
    ],
)
def test_bad_levels_list(tmp_path: Path, levels: str, problem: str) -> None:
    error = refused(tmp_path, BASE.replace('title = "T"', f'title = "T"\nlevels = {levels}'))
    assert error.key == "portal.levels"
    assert problem in error.problem


def test_duplicate_mount_path(tmp_path: Path) -> None:
    error = refused(tmp_path, BASE + mount("/ea", "ea") + mount("/stable", "ea"))
    assert error.key == "mount[3].path"
    assert "duplicate" in error.problem
    assert "mount[1]" in error.problem  # names the other one too


@pytest.mark.parametrize(
    "path",
    [
        *RESERVED_PATHS,
        "/auth/login",
        "/admin/users",
        "/static/portal.css",
        "/.well-known/jwks.json",
        "/healthz/x",
    ],
)
def test_mount_on_a_reserved_path(tmp_path: Path, path: str) -> None:
    error = refused(tmp_path, BASE + mount(path))
    assert error.key == "mount[2].path"
    assert "portal itself uses" in error.problem
    assert "mount[2].path" in str(error)


@pytest.mark.parametrize(
    "path",
    ["/", "", "ea", "/ea/", "/e a", "/ea/../devel", "/ea/./x", "//ea", "/ea?x=1", "/ea%2F"],
)
def test_mount_path_that_is_not_a_path(tmp_path: Path, path: str) -> None:
    error = refused(tmp_path, BASE + mount(path))
    assert error.key == "mount[2].path"


def test_mount_without_a_level(tmp_path: Path) -> None:
    error = refused(tmp_path, BASE + mount("/ea", None))
    assert error.key == "mount[2].level"
    assert "required" in error.problem
    assert "public" in error.problem  # says how to open it on purpose


def test_mount_without_an_app(tmp_path: Path) -> None:
    error = refused(tmp_path, BASE + '\n[[mount]]\npath = "/ea"\nlevel = "ea"\n')
    assert error.key == "mount[2].app"


def test_mount_without_a_path(tmp_path: Path) -> None:
    error = refused(tmp_path, BASE + '\n[[mount]]\napp = "products.test.app:app"\nlevel = "ea"\n')
    assert error.key == "mount[2].path"


def test_mount_not_an_array_of_tables(tmp_path: Path) -> None:
    error = refused(tmp_path, 'mount = "yes"\n' + BASE.split("[[mount]]")[0])
    assert error.key == "mount"


@pytest.mark.parametrize(
    "reference",
    [
        "products.nothing.here:app",  # no such module
        "products.test.app:nothing",  # no such attribute
        "products.test.app",  # no attribute at all
        "products.test.app:PAGE",  # not callable
        ":app",
        "products.test.app:",
    ],
)
def test_import_string_that_does_not_import(tmp_path: Path, reference: str) -> None:
    file = write(tmp_path, BASE + mount("/broken", "ea", app=reference))
    settings = load_settings(file, environ={})  # parsing does not import products...
    with pytest.raises(SettingsError) as caught:
        load_products(settings)  # ...loading them does, and names the mount
    error = caught.value
    assert error.file == str(file)
    assert error.key == "mount[2].app"
    assert str(file) in str(error) and "mount[2].app" in str(error)
    assert repr(reference) in error.problem


def test_websocket_import_string_that_does_not_import(tmp_path: Path) -> None:
    text = BASE + mount("/chat", "ea") + 'websocket = "products.nothing:app"\n'
    with pytest.raises(SettingsError) as caught:
        load_products(load_settings(write(tmp_path, text), environ={}))
    assert caught.value.key == "mount[2].websocket"


def test_websocket_app_must_be_asgi(tmp_path: Path) -> None:
    text = BASE + mount("/chat", "ea") + 'websocket = "products.test.app:app"\n'
    with pytest.raises(SettingsError) as caught:
        load_products(load_settings(write(tmp_path, text), environ={}))
    assert caught.value.key == "mount[2].websocket"
    assert "not an ASGI app" in caught.value.problem


def test_env_variable_missing(tmp_path: Path) -> None:
    text = BASE.replace('title = "T"', 'title = "T"\ndatabase_url = "env:PORTAL_TEST_DB_URL"')
    error = refused(tmp_path, text, environ={})
    assert error.key == "portal.database_url"
    assert "PORTAL_TEST_DB_URL" in error.problem


def test_env_variable_missing_in_a_mount(tmp_path: Path) -> None:
    error = refused(tmp_path, BASE + mount("/x", "env:X_LEVEL"), environ={})
    assert error.key == "mount[2].level"
    assert "X_LEVEL" in error.problem


def test_env_variable_missing_in_oidc(tmp_path: Path) -> None:
    text = BASE + '\n[auth.oidc]\nissuer = "https://id.example/"\nclient_id = "x"\n'
    text += 'client_secret = "env:OIDC_CLIENT_SECRET"\n'
    error = refused(tmp_path, text, environ={})
    assert error.key == "auth.oidc.client_secret"
    assert "OIDC_CLIENT_SECRET" in error.problem


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("session_lifetime", '"12 hours"'),
        ("session_lifetime", '"12"'),
        ("session_lifetime", '"-1h"'),
        ("session_lifetime", '"0s"'),
        ("session_lifetime", "true"),
        ("idle_timeout", '"1w"'),
        ("idle_timeout", '"h"'),
    ],
)
def test_bad_duration(tmp_path: Path, key: str, value: str) -> None:
    text = BASE.replace('session_lifetime = "1h"\nidle_timeout = "30m"', "")
    text = text.replace("[auth]", f"[auth]\n{key} = {value}")
    error = refused(tmp_path, text)
    assert error.key == f"auth.{key}"
    assert f"auth.{key}" in str(error)


def test_bad_feed_interval(tmp_path: Path) -> None:
    error = refused(tmp_path, BASE.replace('title = "T"', 'title = "T"\nfeed_interval = "soon"'))
    assert error.key == "portal.feed_interval"


def test_idle_timeout_longer_than_session(tmp_path: Path) -> None:
    text = BASE.replace('idle_timeout = "30m"', 'idle_timeout = "2h"')
    assert refused(tmp_path, text).key == "auth.idle_timeout"


@pytest.mark.parametrize(
    "base_url",
    [
        "127.0.0.1:8000",
        "ftp://example.org",
        "https://example.org/portal",
        "https://",
        "https://exa mple.org",
        "javascript:alert(1)",
        "",
    ],
)
def test_bad_base_url(tmp_path: Path, base_url: str) -> None:
    text = BASE.replace('base_url = "http://127.0.0.1:8000"', f'base_url = "{base_url}"')
    error = refused(tmp_path, text)
    assert error.key == "portal.base_url"
    assert "portal.base_url" in str(error)


def test_wrong_type(tmp_path: Path) -> None:
    error = refused(tmp_path, BASE.replace('title = "T"', "title = 3"))
    assert error.key == "portal.title"
    assert "expected a string" in error.problem


def test_unknown_provider(tmp_path: Path) -> None:
    error = refused(tmp_path, BASE.replace("[auth]", '[auth]\nprovider = "ldap"'))
    assert error.key == "auth.provider"


def test_oidc_provider_without_oidc_table(tmp_path: Path) -> None:
    error = refused(tmp_path, BASE.replace("[auth]", '[auth]\nprovider = "oidc"'))
    assert error.key == "auth.oidc"


def test_bad_toml_syntax(tmp_path: Path) -> None:
    error = refused(tmp_path, BASE + "\n[[mount]\npath = \n")
    assert error.key == "(syntax)"
    assert "not valid TOML" in error.problem


def test_table_where_a_value_belongs(tmp_path: Path) -> None:
    error = refused(tmp_path, 'portal = "x"\n')
    assert error.key == "portal"


def test_missing_file(tmp_path: Path) -> None:
    file = tmp_path / "nowhere" / "settings.toml"
    with pytest.raises(SettingsError) as caught:
        load_settings(file, environ={})
    assert caught.value.file == str(file)
    assert caught.value.key == "(file)"
    assert str(file) in str(caught.value)
    assert "not found" in str(caught.value)


def test_portal_settings_variable_names_the_file(tmp_path: Path) -> None:
    file = write(tmp_path, BASE, name="other.toml")
    assert load_settings(environ={"PORTAL_SETTINGS": str(file)}).file == str(file)
    missing = tmp_path / "missing.toml"
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={"PORTAL_SETTINGS": str(missing)})
    assert caught.value.file == str(missing)


# --- files that parse ------------------------------------------------------------------------


def test_valid_file_with_nested_mounts(tmp_path: Path) -> None:
    text = BASE + mount("/seistech/svc_disagg", "devel") + mount("/seistech", "stable")
    text += mount("/about", "public", app="products.about.app:app")
    settings = load_settings(write(tmp_path, text), environ={})
    assert isinstance(settings, Settings)
    assert [(m.path, m.level) for m in settings.mounts] == [
        ("/stable", "stable"),
        ("/seistech/svc_disagg", "devel"),
        ("/seistech", "stable"),
        ("/about", "public"),
    ]
    assert [m.key for m in settings.mounts] == ["mount[1]", "mount[2]", "mount[3]", "mount[4]"]
    # products come out longest path first, so the router tries the inner mount first
    paths = [product.mount.path for product in load_products(settings)]
    assert paths.index("/seistech/svc_disagg") < paths.index("/seistech")


def test_the_demo_settings_file_parses() -> None:
    settings = load_settings(ROOT / "settings.toml", environ={})
    levels = {m.path: m.level for m in settings.mounts}
    assert levels["/disagg/v1"] == "stable"
    assert levels["/disagg/v2"] == "ea"
    assert levels["/about"] == "public"
    assert len(load_products(settings)) == len(settings.mounts)


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""), environ={})
    assert settings.portal.levels == ("stable", "ea", "devel", "admin")
    assert settings.auth.provider == "local"
    assert settings.auth.session_lifetime == 12 * 3600
    assert settings.auth.idle_timeout == 3600
    assert settings.mounts == ()
    assert settings.portal.app_dir == str(tmp_path.resolve())


def test_env_substitution(tmp_path: Path) -> None:
    text = BASE.replace('title = "T"', 'title = "env:PORTAL_TITLE"\ndatabase_url = "env:DB"')
    text += mount("/x", "env:X_LEVEL")
    settings = load_settings(
        write(tmp_path, text),
        environ={"PORTAL_TITLE": "From env", "DB": "sqlite+aiosqlite:///x.db", "X_LEVEL": "ea"},
    )
    assert settings.portal.title == "From env"
    # a relative SQLite path, from the environment too, is beside the settings file
    assert settings.portal.database_url == f"sqlite+aiosqlite:///{tmp_path.resolve() / 'x.db'}"
    assert "x.db" not in repr(settings.portal.database_url)  # secrets do not show in reprs
    assert settings.mounts[-1].level == "ea"


def test_env_substitution_reads_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORTAL_TEST_TITLE", "Process env")
    text = BASE.replace('title = "T"', 'title = "env:PORTAL_TEST_TITLE"')
    assert load_settings(write(tmp_path, text)).portal.title == "Process env"


def test_custom_levels(tmp_path: Path) -> None:
    text = BASE.replace('title = "T"', 'title = "T"\nlevels = ["member", "staff"]')
    text = text.replace('level = "stable"', 'level = "member"') + mount("/staff", "staff")
    settings = load_settings(write(tmp_path, text), environ={})
    assert settings.portal.levels == ("member", "staff")
    assert [m.level for m in settings.mounts] == ["member", "staff"]


def test_base_url_trailing_slash_is_dropped(tmp_path: Path) -> None:
    text = BASE.replace('"http://127.0.0.1:8000"', '"https://portal.example.org/"')
    settings = load_settings(write(tmp_path, text), environ={})
    assert settings.portal.base_url == "https://portal.example.org"
    assert settings.https


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("12h", 43200), ("30d", 2592000), ("0.5s", 0.5), (90, 90)],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text, file="f", key="k") == seconds


def test_parse_duration_error_names_file_and_key() -> None:
    with pytest.raises(SettingsError) as caught:
        parse_duration("soon", file="here.toml", key="auth.idle_timeout")
    assert str(caught.value).startswith("here.toml: auth.idle_timeout: ")


@pytest.mark.parametrize(
    ("lines", "auto_migrate"),
    [
        ("", True),  # the default SQLite file
        ('database_url = "sqlite+aiosqlite:///var/portal.db"', True),
        ('database_url = "mysql+asyncmy://portal@db.example.org/portal"', False),
        ('database_url = "mysql+asyncmy://portal@db/portal"\nauto_migrate = true', True),
        ("auto_migrate = false", False),
    ],
)
def test_auto_migrate_is_on_for_sqlite_only_unless_set(
    tmp_path: Path, lines: str, auto_migrate: bool
) -> None:
    file = write(tmp_path, f"[portal]\n{lines}\n")
    assert load_settings(file, environ={}).portal.auto_migrate is auto_migrate
