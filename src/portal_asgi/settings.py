"""settings.toml, parsed once into frozen dataclasses.

Every problem raises `SettingsError(file, key, problem)`; nothing here imports products or touches
the database (see `products.py` for import strings).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .exceptions import SettingsError

DEFAULT_LEVELS = ("stable", "ea", "devel", "admin")
RESERVED_PATHS = ("/auth", "/admin", "/healthz", "/readyz", "/metrics", "/static", "/.well-known")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_LEVEL_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_MOUNT_PATH = re.compile(r"^(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+$")


class Secret(str):
    """A string whose repr does not show it."""

    def __repr__(self) -> str:
        return "Secret('**********')"


@dataclass(frozen=True, slots=True)
class OIDCSettings:
    issuer: str
    client_id: str
    client_secret: Secret
    audience: str | None = None
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    level_claim: str = "scope"
    level_prefix: str = "access:"
    level_source: Literal["claims", "database"] = "claims"
    token_endpoint_auth_method: Literal["client_secret_basic", "client_secret_post"] = (
        "client_secret_basic"  # noqa: S105 - a method name, not a secret
    )
    name: str = "your organisation's sign-in"


@dataclass(frozen=True, slots=True)
class AuthSettings:
    provider: Literal["local", "oidc"] = "local"
    session_lifetime: float = 12 * 3600
    idle_timeout: float = 3600
    oidc: OIDCSettings | None = None


@dataclass(frozen=True, slots=True)
class MountSettings:
    path: str
    app: str
    level: str
    websocket: str | None = None
    title: str = ""
    description: str = ""
    index: int = 0  # position in the file, 1-based, for error messages

    @property
    def key(self) -> str:
        return f"mount[{self.index}]"


@dataclass(frozen=True, slots=True)
class PortalSettings:
    title: str = "portal-asgi"
    base_url: str = "http://127.0.0.1:8000"
    levels: tuple[str, ...] = DEFAULT_LEVELS
    database_url: str = "sqlite+aiosqlite:///var/portal.db"
    key_file: str = "var/portal-signing-key.pem"
    feed_interval: float = 5.0
    app_dir: str = "."


@dataclass(frozen=True, slots=True)
class Settings:
    file: str
    portal: PortalSettings = field(default_factory=PortalSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    mounts: tuple[MountSettings, ...] = ()

    @property
    def https(self) -> bool:
        return self.portal.base_url.startswith("https://")


def parse_duration(value: object, *, file: str, key: str) -> float:
    """`30s`, `15m`, `12h`, `30d`, or a number of seconds."""
    if isinstance(value, bool):
        raise SettingsError(file, key, "expected a duration such as '30s', '15m', '12h' or '30d'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise SettingsError(
            file, key, f"expected a duration such as '30s', '15m', '12h' or '30d', got {value!r}"
        )
    if seconds <= 0:
        raise SettingsError(file, key, "must be longer than zero")
    return seconds


class _Reader:
    """Reads one TOML table, resolving `env:` values and refusing unknown keys."""

    def __init__(
        self,
        file: str,
        prefix: str,
        table: object,
        known: tuple[str, ...],
        environ: Mapping[str, str],
    ) -> None:
        if not isinstance(table, dict):
            raise SettingsError(file, prefix, "expected a table")
        self.file, self.prefix, self.table, self.environ = file, prefix, table, environ
        for key in table:
            if key not in known:
                raise SettingsError(
                    file, self.key(key), f"unknown key (known keys: {', '.join(known)})"
                )

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def raw(self, name: str) -> object:
        value = self.table.get(name)
        if isinstance(value, str) and value.startswith("env:"):
            variable = value[4:]
            if variable not in self.environ:
                raise SettingsError(
                    self.file, self.key(name), f"environment variable {variable} is not set"
                )
            return self.environ[variable]
        return value

    def has(self, name: str) -> bool:
        return name in self.table

    def string(self, name: str, default: str | None = None) -> str:
        value = self.raw(name)
        if value is None:
            if default is None:
                raise SettingsError(self.file, self.key(name), "is required")
            return default
        if not isinstance(value, str):
            raise SettingsError(self.file, self.key(name), f"expected a string, got {value!r}")
        return value

    def optional_string(self, name: str) -> str | None:
        return self.string(name) if self.has(name) else None

    def strings(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, str):
            value = value.split()
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise SettingsError(self.file, self.key(name), "expected a list of strings")
        return tuple(value)

    def duration(self, name: str, default: float) -> float:
        value = self.raw(name)
        if value is None:
            return default
        return parse_duration(value, file=self.file, key=self.key(name))

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.string(name, default)
        if value not in choices:
            raise SettingsError(
                self.file, self.key(name), f"must be one of {', '.join(choices)}, got {value!r}"
            )
        return value


def load_settings(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read and check a settings file (default: `$PORTAL_SETTINGS`, else `./settings.toml`)."""
    env = os.environ if environ is None else environ
    file = str(path if path is not None else env.get("PORTAL_SETTINGS", "settings.toml"))
    try:
        with open(file, "rb") as stream:
            data = tomllib.load(stream)
    except FileNotFoundError:
        raise SettingsError(file, "(file)", "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(file, "(syntax)", f"not valid TOML: {exc}") from None
    return parse_settings(data, file=file, environ=env)


def parse_settings(data: Mapping[str, Any], *, file: str, environ: Mapping[str, str]) -> Settings:
    top = _Reader(file, "", dict(data), ("portal", "auth", "mount"), environ)
    portal = _parse_portal(file, top.table.get("portal", {}), environ)
    auth = _parse_auth(file, top.table.get("auth", {}), environ)
    mounts_raw = top.table.get("mount", [])
    if not isinstance(mounts_raw, list):
        raise SettingsError(file, "mount", "expected [[mount]] tables")
    mounts = tuple(
        _parse_mount(file, index, table, portal.levels, environ)
        for index, table in enumerate(mounts_raw, start=1)
    )
    seen: dict[str, MountSettings] = {}
    for mount in mounts:
        if mount.path in seen:
            raise SettingsError(
                file,
                f"{mount.key}.path",
                f"duplicate mount path {mount.path!r} (also {seen[mount.path].key})",
            )
        seen[mount.path] = mount
    return Settings(file=file, portal=portal, auth=auth, mounts=mounts)


def _parse_portal(file: str, table: object, environ: Mapping[str, str]) -> PortalSettings:
    known = ("title", "base_url", "levels", "database_url", "key_file", "feed_interval", "app_dir")
    reader = _Reader(file, "portal", table, known, environ)
    defaults = PortalSettings()
    levels = reader.strings("levels", DEFAULT_LEVELS)
    if not levels:
        raise SettingsError(file, "portal.levels", "needs at least one level")
    for level in levels:
        if level == "public":
            raise SettingsError(file, "portal.levels", "'public' is built in; do not list it")
        if not _LEVEL_NAME.match(level):
            raise SettingsError(file, "portal.levels", f"{level!r} is not a valid level name")
    if len(set(levels)) != len(levels):
        raise SettingsError(file, "portal.levels", "lists a level twice")
    base_url = reader.string("base_url", defaults.base_url).rstrip("/")
    if not re.match(r"^https?://[^/\s]+$", base_url):
        raise SettingsError(
            file,
            "portal.base_url",
            f"expected an origin like 'https://portal.example.org', got {base_url!r}",
        )
    app_dir = reader.string("app_dir", str(Path(file).resolve().parent))
    return PortalSettings(
        title=reader.string("title", defaults.title),
        base_url=base_url,
        levels=levels,
        database_url=Secret(reader.string("database_url", defaults.database_url)),
        key_file=reader.string("key_file", defaults.key_file),
        feed_interval=reader.duration("feed_interval", defaults.feed_interval),
        app_dir=app_dir,
    )


def _parse_auth(file: str, table: object, environ: Mapping[str, str]) -> AuthSettings:
    known = ("provider", "session_lifetime", "idle_timeout", "oidc")
    reader = _Reader(file, "auth", table, known, environ)
    defaults = AuthSettings()
    provider = reader.choice("provider", ("local", "oidc"), "local")
    oidc = None
    if reader.has("oidc"):
        oidc = _parse_oidc(file, reader.table["oidc"], environ)
    if provider == "oidc" and oidc is None:
        raise SettingsError(file, "auth.oidc", "provider = 'oidc' needs an [auth.oidc] table")
    session_lifetime = reader.duration("session_lifetime", defaults.session_lifetime)
    idle_timeout = reader.duration("idle_timeout", defaults.idle_timeout)
    if idle_timeout > session_lifetime:
        raise SettingsError(file, "auth.idle_timeout", "is longer than auth.session_lifetime")
    return AuthSettings(
        provider="oidc" if provider == "oidc" else "local",
        session_lifetime=session_lifetime,
        idle_timeout=idle_timeout,
        oidc=oidc,
    )


def _parse_oidc(file: str, table: object, environ: Mapping[str, str]) -> OIDCSettings:
    known = (
        "issuer",
        "client_id",
        "client_secret",
        "audience",
        "scopes",
        "level_claim",
        "level_prefix",
        "level_source",
        "token_endpoint_auth_method",
        "name",
    )
    reader = _Reader(file, "auth.oidc", table, known, environ)
    defaults = OIDCSettings(issuer="", client_id="", client_secret=Secret(""))
    level_source = reader.choice("level_source", ("claims", "database"), "claims")
    method = reader.choice(
        "token_endpoint_auth_method",
        ("client_secret_basic", "client_secret_post"),
        "client_secret_basic",
    )
    return OIDCSettings(
        issuer=reader.string("issuer"),
        client_id=reader.string("client_id"),
        client_secret=Secret(reader.string("client_secret")),
        audience=reader.optional_string("audience"),
        scopes=reader.strings("scopes", defaults.scopes),
        level_claim=reader.string("level_claim", defaults.level_claim),
        level_prefix=reader.string("level_prefix", defaults.level_prefix),
        level_source="database" if level_source == "database" else "claims",
        token_endpoint_auth_method=(
            "client_secret_post" if method == "client_secret_post" else "client_secret_basic"
        ),
        name=reader.string("name", defaults.name),
    )


def _parse_mount(
    file: str, index: int, table: object, levels: tuple[str, ...], environ: Mapping[str, str]
) -> MountSettings:
    prefix = f"mount[{index}]"
    known = ("path", "app", "websocket", "level", "title", "description")
    reader = _Reader(file, prefix, table, known, environ)
    path = reader.string("path")
    if not _MOUNT_PATH.match(path) or any(part in (".", "..") for part in path.split("/")):
        raise SettingsError(
            file,
            f"{prefix}.path",
            f"{path!r} is not a mount path: start with '/', no trailing slash, "
            "letters, digits, '.', '_', '~' and '-' only",
        )
    for reserved in RESERVED_PATHS:
        if path == reserved or path.startswith(reserved + "/"):
            raise SettingsError(
                file,
                f"{prefix}.path",
                f"{path!r} is inside {reserved}, which the portal itself uses",
            )
    if not reader.has("level"):
        raise SettingsError(
            file,
            f"{prefix}.level",
            f"is required (mount {path!r} has no level; use 'public' to open it)",
        )
    level = reader.string("level")
    if level != "public" and level not in levels:
        raise SettingsError(
            file,
            f"{prefix}.level",
            f"unknown level {level!r} (levels: public, {', '.join(levels)})",
        )
    app = reader.string("app")
    return MountSettings(
        path=path,
        app=app,
        level=level,
        websocket=reader.optional_string("websocket"),
        title=reader.string("title", path.rsplit("/", 1)[-1]),
        description=reader.string("description", ""),
        index=index,
    )
