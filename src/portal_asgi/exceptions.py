"""Errors raised by portal-asgi.

PortalError
├── SettingsError          settings.toml is wrong: names the file, the key and the problem
├── TokenError             a token failed verification (never shown to clients)
│   └── UnknownKey         signed by a key that is not ours (perhaps the OIDC provider's)
├── DatabaseUnavailable    the database did not answer
├── SchemaOutOfDate        the database's tables are missing or older than this version's
├── KeyUnusable            a signing key that settings or the database name cannot be read
├── ProviderUnavailable    the identity provider did not answer or is misconfigured
└── UserError              a command-line or admin request that cannot be carried out
"""

from __future__ import annotations


class PortalError(Exception):
    """Base class of every error portal-asgi raises on purpose."""


class SettingsError(PortalError):
    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        super().__init__(f"{file}: {key}: {problem}")


class TokenError(PortalError):
    """A token that is malformed, forged, expired or not meant for us."""


class UnknownKey(TokenError):
    """A token whose `kid` names a key that is not ours."""


class DatabaseUnavailable(PortalError):
    """The database could not be reached."""


class SchemaOutOfDate(PortalError):
    """The database is not at the newest migration: `portal-asgi db upgrade` brings it there."""


class KeyUnusable(PortalError):
    """A signing key that cannot be read: a missing or malformed PEM, or one that is encrypted
    without the passphrase to open it (keys.py)."""


class ProviderUnavailable(PortalError):
    """The identity provider could not be reached or answered nonsense."""


class UserError(PortalError):
    """A request that cannot be carried out (unknown user, bad level...)."""
