"""The provider goes away (its process is stopped): the login page says so with 503, signed-in
users carry on, and provider access tokens keep verifying against the cached keys."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx2
import pytest

from .oidc.browser import Browser
from .oidc.harness import AUDIENCE, MACHINE, oidc_portal, start_provider

JSON = {"accept": "application/json"}


def test_provider_down_login_503_sessions_and_cached_keys_keep_working(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with start_provider(tmp_path) as provider, oidc_portal(tmp_path, provider) as portal:
        browser = Browser(portal.url)
        assert browser.login("auth0-scope").status_code == 303
        token = httpx2.post(
            provider.issuer + "/token",
            auth=MACHINE,
            data={"grant_type": "client_credentials", "resource": AUDIENCE, "scope": "access:ea"},
            timeout=10,
        ).json()["access_token"]
        with portal.client() as client:
            bearer = {"authorization": f"Bearer {token}", **JSON}
            assert client.get("/ea/whoami", headers=bearer).status_code == 200  # keys now cached
        # a login under way when the provider goes
        pending = Browser(portal.url)
        callback = pending.authorize(pending.start(), "okta-groups")

        provider.stop()
        assert not provider.running

        with caplog.at_level(logging.ERROR, logger="portal_asgi"):
            with Browser(portal.url) as stranger:
                # within a few seconds (the discovery document may be that fresh)
                portal.wait_until(
                    lambda: stranger.get("/auth/login", params={"go": "1"}).status_code == 503,
                    timeout=15,
                )
            with Browser(portal.url) as late:
                go = late.get("/auth/login", params={"go": "1"})
                assert go.status_code == 503
                assert "cannot reach Test IdP, the identity provider" in go.text
                assert "Continue with" not in go.text
                assert late.cookie("portal_oidc_login") is None  # no login was started
                assert late.get("/auth/login").status_code == 503  # the plain page too
            finished = pending.callback(callback)
            assert finished.status_code == 503
            assert "cannot reach Test IdP" in finished.text
            assert pending.cookie("portal_session") is None
        assert "discovery at http://127.0.0.1" in caplog.text  # the log says what failed
        assert "ConnectError" in caplog.text or "Connect" in caplog.text

        # those already signed in carry on
        whoami = browser.get("/ea/whoami")
        assert whoami.status_code == 200 and whoami.json()["user"] == "auth0-scope"
        with portal.client() as client:
            assert client.get("/ea/whoami", headers=bearer).status_code == 200
            # an unknown kid cannot be fetched now, and is refused, not a 500
            forged = token.replace(token.split(".")[0], "eyJhbGciOiJSUzI1NiIsImtpZCI6Im5ldyJ9")
            assert (
                client.get(
                    "/ea/whoami", headers={"authorization": f"Bearer {forged}", **JSON}
                ).status_code
                == 401
            )
        browser.client.close()
        pending.client.close()


def test_portal_starts_while_the_provider_is_down(tmp_path: Path) -> None:
    with start_provider(tmp_path) as provider:
        provider.stop()
        with oidc_portal(tmp_path, provider) as portal, Browser(portal.url) as browser:
            page = browser.get("/auth/login")
            assert page.status_code == 503
            assert "cannot reach Test IdP" in page.text
            assert browser.get("/public/whoami").status_code == 200
            assert browser.get("/ea/whoami", headers=JSON).status_code == 401
