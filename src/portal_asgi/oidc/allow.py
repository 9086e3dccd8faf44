"""Who an OpenID provider may sign in (`[auth.oidc] allowed_groups`, `allowed_email_domains`,
`require_level_claim`). Without them everyone the provider knows gets in at the lowest level,
which with self-sign-up (Auth0, Cognito) means anyone on the internet. The same rules judge a
browser sign-in (ID token, userinfo, access token) and a provider access token used as Bearer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..levels import Levels
from ..settings import OIDCSettings
from .claims import claim_at, claim_values, level_from


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str  # for the log and the audit entry
    hint: str  # for the person at the browser: what is missing, not what the list holds


def needed_claims(settings: OIDCSettings) -> tuple[str, ...]:
    """The claims the level and the rules are read from: a sign-in looks for them beyond the ID
    token (userinfo, the access token) when the ID token lacks one."""
    needed: list[str] = []
    if settings.level_source == "claims" or settings.require_level_claim:
        needed.append(settings.level_claim)
    if settings.allowed_groups:
        needed.append(settings.groups_claim)
    if settings.allowed_email_domains or settings.admins:
        needed += ["email", "email_verified"]
    return tuple(needed)


def email_of(sources: Sequence[Mapping[str, Any]]) -> tuple[str, bool]:
    """The person's email address ("" when no source names one), and whether the provider says
    it is verified: a source naming that address carries `email_verified` true."""
    email = next(
        (e for e in (claim_at(c, "email") for c in sources) if isinstance(e, str) and e), ""
    )
    # email_verified: a boolean (OpenID Connect Core 5.1); some providers send "true"
    verified = bool(email) and any(
        claim_at(c, "email") == email and str(claim_at(c, "email_verified")).lower() == "true"
        for c in sources
    )
    return email, verified


def refusal(
    settings: OIDCSettings, sources: Sequence[Mapping[str, Any]], *, levels: Levels
) -> Refusal | None:
    """Why the person these claims describe may not sign in, or None when they may."""
    if settings.allowed_groups:
        held: set[str] = set()
        for claims in sources:
            held.update(claim_values(claim_at(claims, settings.groups_claim)))
        if not held.intersection(settings.allowed_groups):
            shown = ", ".join(sorted(held)[:20]) or "none"
            return Refusal(
                f"not in allowed_groups ({settings.groups_claim} claim: {shown})",
                "you are not in a group this portal lets in",
            )
    if settings.allowed_email_domains:
        email, verified = email_of(sources)
        if not email:
            return Refusal(
                "no email claim (allowed_email_domains is set)",
                "the identity provider did not give the portal your e-mail address",
            )
        if not verified:
            return Refusal(
                f"email {email} is not verified (email_verified is not true)",
                "your e-mail address is not verified at the identity provider",
            )
        domain = email.rpartition("@")[2].lower()
        if domain not in settings.allowed_email_domains:
            return Refusal(
                f"email domain {domain!r} is not in allowed_email_domains",
                "your e-mail address is not in a domain this portal lets in",
            )
    if settings.require_level_claim:
        found = level_from(
            sources, path=settings.level_claim, prefix=settings.level_prefix, levels=levels
        )
        if found is None:
            return Refusal(
                f"no level in the {settings.level_claim} claim (require_level_claim is set)",
                "the identity provider has not given you a level on this portal",
            )
    return None


def refused_message(settings: OIDCSettings, refused: Refusal) -> str:
    """The refusal page's words: not allowed in, why in plain terms, and whom to ask."""
    contact = settings.access_contact or "the portal's administrator"
    return (
        f"You signed in with {settings.name}, but you are not allowed into this portal: "
        f"{refused.hint}. To be let in, ask {contact}."
    )
