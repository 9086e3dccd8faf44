"""settings.toml, parsed once into frozen dataclasses.

Every problem raises `SettingsError(file, key, problem)`; nothing here imports products or touches
the database (see `products.py` for import strings).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from . import rulepaths
from .exceptions import SettingsError

DEFAULT_LEVELS = ("stable", "ea", "devel", "admin")
RESERVED_PATHS = (
    "/auth",
    "/account",
    "/admin",
    "/healthz",
    "/readyz",
    "/metrics",
    "/static",
    "/.well-known",
)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_LEVEL_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_MOUNT_PATH = re.compile(r"^(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+$")
_SQLITE_FILE = re.compile(r"^(sqlite(?:\+\w+)?:///)([^?]*)(\?.*)?$")


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
    redirect_uri: str = ""  # "" means base_url + "/auth/callback"
    post_logout_redirect_uri: str = ""  # "" means base_url + "/"
    username_claim: str = "preferred_username"  # then email, then sub
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    timeout: float = 10.0  # seconds for each call to the provider
    # Who may sign in (oidc/allow.py). Empty lists let in everyone the provider knows.
    allowed_groups: tuple[str, ...] = ()
    groups_claim: str = "groups"  # where allowed_groups are looked for (a dotted path is fine)
    allowed_email_domains: tuple[str, ...] = ()  # lower case, without "@"
    require_level_claim: bool = False
    access_contact: str = ""  # whom a refused person should ask; "" means the administrator
    # Who is made the highest level at every sign-in and on every Bearer token (oidc/resolve.py):
    # a verified email address (case-insensitive) or the exact value of `username_claim`.
    admins: tuple[str, ...] = ()
    # "cognito": Amazon Cognito's access tokens (no `aud`; `client_id` and `token_use`). "auto"
    # recognises Cognito by its issuer's host, cognito-idp.<region>.amazonaws.com.
    provider_kind: Literal["auto", "generic", "cognito"] = "auto"
    # Cognito only: the app clients whose access tokens are accepted as Bearer; () = client_id
    token_client_ids: tuple[str, ...] = ()

    @property
    def cognito(self) -> bool:
        """Whether the provider is Amazon Cognito (set, or recognised by the issuer's host)."""
        if self.provider_kind != "auto":
            return self.provider_kind == "cognito"
        return is_cognito_issuer(self.issuer)


_COGNITO_HOST = re.compile(r"cognito-idp(-fips)?\.[a-z0-9-]+\.amazonaws\.com")


def is_cognito_issuer(issuer: str) -> bool:
    host = urlsplit(issuer).hostname or ""
    return issuer.startswith("https://") and _COGNITO_HOST.fullmatch(host) is not None


@dataclass(frozen=True, slots=True)
class AuthSettings:
    provider: Literal["local", "oidc"] = "local"
    session_lifetime: float = 12 * 3600
    idle_timeout: float = 3600
    oidc: OIDCSettings | None = None


@dataclass(frozen=True, slots=True)
class RuleSettings:
    """One of a mount's `rules`: a sub-path that needs a higher level, or is never served."""

    path: str  # relative to the mount: "/admin" covers /admin and below (rulepaths.py)
    level: str | None = None  # None for a blocked path
    block: bool = False  # True: answers 404, as if the product had no such path

    @property
    def key(self) -> str:
        """The path as the rules read it (folded case; rulepaths.py)."""
        return rulepaths.read(self.path) or ""


@dataclass(frozen=True, slots=True)
class MountSettings:
    path: str
    app: str
    level: str
    websocket: str | None = None
    title: str = ""
    csrf: bool = True  # cross-site request blocking (crosssite.py); off for Bearer-only APIs
    description: str = ""
    # WSGI (Flask) products only, read by the bridge (bridge.py): the body is read before a
    # thread is taken, so these bound what a client can make the portal hold for it
    max_body_size: int = 10 * 1024 * 1024  # bytes; larger bodies answer 413
    body_timeout: float = 30.0  # the longest wait for the next piece of a body; then 408
    threads: int = 10  # the product's thread pool (a2wsgi's default)
    # A product served elsewhere, instead of `app` (`app` is then ""): the portal proxies its
    # HTTP and WebSockets (upstream/); `http://host:port[/prefix]`, no trailing slash
    upstream: str | None = None
    timeout: float = 30.0  # upstream: the longest wait to connect, to write or to read; then 504
    rewrite: bool = False  # upstream: its Location and Set-Cookie paths put under the mount
    rules: tuple[RuleSettings, ...] = ()  # sub-paths raised above the mount's level, or blocked
    index: int = 0  # position in the file, 1-based, for error messages

    @property
    def key(self) -> str:
        return f"mount[{self.index}]"


@dataclass(frozen=True, slots=True)
class KeySource:
    """A PEM private key named in settings: its text (from the environment) or a file to read.
    `label` says where it came from (`env NAME`, `file PATH`), for messages and `keys list`."""

    label: str
    pem: Secret | None = None
    path: str | None = None


@dataclass(frozen=True, slots=True)
class PortalSettings:
    title: str = "portal-asgi"
    base_url: str = "http://127.0.0.1:8000"
    levels: tuple[str, ...] = DEFAULT_LEVELS
    database_url: str = "sqlite+aiosqlite:///var/portal.db"
    key_file: str = "var/portal-signing-key.pem"
    # The signing keys (docs/keys.md). "database": kept in the database, rotated by `portal-asgi
    # keys rotate`, the first one imported from `key` or `key_file`. "manual": pinned by `key` or
    # `key_file` (then never created nor written), `verify_keys` still accepted.
    key_rotation: Literal["database", "manual"] = "database"
    key: KeySource | None = None  # "env:NAME": the key's PEM from the environment
    verify_keys: tuple[KeySource, ...] = ()
    key_passphrase: Secret | None = None  # encrypts the private keys kept in the database
    # 2 s: a socket whose session ended closes within 5 s on every worker, with room to spare
    feed_interval: float = 2.0
    app_dir: str = "."
    auto_migrate: bool = True  # the server's start migrates (from a file: true for SQLite only)
    watch_settings: bool = True  # reload when this file changes on disk (reload.py)


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    """`[security]`: login regulation, proxies, headers and request limits (docs/security.md)."""

    max_retries: int = 5
    find_time: float = 120
    ban_time: float = 300
    # per worker: password hashes running at once in threads, and logins waiting for one;
    # past both, a login answers 503 with Retry-After
    max_concurrent_hashes: int = 2
    max_waiting_hashes: int = 8
    trusted_proxies: tuple[str, ...] = ()
    product_headers: tuple[tuple[str, str], ...] = (("x-content-type-options", "nosniff"),)
    hsts_max_age: int = 31_536_000
    max_body_size: int = 1024 * 1024
    max_headers: int = 100
    max_header_size: int = 32 * 1024  # all request headers together, in bytes
    audit_denials_per_minute: int = 60


@dataclass(frozen=True, slots=True)
class WebSocketSettings:
    """`[websocket]`: who may open sockets from where, and their limits (docs/websockets.md)."""

    origins: tuple[str, ...] = ()  # allowed besides base_url's own origin
    max_per_user: int = 20  # open sockets per user, per worker
    max_message: int = 1024 * 1024  # bytes; a larger message closes the socket with 1009
    idle_timeout: float = 15 * 60  # no message either way for this long closes it with 4408


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """`[metrics]`: who may read `/metrics`, and where (docs/operations.md)."""

    # client networks that may read /metrics on the public listener (as trusted_proxies resolved)
    allow: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    port: int | None = None  # a listener of its own; then never on the public one
    host: str = "127.0.0.1"  # where that listener binds


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    """`[logging]`: how log lines look (docs/operations.md)."""

    format: Literal["text", "json"] = "text"


@dataclass(frozen=True, slots=True)
class Settings:
    file: str
    portal: PortalSettings = field(default_factory=PortalSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    mounts: tuple[MountSettings, ...] = ()
    security: SecuritySettings = field(default_factory=SecuritySettings)
    websocket: WebSocketSettings = field(default_factory=WebSocketSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)

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


def _keys(cls: type, *, without: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The keys a table may hold: the fields of the dataclass it is read into."""
    return tuple(f.name for f in fields(cls) if f.name not in without)


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

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise SettingsError(self.file, self.key(name), f"expected true or false, got {value!r}")
        return value

    def count(self, name: str, default: int) -> int:
        """A whole number above 0."""
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SettingsError(
                self.file, self.key(name), f"expected a whole number above 0, got {value!r}"
            )
        return value

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


def settings_file(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """The file `load_settings` reads: `path`, else `$PORTAL_SETTINGS`, else `./settings.toml`."""
    env = os.environ if environ is None else environ
    return str(path if path is not None else env.get("PORTAL_SETTINGS", "settings.toml"))


def load_settings(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read and check a settings file (default: `$PORTAL_SETTINGS`, else `./settings.toml`)."""
    env = os.environ if environ is None else environ
    file = settings_file(path, env)
    try:
        with open(file, "rb") as stream:
            data = tomllib.load(stream)
    except FileNotFoundError:
        raise SettingsError(file, "(file)", "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(file, "(syntax)", f"not valid TOML: {exc}") from None
    return parse_settings(data, file=file, environ=env)


def parse_settings(data: Mapping[str, Any], *, file: str, environ: Mapping[str, str]) -> Settings:
    tables = ("portal", "auth", "mount", "security", "websocket", "metrics", "logging")
    top = _Reader(file, "", dict(data), tables, environ)
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
    _check_rules_beside_mounts(file, mounts)
    security = _parse_security(file, top.table.get("security", {}), environ)
    websocket = _parse_websocket(file, top.table.get("websocket", {}), environ)
    return Settings(
        file=file,
        portal=portal,
        auth=auth,
        mounts=mounts,
        security=security,
        websocket=websocket,
        metrics=_parse_metrics(file, top.table.get("metrics", {}), environ),
        logging=_parse_logging(file, top.table.get("logging", {}), environ),
    )


def _parse_portal(file: str, table: object, environ: Mapping[str, str]) -> PortalSettings:
    reader = _Reader(file, "portal", table, _keys(PortalSettings), environ)
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
    # Relative paths mean the same file for the server and for every command, wherever they run.
    folder = Path(file).resolve().parent
    database_url = _sqlite_beside(reader.string("database_url", defaults.database_url), folder)
    return PortalSettings(
        title=reader.string("title", defaults.title),
        base_url=base_url,
        levels=levels,
        database_url=Secret(database_url),
        key_file=str(folder / reader.string("key_file", defaults.key_file)),
        **_signing_keys(reader, folder),
        feed_interval=reader.duration("feed_interval", defaults.feed_interval),
        app_dir=os.path.normpath(folder / reader.string("app_dir", ".")),
        # Migrating a shared server database is a deliberate step (`portal-asgi db upgrade`);
        # an embedded SQLite file is the portal's own.
        auto_migrate=reader.boolean("auto_migrate", database_url.startswith("sqlite")),
        watch_settings=reader.boolean("watch_settings", defaults.watch_settings),
    )


def _key_source(reader: _Reader, name: str, spec: object, folder: Path) -> KeySource:
    """`env:NAME` (a PEM in the environment) or a file path, relative to the settings folder."""
    if not isinstance(spec, str) or not spec:
        raise SettingsError(reader.file, reader.key(name), "expected 'env:NAME' or a file path")
    if spec.startswith("env:"):
        variable = spec[4:]
        if variable not in reader.environ:
            raise SettingsError(
                reader.file, reader.key(name), f"environment variable {variable} is not set"
            )
        return KeySource(f"env {variable}", pem=Secret(reader.environ[variable]))
    if "-----BEGIN" in spec:
        raise SettingsError(
            reader.file,
            reader.key(name),
            "a private key never lives in settings.toml: name an environment variable "
            "('env:NAME') or a file",
        )
    path = str(folder / spec)
    return KeySource(f"file {path}", path=path)


def _signing_keys(reader: _Reader, folder: Path) -> dict[str, Any]:
    """`key`, `key_rotation`, `verify_keys` and `key_passphrase`, checked together."""
    key = None
    if reader.has("key"):
        spec = reader.table["key"]
        if not isinstance(spec, str) or not spec.startswith("env:"):
            raise SettingsError(
                reader.file,
                "portal.key",
                "expected 'env:NAME', an environment variable holding the key's PEM (a key in "
                "a file is key_file)",
            )
        key = _key_source(reader, "key", spec, folder)
    # a key given by the environment is the operator's to rotate, unless they say otherwise
    rotation = reader.choice(
        "key_rotation", ("database", "manual"), "manual" if key is not None else "database"
    )
    specs = reader.table.get("verify_keys", [])
    if isinstance(specs, str):
        specs = [specs]
    if not isinstance(specs, list):
        raise SettingsError(reader.file, "portal.verify_keys", "expected a list of strings")
    verify_keys = tuple(_key_source(reader, "verify_keys", spec, folder) for spec in specs)
    if verify_keys and rotation == "database":
        raise SettingsError(
            reader.file,
            "portal.verify_keys",
            'only with key_rotation = "manual": the database keeps retired keys by itself',
        )
    passphrase = reader.optional_string("key_passphrase")
    if passphrase is not None and rotation == "manual":
        raise SettingsError(
            reader.file,
            "portal.key_passphrase",
            'only with key_rotation = "database": it encrypts the keys kept in the database',
        )
    return {
        "key_rotation": rotation,
        "key": key,
        "verify_keys": verify_keys,
        "key_passphrase": Secret(passphrase) if passphrase else None,
    }


def _sqlite_beside(url: str, folder: Path) -> str:
    """A SQLite URL whose file path is relative, made absolute against `folder`; any other URL
    (a server, an absolute path, `:memory:`, a `file:` URI) as it is."""
    match = _SQLITE_FILE.match(url)
    if match is None:
        return url
    scheme, path, query = match.groups()
    if not path or path.startswith(("/", ":memory:", "file:")):
        return url
    return f"{scheme}{folder / path}{query or ''}"


def _parse_auth(file: str, table: object, environ: Mapping[str, str]) -> AuthSettings:
    reader = _Reader(file, "auth", table, _keys(AuthSettings), environ)
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
    reader = _Reader(file, "auth.oidc", table, _keys(OIDCSettings), environ)
    defaults = OIDCSettings(issuer="", client_id="", client_secret=Secret(""))
    level_source = reader.choice("level_source", ("claims", "database"), "claims")
    method = reader.choice(
        "token_endpoint_auth_method",
        ("client_secret_basic", "client_secret_post"),
        "client_secret_basic",
    )
    kind_name = reader.choice("provider_kind", ("auto", "generic", "cognito"), "auto")
    kind: Literal["auto", "generic", "cognito"] = (
        "cognito" if kind_name == "cognito" else "generic" if kind_name == "generic" else "auto"
    )
    settings = OIDCSettings(
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
        redirect_uri=reader.string("redirect_uri", defaults.redirect_uri),
        post_logout_redirect_uri=reader.string(
            "post_logout_redirect_uri", defaults.post_logout_redirect_uri
        ),
        username_claim=reader.string("username_claim", defaults.username_claim),
        algorithms=_oidc_algorithms(file, reader.strings("algorithms", defaults.algorithms)),
        timeout=reader.duration("timeout", defaults.timeout),
        allowed_groups=_oidc_groups(file, reader),
        groups_claim=reader.string("groups_claim", defaults.groups_claim),
        allowed_email_domains=_oidc_domains(file, reader.strings("allowed_email_domains", ())),
        require_level_claim=reader.boolean("require_level_claim", defaults.require_level_claim),
        access_contact=reader.string("access_contact", defaults.access_contact),
        admins=_oidc_admins(file, reader),
        provider_kind=kind,
        token_client_ids=reader.strings("token_client_ids", ()),
    )
    _check_oidc_kind(file, reader, settings)
    return settings


def _oidc_admins(file: str, reader: _Reader) -> tuple[str, ...]:
    # A list only, like allowed_groups: one string would be split on spaces and name others.
    if isinstance(reader.raw("admins"), str):
        raise SettingsError(file, "auth.oidc.admins", 'expected a list, like ["alice@example.org"]')
    admins = tuple(entry.strip() for entry in reader.strings("admins", ()))
    for entry in admins:
        if not entry or any(ch.isspace() for ch in entry):
            raise SettingsError(
                file,
                "auth.oidc.admins",
                f"expected email addresses or usernames, got {entry!r}",
            )
    return admins


def _check_oidc_kind(file: str, reader: _Reader, settings: OIDCSettings) -> None:
    if settings.cognito and settings.audience is not None:
        raise SettingsError(
            file,
            "auth.oidc.audience",
            "Amazon Cognito access tokens carry no aud claim: leave audience unset (their "
            "client_id is checked instead, against client_id or token_client_ids)",
        )
    if not settings.cognito and reader.has("token_client_ids"):
        raise SettingsError(
            file,
            "auth.oidc.token_client_ids",
            "is for Amazon Cognito only (set provider_kind = 'cognito', or use a "
            "cognito-idp.<region>.amazonaws.com issuer); other providers' tokens are checked "
            "by audience",
        )


def _oidc_groups(file: str, reader: _Reader) -> tuple[str, ...]:
    # A list only: group names may hold spaces ("Portal Staff"), so a string cannot be split.
    if isinstance(reader.raw("allowed_groups"), str):
        raise SettingsError(
            file, "auth.oidc.allowed_groups", 'expected a list of group names, like ["staff"]'
        )
    return reader.strings("allowed_groups", ())


def _oidc_domains(file: str, domains: tuple[str, ...]) -> tuple[str, ...]:
    found = tuple(domain.strip().removeprefix("@").lower() for domain in domains)
    for domain in found:
        if not domain or "@" in domain or any(ch.isspace() for ch in domain):
            raise SettingsError(
                file,
                "auth.oidc.allowed_email_domains",
                f"expected domain names like 'lab.example.org', got {domain!r}",
            )
    return found


def _oidc_algorithms(file: str, algorithms: tuple[str, ...]) -> tuple[str, ...]:
    # Asymmetric only: an HS256 token "signed" with a provider's public key must never verify
    # (RFC 8725 section 3.1), and "none" is not an algorithm.
    allowed = ("RS256", "ES256")
    if not algorithms or any(alg not in allowed for alg in algorithms):
        raise SettingsError(
            file, "auth.oidc.algorithms", f"must be a non-empty list of {', '.join(allowed)}"
        )
    return algorithms


def _parse_mount(
    file: str, index: int, table: object, levels: tuple[str, ...], environ: Mapping[str, str]
) -> MountSettings:
    prefix = f"mount[{index}]"
    reader = _Reader(file, prefix, table, _keys(MountSettings, without=("index",)), environ)
    path = reader.string("path")
    # reserved first: '/.well-known' would otherwise be refused for its leading dot
    for reserved in RESERVED_PATHS:
        if path == reserved or path.startswith(reserved + "/"):
            raise SettingsError(
                file,
                f"{prefix}.path",
                f"{path!r} is inside {reserved}, which the portal itself uses",
            )
    if not _MOUNT_PATH.match(path) or any(part in (".", "..") for part in path.split("/")):
        raise SettingsError(
            file,
            f"{prefix}.path",
            f"{path!r} is not a mount path: start with '/', no trailing slash, "
            "letters, digits, '.', '_', '~' and '-' only",
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
    app, upstream = _app_or_upstream(file, prefix, reader)
    defaults = MountSettings(path=path, app=app, level=level)
    return MountSettings(
        path=path,
        app=app,
        level=level,
        websocket=reader.optional_string("websocket"),
        upstream=upstream,
        timeout=reader.duration("timeout", defaults.timeout),
        rewrite=reader.boolean("rewrite", defaults.rewrite),
        title=reader.string("title", path.rsplit("/", 1)[-1]),
        description=reader.string("description", ""),
        csrf=reader.boolean("csrf", True),
        max_body_size=reader.count("max_body_size", defaults.max_body_size),
        body_timeout=reader.duration("body_timeout", defaults.body_timeout),
        threads=reader.count("threads", defaults.threads),
        rules=_parse_rules(reader, level, levels),
        index=index,
    )


# what only a product served in the portal's process reads, and what only an upstream does
_IN_PROCESS_KEYS = ("websocket", "max_body_size", "body_timeout", "threads")
_UPSTREAM_KEYS = ("timeout", "rewrite")


def _app_or_upstream(file: str, prefix: str, reader: _Reader) -> tuple[str, str | None]:
    """A mount's `app` (then `upstream` is None) or its `upstream` (then `app` is ""): exactly
    one, and only the keys that go with it."""
    if reader.has("app") and reader.has("upstream"):
        raise SettingsError(file, f"{prefix}.upstream", "give either app or upstream, not both")
    if not reader.has("upstream"):
        if not reader.has("app"):
            raise SettingsError(
                file,
                f"{prefix}.app",
                'is required (or upstream = "http://host:port" for a product served elsewhere)',
            )
        for key in _UPSTREAM_KEYS:
            if reader.has(key):
                raise SettingsError(file, reader.key(key), "is for upstream mounts only")
        return reader.string("app"), None
    for key in _IN_PROCESS_KEYS:
        if reader.has(key):
            why = (
                "the upstream's own WebSockets are proxied at the same path"
                if key == "websocket"
                else "it is for Flask products served by the portal itself"
            )
            raise SettingsError(file, reader.key(key), f"not with upstream: {why}")
    return "", _upstream_url(file, reader.key("upstream"), reader.string("upstream"))


def _upstream_url(file: str, key: str, value: str) -> str:
    """`http(s)://host[:port][/prefix]`, without a trailing slash."""
    expected = (
        f"expected http://host:port or https://host:port, with a path prefix or none, got {value!r}"
    )
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise SettingsError(file, key, expected) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(file, key, expected)
    if parts.query or parts.fragment or parts.username is not None or parts.password is not None:
        raise SettingsError(file, key, f"{value!r}: no query, fragment or user:password here")
    path = parts.path.rstrip("/")
    if path and (
        not _MOUNT_PATH.match(path) or any(part in (".", "..") for part in path.split("/"))
    ):
        raise SettingsError(
            file,
            key,
            f"{value!r}: the path prefix takes letters, digits, '.', '_', '~' and '-' only",
        )
    return f"{parts.scheme}://{parts.netloc}{path}"


_RULE_EXAMPLE = '[{ path = "/admin", level = "admin" }, { path = "/debug", block = true }]'


def _parse_rules(
    mount: _Reader, mount_level: str, levels: tuple[str, ...]
) -> tuple[RuleSettings, ...]:
    """`rules`: each a path inside the mount with a `level` at or above the mount's, or
    `block = true`; paths unique as the rules read them (rulepaths.py)."""
    raw = mount.table.get("rules", [])
    if not isinstance(raw, list):
        raise SettingsError(mount.file, mount.key("rules"), f"expected a list like {_RULE_EXAMPLE}")
    ranks = {name: rank for rank, name in enumerate(("public", *levels))}
    rules: list[RuleSettings] = []
    seen: dict[str, int] = {}
    for number, table in enumerate(raw, start=1):
        prefix = mount.key(f"rules[{number}]")
        reader = _Reader(mount.file, prefix, table, _keys(RuleSettings), mount.environ)
        path = _rule_path(reader, reader.string("path"))
        key = rulepaths.read(path) or ""
        if key in seen:
            raise SettingsError(
                mount.file,
                reader.key("path"),
                f"duplicate rule path {path!r} (also rules[{seen[key]}]; rule paths are "
                "matched without regard to case)",
            )
        seen[key] = number
        block = reader.boolean("block", False)
        if reader.has("block") and not block:
            raise SettingsError(
                mount.file, reader.key("block"), "only block = true (leave it out for a level)"
            )
        if block == reader.has("level"):
            raise SettingsError(
                mount.file, prefix, 'give exactly one of level = "..." or block = true'
            )
        level = None
        if not block:
            level = reader.string("level")
            if level not in ranks:
                raise SettingsError(
                    mount.file,
                    reader.key("level"),
                    f"unknown level {level!r} (levels: public, {', '.join(levels)})",
                )
            if ranks[level] < ranks[mount_level]:
                raise SettingsError(
                    mount.file,
                    reader.key("level"),
                    f"{level!r} is below the mount's level {mount_level!r}: a rule may only "
                    "raise a sub-path's level, or block it",
                )
        rules.append(RuleSettings(path=path, level=level, block=block))
    return tuple(rules)


def _rule_path(reader: _Reader, path: str) -> str:
    """A rule's path: inside the mount, one reading only; a trailing slash is dropped."""
    key = reader.key("path")
    if not path.startswith("/"):
        raise SettingsError(reader.file, key, f"{path!r}: a rule path starts with '/'")
    if len(path) > 1 and path.endswith("/") and not path.endswith("//"):
        path = path[:-1]
    if path == "/":
        raise SettingsError(
            reader.file, key, "'/' is the whole mount: set the mount's level instead"
        )
    if "//" in path or "%" in path or any(part in (".", "..") for part in path.split("/")):
        raise SettingsError(
            reader.file, key, f"{path!r}: no '//', '.' or '..' segments, or %-escapes"
        )
    if not _MOUNT_PATH.match(path):
        raise SettingsError(
            reader.file,
            key,
            f"{path!r} is not a rule path: letters, digits, '.', '_', '~' and '-' only",
        )
    read = rulepaths.read(path)
    if read is None or read.split("/") != path.lower().split("/"):
        raise SettingsError(
            reader.file,
            key,
            f"{path!r}: a segment ends with '.', which some servers read as without it",
        )
    return path


def _check_rules_beside_mounts(file: str, mounts: tuple[MountSettings, ...]) -> None:
    """A rule may not reach into a nested mount, nor lie inside one: the nested mount answers
    those paths itself, and would never meet the rule."""
    for mount in mounts:
        for other in mounts:
            if not mount.rules or not other.path.startswith(mount.path + "/"):
                continue
            nested = rulepaths.read(other.path[len(mount.path) :]) or ""
            for number, rule in enumerate(mount.rules, start=1):
                if rulepaths.covers(rule.key, nested) or rulepaths.covers(nested, rule.key):
                    raise SettingsError(
                        file,
                        f"{mount.key}.rules[{number}].path",
                        f"{rule.path!r} of mount {mount.path!r} overlaps the nested mount "
                        f"{other.path!r} ({other.key}), which answers its paths itself: put "
                        "the rule on that mount",
                    )


def _parse_security(file: str, table: object, environ: Mapping[str, str]) -> SecuritySettings:
    reader = _Reader(file, "security", table, _keys(SecuritySettings), environ)
    defaults = SecuritySettings()
    proxies = reader.strings("trusted_proxies", defaults.trusted_proxies)
    for proxy in proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise SettingsError(
                file, "security.trusted_proxies", f"{proxy!r} is not an address or a network"
            ) from None
    headers = defaults.product_headers
    if reader.has("product_headers"):
        raw = reader.table["product_headers"]
        if not isinstance(raw, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k and "\n" not in v and "\r" not in v
            for k, v in raw.items()
        ):
            raise SettingsError(
                file, "security.product_headers", "expected a table of header names to strings"
            )
        headers = tuple((k.lower(), v) for k, v in raw.items())
    return SecuritySettings(
        max_retries=reader.count("max_retries", defaults.max_retries),
        find_time=reader.duration("find_time", defaults.find_time),
        ban_time=reader.duration("ban_time", defaults.ban_time),
        max_concurrent_hashes=reader.count("max_concurrent_hashes", defaults.max_concurrent_hashes),
        max_waiting_hashes=reader.count("max_waiting_hashes", defaults.max_waiting_hashes),
        trusted_proxies=proxies,
        product_headers=headers,
        hsts_max_age=reader.count("hsts_max_age", defaults.hsts_max_age),
        max_body_size=reader.count("max_body_size", defaults.max_body_size),
        max_headers=reader.count("max_headers", defaults.max_headers),
        max_header_size=reader.count("max_header_size", defaults.max_header_size),
        audit_denials_per_minute=reader.count(
            "audit_denials_per_minute", defaults.audit_denials_per_minute
        ),
    )


def _parse_websocket(file: str, table: object, environ: Mapping[str, str]) -> WebSocketSettings:
    reader = _Reader(file, "websocket", table, _keys(WebSocketSettings), environ)
    defaults = WebSocketSettings()
    origins = reader.strings("origins", defaults.origins)
    for origin in origins:
        if not re.match(r"^https?://[^/\s]+$", origin):
            raise SettingsError(
                file,
                "websocket.origins",
                f"expected origins like 'https://app.example.org', got {origin!r}",
            )
    return WebSocketSettings(
        origins=tuple(origin.lower() for origin in origins),
        max_per_user=reader.count("max_per_user", defaults.max_per_user),
        max_message=reader.count("max_message", defaults.max_message),
        idle_timeout=reader.duration("idle_timeout", defaults.idle_timeout),
    )


def _parse_metrics(file: str, table: object, environ: Mapping[str, str]) -> MetricsSettings:
    reader = _Reader(file, "metrics", table, _keys(MetricsSettings), environ)
    defaults = MetricsSettings()
    allow = reader.strings("allow", defaults.allow)
    for network in allow:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise SettingsError(
                file, "metrics.allow", f"{network!r} is not an address or a network"
            ) from None
    port = reader.count("port", 0) if reader.has("port") else None
    if port is not None and port > 65535:
        raise SettingsError(file, "metrics.port", f"expected a port number, got {port}")
    host = reader.string("host", defaults.host)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise SettingsError(
            file, "metrics.host", f"expected an IP address to listen on, got {host!r}"
        ) from None
    return MetricsSettings(allow=allow, port=port, host=host)


def _parse_logging(file: str, table: object, environ: Mapping[str, str]) -> LoggingSettings:
    reader = _Reader(file, "logging", table, _keys(LoggingSettings), environ)
    chosen = reader.choice("format", ("text", "json"), LoggingSettings().format)
    return LoggingSettings(format="json" if chosen == "json" else "text")
