"""Changes to a user made elsewhere (the command line) reach a running portal through the change
feed (directory.py): a disabled user loses their cookie and tokens, a level change applies from
the next request on, without logging out."""

from __future__ import annotations

import time

from .cli_runner import mint_token, run_cli
from .helpers import JSON, SESSION_COOKIE, bearer, cookie_header, get
from .servers import RunningPortal


def test_disabled_user_loses_cookie_and_token(fresh_portal: RunningPortal) -> None:
    fresh_portal.add_user("carol", "ea", wait=True)
    token = mint_token(fresh_portal.settings_file, "carol")
    with fresh_portal.logged_in("carol") as client:
        cookie = str(client.cookies[SESSION_COOKIE])
    assert get(fresh_portal, "/ea/whoami", cookie_header(cookie)).status_code == 200
    assert get(fresh_portal, "/ea/whoami", bearer(token)).status_code == 200

    done = run_cli(fresh_portal.settings_file, "users", "disable", "carol")
    assert done.returncode == 0, done.stderr
    started = time.monotonic()
    fresh_portal.wait_until(
        lambda: (
            get(fresh_portal, "/ea/whoami", cookie_header(cookie)).status_code == 401
            and get(fresh_portal, "/ea/whoami", bearer(token)).status_code == 401
        ),
        timeout=3.0,
    )
    assert time.monotonic() - started < 3.0
    with fresh_portal.client() as client:
        refused = fresh_portal.login(client, "carol")
    assert refused.status_code == 401
    assert "Wrong username or password" in refused.text

    # enabling the account again does not bring its old sessions and tokens back
    done = run_cli(fresh_portal.settings_file, "users", "enable", "carol")
    assert done.returncode == 0, done.stderr
    fresh_portal.wait_until(lambda: fresh_portal.portal.runtime.directory.user("carol").active)  # type: ignore[union-attr]
    assert get(fresh_portal, "/ea/whoami", cookie_header(cookie)).status_code == 401
    assert get(fresh_portal, "/ea/whoami", bearer(token)).status_code == 401
    with fresh_portal.logged_in("carol") as client:
        assert client.get("/ea/whoami").json()["user"] == "carol"


def test_level_change_applies_without_logging_out(fresh_portal: RunningPortal) -> None:
    fresh_portal.add_user("dave", "stable", email="dave@example.org", wait=True)
    token = mint_token(fresh_portal.settings_file, "dave")
    with fresh_portal.logged_in("dave") as client:
        cookie = str(client.cookies[SESSION_COOKIE])
    callers = (cookie_header(cookie), bearer(token))
    for creds in callers:
        assert get(fresh_portal, "/devel/whoami", creds).status_code == 403

    done = run_cli(fresh_portal.settings_file, "users", "set-level", "dave", "devel")
    assert done.returncode == 0, done.stderr
    fresh_portal.wait_until(
        lambda: all(get(fresh_portal, "/devel/whoami", c).status_code == 200 for c in callers),
        timeout=3.0,
    )
    for creds in callers:
        assert get(fresh_portal, "/devel/whoami", creds).json()["level"] == "devel"
        assert get(fresh_portal, "/top/whoami", creds).status_code == 403
        listed = {row["path"] for row in get(fresh_portal, "/", JSON, creds).json()["products"]}
        assert "/devel/" in listed and "/top/" not in listed

    done = run_cli(fresh_portal.settings_file, "users", "set-level", "dave", "stable")
    assert done.returncode == 0, done.stderr
    fresh_portal.wait_until(
        lambda: all(get(fresh_portal, "/ea/whoami", c).status_code == 403 for c in callers),
        timeout=3.0,
    )
    for creds in callers:
        body = get(fresh_portal, "/stable/whoami", creds).json()
        assert (body["user"], body["level"]) == ("dave", "stable")
