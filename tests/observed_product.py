"""A product that says which request id it was handed (tests/test_logs.py)."""

from __future__ import annotations

import json
import logging

from portal_asgi.types import Receive, Scope, Send

logger = logging.getLogger("observed_product")


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    ids = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"]
    # a line of the product's own: it carries the request id too
    logger.warning("product saw %s", ids)
    body = json.dumps({"request_ids": ids}).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
