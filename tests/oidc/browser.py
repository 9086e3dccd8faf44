"""A scripted browser: one cookie jar for the portal and the provider (browsers do not keep
cookies apart by port), redirects followed by hand so each step can be looked at or tampered with."""

from __future__ import annotations

import hashlib
import re
import secrets
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx2

from portal_asgi.jose_utils import b64url_encode


class Browser:
    def __init__(self, portal_url: str) -> None:
        self.portal = portal_url
        self.client = httpx2.Client(follow_redirects=False, timeout=10)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def get(self, url: str, **kwargs: object) -> httpx2.Response:
        return self.client.get(urljoin(self.portal, url), **kwargs)  # type: ignore[arg-type]

    def start(self, next_path: str = "/") -> str:
        """Click "Continue with ...": the provider's authorization URL."""
        response = self.client.get(
            urljoin(self.portal, "/auth/login"), params={"next": next_path, "go": "1"}
        )
        assert response.status_code == 303, response.text
        return response.headers["location"]

    def follow(self, response: httpx2.Response, *, until: str) -> httpx2.Response | str:
        """Follow redirects; stop at the first URL starting with `until` (returned, not fetched),
        or at the first answer that is not a redirect (returned)."""
        while response.is_redirect:
            url = urljoin(str(response.url), response.headers["location"])
            if url.startswith(until):
                return url
            response = self.client.get(url)
        return response

    def authorize(self, auth_url: str, account: str) -> str:
        """Sign in at the provider as `account`: the callback URL it sends the browser to."""
        callback = self.portal + "/auth/callback"
        result = self.follow(self.client.get(auth_url), until=callback)
        if isinstance(result, str):
            return result  # the provider still had a session
        match = re.search(r'<form[^>]*action="([^"]+)"', result.text)
        assert result.status_code == 200 and match, result.text
        form = {"prompt": "login", "login": account, "password": "any"}
        posted = self.client.post(urljoin(str(result.url), match.group(1)), data=form)
        final = self.follow(posted, until=callback)
        assert isinstance(final, str), final.text
        return final

    def callback(self, url: str) -> httpx2.Response:
        return self.client.get(url)

    def login(self, account: str, next_path: str = "/") -> httpx2.Response:
        """The whole flow; the portal's last answer (303 to `next_path` when it worked)."""
        return self.callback(self.authorize(self.start(next_path), account))

    def cookie(self, name: str) -> str | None:
        for cookie in self.client.cookies.jar:
            if cookie.name == name:
                return cookie.value
        return None


def query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def user_access_token(issuer: str, account: str, client: tuple[str, str], audience: str) -> str:
    """An access token for `account`, obtained by another client of the provider (as a command
    line tool of the user's would): the code flow with PKCE, redirect never followed."""
    verifier = secrets.token_urlsafe(48)
    challenge = b64url_encode(hashlib.sha256(verifier.encode()).digest())
    redirect_uri = "http://127.0.0.1:9/auth/callback"  # port-agnostic loopback (RFC 8252)
    browser = Browser("http://127.0.0.1:9")
    try:
        auth = httpx2.URL(issuer + "/auth").copy_merge_params(
            {
                "response_type": "code",
                "client_id": client[0],
                "redirect_uri": redirect_uri,
                "scope": "openid profile email",
                "resource": audience,
                "state": secrets.token_urlsafe(16),
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        callback = browser.authorize(str(auth), account)
        code = query(callback)["code"]
        token = browser.client.post(
            issuer + "/token",
            auth=client,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
                "resource": audience,
            },
        )
        assert token.status_code == 200, token.text
        value: str = token.json()["access_token"]
        return value
    finally:
        browser.client.close()
