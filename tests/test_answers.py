"""The portal's refusals (answers.py) in process: the JSON 401 the request path prepares once is
the answer `refuse` makes, byte for byte, and a browser is told apart the same way whether its
Accept header was read already or not."""

from __future__ import annotations

from pathlib import Path

import pytest

from portal_asgi.answers import is_browser, refuse
from portal_asgi.app import RequestPath
from portal_asgi.middleware.headers import Outgoing
from portal_asgi.types import Message

from .asgi import http_scope, request, started

pytestmark = pytest.mark.anyio

HOST = (b"host", b"127.0.0.1:8000")


async def test_the_prepared_401_is_the_answer_refuse_makes(tmp_path: Path) -> None:
    """An anonymous API call to a mount that needs a level gets the answer made once at start
    (the flood's answer), and it is exactly what `refuse` and the security headers make."""
    async with started(tmp_path) as (portal, _):
        path = portal._app
        assert isinstance(path, RequestPath)
        fast = await request(portal, "/ea/whoami", headers=[(b"accept", b"application/json")])

        made: list[Message] = []

        async def send(message: Message) -> None:
            made.append(message)

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        scope = http_scope("GET", "/ea/whoami", [HOST, (b"accept", b"application/json")])
        await refuse(scope, receive, Outgoing(send, path.headers, product=False), 401)

    assert fast.status == made[0]["status"] == 401
    assert fast.headers == made[0]["headers"]
    assert fast.body == made[1]["body"] == b'{"error": "authentication_required"}'
    assert fast.header("www-authenticate") == 'Bearer realm="portal"'
    assert fast.header("content-security-policy")  # the portal's security headers are there


async def test_a_browser_is_still_sent_to_sign_in(tmp_path: Path) -> None:
    """The prepared answer is for clients that are not browsers: a browser's navigation gets
    the 303 to the login page, with the way back."""
    async with started(tmp_path) as (portal, _):
        answer = await request(portal, "/ea/whoami", headers=[(b"accept", b"text/html")])
    assert answer.status == 303
    assert answer.header("location") == "/auth/login?next=/ea/whoami"
    assert answer.header("www-authenticate") is None


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
@pytest.mark.parametrize(
    "accepts", [[], [b"text/html"], [b"*/*"], [b"application/json", b"text/html"]]
)
def test_is_browser_reads_the_accept_it_is_given_as_the_scope_says(
    method: str, accepts: list[bytes]
) -> None:
    """The request path reads Accept once, in its one pass over the headers, and hands it on;
    the verdict is the one `is_browser` gives from the scope (the first Accept header)."""
    scope = http_scope(method, "/x", [HOST, *((b"accept", value) for value in accepts)])
    first = accepts[0].decode() if accepts else ""
    assert is_browser(scope, first) == is_browser(scope)
    assert is_browser(scope) == (method in ("GET", "HEAD") and first == "text/html")
