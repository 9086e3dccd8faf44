"""Logout ends the portal session, then the provider's (RP-initiated logout, with id_token_hint
and post_logout_redirect_uri), against the real provider."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urljoin

from portal_asgi.jose_utils import unverified_claims

from .helpers import csrf_token
from .oidc.browser import Browser, query
from .oidc.harness import Provider, audit_events, oidc_portal

JSON = {"accept": "application/json"}


def test_logout_ends_the_portal_session_and_the_providers(
    oidc_provider: Provider, tmp_path: Path
) -> None:
    with oidc_portal(tmp_path, oidc_provider) as portal, Browser(portal.url) as browser:
        assert browser.login("okta-groups").status_code == 303
        session = browser.cookie("portal_session")
        assert session is not None
        catalogue = browser.get("/", headers={"accept": "text/html"})
        csrf = csrf_token(catalogue.text)

        out = browser.client.post(portal.url + "/auth/logout", data={"csrf_token": csrf})
        assert out.status_code == 303
        location = out.headers["location"]
        assert location.startswith(oidc_provider.issuer + "/session/end?")
        params = query(location)
        assert params["post_logout_redirect_uri"] == portal.url + "/"
        hint = unverified_claims(params["id_token_hint"])
        assert hint["aud"] == "portal" and hint["sub"] == "okta-groups"
        cookies = out.headers.get_list("set-cookie")
        assert any(c.startswith("portal_session=;") and "Max-Age=0" in c for c in cookies)
        assert any(c.startswith("portal_oidc_hint=;") and "Max-Age=0" in c for c in cookies)

        # the portal session is over, even for a copy of the old cookie
        portal.wait_until(
            lambda: (
                browser.client.get(
                    portal.url + "/ea/whoami",
                    headers={"cookie": f"portal_session={session}", **JSON},
                ).status_code
                == 401
            )
        )
        assert [e for e in audit_events(portal, "logout") if e["username"] == "okta-groups"]

        # at the provider: confirm, then back to the portal
        confirm = browser.client.get(location)
        assert confirm.status_code == 200
        form = re.search(r'<form[^>]*action="([^"]+)"', confirm.text)
        xsrf = re.search(r'name="xsrf" value="([^"]+)"', confirm.text)
        assert form and xsrf, confirm.text
        back = browser.client.post(
            urljoin(location, form.group(1)), data={"xsrf": xsrf.group(1), "logout": "yes"}
        )
        assert back.status_code == 303  # oidc-provider's end_session answers a confirmed logout 303
        assert back.headers["location"].startswith(portal.url + "/")

        # the provider's session is gone too: signing in again asks who you are
        again = browser.client.get(browser.start())
        while again.is_redirect:
            again = browser.client.get(urljoin(str(again.url), again.headers["location"]))
        assert again.status_code == 200 and 'name="login"' in again.text


def test_logout_form_must_carry_the_csrf_token(oidc_provider: Provider, tmp_path: Path) -> None:
    with oidc_portal(tmp_path, oidc_provider) as portal, Browser(portal.url) as browser:
        assert browser.login("okta-groups").status_code == 303
        refused = browser.client.post(portal.url + "/auth/logout", data={"csrf_token": "x"})
        assert refused.status_code == 403
        assert browser.get("/stable/whoami").status_code == 200
