"""`portal-asgi check --online`: fetch the provider's discovery document and JWKS, as the running
portal would, and say in plain words what would stop sign-in or Bearer tokens from working.

Errors are what breaks sign-in or token verification; warnings are what works, but not fully
(no provider logout, say). The fetches use the configured `timeout` and the same code as the
running portal (discovery.py, keys.py), so the answer is the one the portal would get.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import httpx2

from ..exceptions import ProviderUnavailable
from ..settings import OIDCSettings
from .discovery import discovery_url, document_problems, get_json
from .keys import KTY, signing_keys

Severity = Literal["ok", "warning", "error"]


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    message: str


class _Report:
    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def ok(self, message: str) -> None:
        self.findings.append(Finding("ok", message))

    def warning(self, message: str) -> None:
        self.findings.append(Finding("warning", message))

    def error(self, message: str) -> None:
        self.findings.append(Finding("error", message))


async def check_provider(
    settings: OIDCSettings, *, transport: httpx2.AsyncBaseTransport | None = None
) -> list[Finding]:
    """What is right and wrong with the provider `settings` name, as seen from here now."""
    report = _Report()
    url = discovery_url(settings.issuer)
    try:
        document = await get_json(
            url, seconds=settings.timeout, transport=transport, what="discovery document"
        )
    except ProviderUnavailable as exc:
        report.error(str(exc))
        return report.findings
    report.ok(f"discovery document at {url}")
    problems = document_problems(document, issuer=settings.issuer, url=url)
    for problem in problems:
        report.error(problem)
    _check_flow(settings, document, report)
    jwks_uri = document.get("jwks_uri")
    if isinstance(jwks_uri, str):
        await _check_keys(settings, jwks_uri, report, transport)
    _check_bearer(settings, report)
    return report.findings


def _listed(document: dict[str, Any], key: str) -> list[str] | None:
    value = document.get(key)
    if not isinstance(value, list):
        return None
    return [item for item in value if isinstance(item, str)]


def _check_flow(settings: OIDCSettings, document: dict[str, Any], report: _Report) -> None:
    responses = _listed(document, "response_types_supported")
    if responses is not None and "code" not in responses:
        report.error(
            "the provider does not offer the authorization code flow "
            f"(response_types_supported: {', '.join(responses) or 'none'})"
        )
    pkce = _listed(document, "code_challenge_methods_supported")
    if pkce is None:
        report.warning(
            "the discovery document does not say whether PKCE S256 is supported "
            "(no code_challenge_methods_supported); sign-in sends it anyway"
        )
    elif "S256" not in pkce:
        report.error(
            "the provider does not support PKCE S256, which sign-in uses "
            f"(code_challenge_methods_supported: {', '.join(pkce) or 'none'})"
        )
    method = settings.token_endpoint_auth_method
    # OpenID Connect Discovery 1.0 section 3: an absent list means client_secret_basic only.
    methods = _listed(document, "token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    if method not in methods:
        others = [m for m in methods if m in ("client_secret_basic", "client_secret_post")]
        hint = f"; set token_endpoint_auth_method = {others[0]!r}" if others else ""
        report.error(
            f"the token endpoint does not support token_endpoint_auth_method = {method!r} "
            f"(it supports: {', '.join(methods)}){hint}"
        )
    signing = _listed(document, "id_token_signing_alg_values_supported")
    if signing is not None and not set(signing) & set(settings.algorithms):
        report.error(
            f"the provider signs ID tokens with {', '.join(signing) or 'nothing'}, none of the "
            f"algorithms the portal accepts ({', '.join(settings.algorithms)})"
        )
    if not isinstance(document.get("end_session_endpoint"), str):
        report.warning(
            "no end_session_endpoint: signing out of the portal will not end the session at "
            "the provider"
        )


async def _check_keys(
    settings: OIDCSettings,
    jwks_uri: str,
    report: _Report,
    transport: httpx2.AsyncBaseTransport | None,
) -> None:
    try:
        jwks = await get_json(jwks_uri, seconds=settings.timeout, transport=transport, what="JWKS")
    except ProviderUnavailable as exc:
        report.error(str(exc))
        return
    raw = jwks.get("keys")
    if not isinstance(raw, list) or not raw:
        report.error(f"the JWKS at {jwks_uri} holds no keys: no token could be verified")
        return
    keys = signing_keys(jwks, log=logging.getLogger("portal_asgi.oidc"), whose="OIDC provider")
    usable = {
        alg: sorted(kid for kid, key in keys.items() if key.key_type == KTY[alg])
        for alg in settings.algorithms
    }
    found = [f"{alg} ({', '.join(kids)})" for alg, kids in usable.items() if kids]
    if not found:
        types = sorted({str(item.get("kty")) for item in raw if isinstance(item, dict)})
        report.error(
            f"the JWKS at {jwks_uri} holds no public signing key for an allowed algorithm "
            f"({', '.join(settings.algorithms)}); its keys are of type {', '.join(types)}"
        )
        return
    report.ok(f"JWKS at {jwks_uri}: signing keys for {'; '.join(found)}")


def _check_bearer(settings: OIDCSettings, report: _Report) -> None:
    if settings.cognito:
        clients = ", ".join(settings.token_client_ids or (settings.client_id,))
        report.ok(
            "Amazon Cognito: its access tokens are accepted as Bearer when their client_id is "
            f"{clients} and their token_use is 'access'"
        )
    elif settings.audience:
        report.ok(f"provider access tokens are accepted as Bearer for audience {settings.audience}")
    else:
        report.ok("no audience set: provider access tokens are not accepted as Bearer")
