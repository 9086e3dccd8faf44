"""Attacks on the OIDC callback, against a real provider: each is refused with a clear page and
an audit entry, and leaves no session and no user behind."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx2
import pytest

from .oidc.browser import Browser, query
from .oidc.harness import PORTAL_MIXUP, Provider, audit_events, oidc_portal, user_row
from .servers import RunningPortal


@pytest.fixture(scope="module")
def portal(
    oidc_provider: Provider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningPortal]:
    with oidc_portal(tmp_path_factory.mktemp("oidc-refusals"), oidc_provider) as running:
        yield running


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    params = query(url) | changes
    return parts._replace(query=urlencode(params)).geturl()


def _refusals(portal: RunningPortal, reason_part: str) -> list[dict[str, object]]:
    return [
        event
        for event in audit_events(portal, "login.refused")
        if reason_part in str(event.get("reason", ""))
    ]


def _assert_not_signed_in(browser: Browser, response: httpx2.Response) -> None:
    assert not any(c.startswith("portal_session=") for c in response.headers.get_list("set-cookie"))
    assert browser.cookie("portal_session") is None
    whoami = browser.get("/stable/whoami", headers={"accept": "application/json"})
    assert whoami.status_code == 401
    assert "Traceback" not in response.text


def test_rejects_callback_with_forged_state(portal: RunningPortal) -> None:
    # RFC 9700 section 4.7.1: the state binds the answer to the browser that asked.
    before = len(_refusals(portal, "state does not match"))
    with Browser(portal.url) as browser:
        callback = browser.authorize(browser.start(), "keycloak-roles")
        refused = browser.callback(_with_query(callback, state="forged-state-value-123456"))
        assert refused.status_code == 400
        assert "does not belong to the sign-in started in this browser" in refused.text
        _assert_not_signed_in(browser, refused)
    assert len(_refusals(portal, "state does not match")) == before + 1
    assert user_row(portal, subject="keycloak-roles") is None


def test_rejects_callback_opened_in_another_browser(portal: RunningPortal) -> None:
    # RFC 9700 section 4.7 (login CSRF): an attacker's own callback URL, planted in a victim's
    # browser, must not sign the victim in as the attacker.
    with Browser(portal.url) as attacker:
        planted = attacker.authorize(attacker.start(), "cognito-groups")
    with Browser(portal.url) as victim:
        refused = victim.callback(planted)
        assert refused.status_code == 400
        assert "not started in this browser" in refused.text
        _assert_not_signed_in(victim, refused)
    assert _refusals(portal, "no valid login transaction cookie")
    assert user_row(portal, subject="cognito-groups") is None


def test_rejects_forged_login_transaction_cookie(portal: RunningPortal) -> None:
    # The transaction cookie is signed: changing its content (here, its state) voids it.
    with Browser(portal.url) as browser:
        callback = browser.authorize(browser.start(), "cognito-groups")
        original = browser.cookie("portal_oidc_login")
        assert original is not None
        payload, _, rest = original.partition(".")
        forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + rest
        response = httpx2.get(callback, headers={"cookie": f"portal_oidc_login={forged}"})
        assert response.status_code == 400
        assert "portal_session=" not in response.headers.get("set-cookie", "")
    assert user_row(portal, subject="cognito-groups") is None


def test_rejects_replayed_authorization_code(portal: RunningPortal) -> None:
    # RFC 6749 section 4.1.2 / RFC 9700 section 4.5: a code works once. A replay, even with the
    # right transaction cookie, is refused by the provider and then by the portal.
    with Browser(portal.url) as browser:
        callback = browser.authorize(browser.start(), "auth0-permissions")
        transaction = browser.cookie("portal_oidc_login")
        assert browser.callback(callback).status_code == 303
    before = len(_refusals(portal, "invalid_grant"))
    with httpx2.Client(timeout=10) as thief:
        replay = thief.get(callback, headers={"cookie": f"portal_oidc_login={transaction}"})
        assert replay.status_code == 400
        assert "already used or has expired" in replay.text
        assert "portal_session=" not in ";".join(replay.headers.get_list("set-cookie"))
    assert len(_refusals(portal, "invalid_grant")) == before + 1


def test_rejects_authorization_response_from_another_issuer(portal: RunningPortal) -> None:
    # RFC 9207: the `iss` of an authorization response names who sent it (mix-up attacks).
    with Browser(portal.url) as browser:
        callback = browser.authorize(browser.start(), "okta-groups")
        refused = browser.callback(_with_query(callback, iss="https://evil.example"))
        assert refused.status_code == 400
        assert "another identity provider" in refused.text
        _assert_not_signed_in(browser, refused)
    assert _refusals(portal, "authorization response from issuer 'https://evil.example'")


def test_provider_error_answer_is_shown_plainly(portal: RunningPortal) -> None:
    with Browser(portal.url) as browser:
        auth = browser.start()
        state = query(auth)["state"]
        refused = browser.callback(
            portal.url
            + "/auth/callback?"
            + urlencode(
                {"error": "access_denied", "error_description": "User said no", "state": state}
            )
        )
        assert refused.status_code == 401
        assert "did not sign you in: User said no" in refused.text
        _assert_not_signed_in(browser, refused)
    assert _refusals(portal, "access_denied")


@pytest.mark.parametrize(
    "junk",
    ["", "?code=x", "?state=", "?code=x&state=" + "A" * 5000, "?code=%00&state=%FF"],
)
def test_malformed_callbacks_answer_4xx_never_500(portal: RunningPortal, junk: str) -> None:
    with Browser(portal.url) as browser:
        browser.start()
        response = browser.get("/auth/callback" + junk)
        assert response.status_code == 400  # each fails the state check (pages/oidc.py)
        assert "Traceback" not in response.text


def test_rejects_wrong_client_secret(
    oidc_provider: Provider, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # RFC 6749 section 2.3.1: the provider authenticates the portal; a wrong secret is the
    # portal's misconfiguration, said so plainly (503) and logged.
    with oidc_portal(tmp_path, oidc_provider, client=("portal", "not-the-secret")) as running:
        with caplog.at_level(logging.ERROR, logger="portal_asgi"):
            with Browser(running.url) as browser:
                refused = browser.login("okta-groups")
                assert refused.status_code == 503
                assert "refuses the credentials this portal signs in with" in refused.text
                assert "Continue with" not in refused.text
                _assert_not_signed_in(browser, refused)
        assert "invalid_client" in caplog.text
        assert _refusals(running, "invalid_client")
        assert user_row(running, subject="okta-groups") is None


def test_rejects_id_token_for_another_audience(oidc_provider: Provider, tmp_path: Path) -> None:
    # OpenID Connect Core 1.0 section 3.1.3.7 step 3, RFC 8725 section 3.9: an ID token issued
    # to another client (here by a provider that mixes its clients up) is not ours to trust.
    with oidc_portal(tmp_path, oidc_provider, client=PORTAL_MIXUP) as running:
        with Browser(running.url) as browser:
            refused = browser.login("keycloak-roles")
            assert refused.status_code == 401
            assert "could not be verified" in refused.text
            _assert_not_signed_in(browser, refused)
        refusals = _refusals(running, "ID token refused")
        assert refusals and "audience" in str(refusals[-1]["reason"])
        assert "other-app" in str(refusals[-1]["reason"])
        assert user_row(running, subject="keycloak-roles") is None
