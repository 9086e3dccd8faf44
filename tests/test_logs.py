"""`[logging] format = "json"` and request ids, on a real `uvicorn portal_asgi:app`: every line
its worker writes once the portal has started is one JSON object; a request's lines (the access
line, the audit line, the product's own) share its id; only a trusted proxy names that id."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx2
import pytest

from portal_asgi.exceptions import SettingsError
from portal_asgi.settings import parse_settings

from .processes import portal_process
from .servers import ROOT, password_for

TABLES = """
[[mount]]
path = "/seen"
app = "tests.observed_product:app"
level = "public"

[logging]
format = "json"
"""
PROXY = "127.0.0.3"  # the trusted proxy's address; the tests' own 127.0.0.1 is not one
LINE_FIELDS = {"time", "level", "logger", "message", "request_id"}
ACCESS_FIELDS = LINE_FIELDS | {"method", "path", "status", "duration_ms", "user", "mount"}


def ids_seen(answer: httpx2.Response) -> list[str]:
    """The X-Request-ID headers the product was handed."""
    assert answer.status_code == 200, answer.text
    ids = answer.json()["request_ids"]
    assert isinstance(ids, list)
    return [str(i) for i in ids]


def json_lines(log: Path) -> list[dict[str, Any]]:
    """Every line after uvicorn's last words before the portal's startup, each parsed as JSON
    (a line that is not JSON fails the test)."""
    lines = log.read_text().splitlines()
    start = max(i for i, line in enumerate(lines) if "Waiting for application startup" in line)
    parsed = [json.loads(line) for line in lines[start + 1 :] if line.strip()]
    assert all(isinstance(line, dict) for line in parsed)
    return parsed


def sign_in(client: httpx2.Client, username: str, password: str) -> int:
    page = client.get("/auth/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text
    form = {"username": username, "password": password, "csrf_token": token.group(1)}
    return client.post("/auth/login", data=form | {"next": "/"}).status_code


def test_json_lines_carry_the_request_and_its_id(tmp_path: Path) -> None:
    with portal_process(
        tmp_path,
        users=("alice",),
        mounts=TABLES,
        security=f'trusted_proxies = ["{PROXY}/32"]',
        log_level="info",
    ) as portal:
        with httpx2.Client(base_url=portal.url, timeout=30) as alice:
            assert sign_in(alice, "alice", password_for("alice")) == 303
            # an untrusted client's X-Request-ID is dropped: the portal names the request
            (mine,) = ids_seen(alice.get("/seen/x", headers={"x-request-id": "forged-by-me"}))
        with httpx2.Client(base_url=portal.url, timeout=30) as mallory:
            assert sign_in(mallory, "mallory", "wrong") == 401
        proxy = httpx2.HTTPTransport(local_address=PROXY)
        with httpx2.Client(base_url=portal.url, transport=proxy, timeout=30) as behind:
            given = ids_seen(behind.get("/seen/y", headers={"x-request-id": "from-the-proxy-7"}))
            forged = ids_seen(behind.get("/seen/z", headers={"x-request-id": "bad id\\n"}))
    assert mine != "forged-by-me" and len(mine) == 32
    assert given == ["from-the-proxy-7"]  # a trusted proxy's, as it sent it
    assert forged != ["bad id\\n"] and len(forged) == 1  # not fit for a log line: replaced

    lines = json_lines(portal.log)
    for line in lines:
        assert LINE_FIELDS <= line.keys(), line
    by_id: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        by_id.setdefault(str(line["request_id"]), []).append(line)
    # the signed-in request: its access line names user and mount; the product's line its id
    access = [line for line in by_id[mine] if line["logger"] == "portal_asgi.access"]
    assert len(access) == 1, by_id[mine]
    (line,) = access
    assert ACCESS_FIELDS <= line.keys()
    assert (line["method"], line["path"], line["status"]) == ("GET", "/seen/x", 200)
    assert (line["user"], line["mount"], line["level"]) == ("alice", "/seen", "INFO")
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["time"].endswith("+00:00")
    assert any(line["logger"] == "observed_product" for line in by_id[mine])
    assert not any("forged-by-me" in json.dumps(line) for line in lines)
    # the trusted proxy's id names the request in the log too
    assert [line["path"] for line in by_id["from-the-proxy-7"] if "path" in line] == ["/seen/y"]
    # the failed sign-in: its audit event and its access line share one id
    (audit,) = [line for line in lines if line.get("audit", {}).get("event") == "login.failed"]
    assert audit["logger"] == "portal_asgi.audit" and audit["audit"]["username"] == "mallory"
    (post,) = [line for line in by_id[audit["request_id"]] if line["logger"].endswith("access")]
    assert (post["method"], post["path"], post["status"]) == ("POST", "/auth/login", 401)
    assert post["user"] is None and post["mount"] == "portal"
    # uvicorn's own lines are JSON too, and its access line gave way to the portal's
    assert any(line["message"] == "Application startup complete." for line in lines)
    assert not any(line["logger"] == "uvicorn.access" for line in lines)


def test_log_config_makes_every_line_json(tmp_path: Path) -> None:
    """With `--log-config deploy/logging.json`, uvicorn's lines from before the portal started
    are JSON as well."""
    options = ("--log-config", str(ROOT / "deploy" / "logging.json"))
    with portal_process(tmp_path, mounts=TABLES, log_level="info", options=options) as portal:
        (seen,) = ids_seen(httpx2.get(portal.url + "/seen/", timeout=10))
    lines = [json.loads(line) for line in portal.log.read_text().splitlines() if line.strip()]
    assert any(line["message"].startswith("Started server process") for line in lines)
    (access,) = [line for line in lines if line["request_id"] == seen and "status" in line]
    assert (access["logger"], access["path"], access["status"]) == (
        "portal_asgi.access",
        "/seen/",
        200,
    )


def test_text_format_leaves_uvicorn_alone(tmp_path: Path) -> None:
    """The default: uvicorn's own access line, and still a request id for the product."""
    with portal_process(
        tmp_path, mounts=TABLES.replace('"json"', '"text"'), log_level="info"
    ) as portal:
        (seen,) = ids_seen(httpx2.get(portal.url + "/seen/", timeout=10))
    text = portal.log.read_text()
    assert '"GET /seen/ HTTP/1.1" 200' in text
    assert len(seen) == 32 and '"request_id"' not in text


def test_logging_settings_are_checked() -> None:
    assert parse_settings({}, file="settings.toml", environ={}).logging.format == "text"
    with pytest.raises(SettingsError, match=r"logging\.format"):
        parse_settings({"logging": {"format": "xml"}}, file="settings.toml", environ={})
