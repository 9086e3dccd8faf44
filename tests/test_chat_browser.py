"""The chat demo in a real browser (headless Chromium, driven by selenium through the Debian
chromedriver): sign in through the login form, open the chat, send a message, see it come back
over the WebSocket; then end the session elsewhere and watch the page's socket close with 4401.
The browser is the `browser` fixture (tests/browser.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from portal_asgi.db import store

from .browser import severe_errors
from .servers import RunningPortal, password_for, serve

MOUNTS = """
[[mount]]
path = "/chat"
app = "products.chat.web:app"
websocket = "products.chat.ws:app"
level = "ea"
"""


@pytest.fixture
def chat_portal(tmp_path: Path) -> Iterator[RunningPortal]:
    with serve(tmp_path, mounts=MOUNTS) as running:
        running.add_user("user-ea", "ea")
        running.wait_until(
            lambda: (
                running.portal.runtime is not None
                and running.portal.runtime.directory.user("user-ea") is not None
            )
        )
        yield running


def _text(driver: webdriver.Chrome, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def test_chat_in_a_real_browser(browser: webdriver.Chrome, chat_portal: RunningPortal) -> None:
    wait = WebDriverWait(browser, 15)
    browser.get(chat_portal.url + "/chat/")
    # not signed in: the portal sends the browser to its login form, which brings it back
    wait.until(lambda d: "/auth/login" in d.current_url)
    browser.find_element(By.NAME, "username").send_keys("user-ea")
    browser.find_element(By.NAME, "password").send_keys(password_for("user-ea"))
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait.until(lambda d: d.current_url.rstrip("/").endswith("/chat"))
    wait.until(lambda d: _text(d, "status") == "connected")

    browser.find_element(By.ID, "text").send_keys("hello from a real browser")
    browser.find_element(By.CSS_SELECTOR, "#send button[type=submit]").click()
    said = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#messages li.said"))
    assert said[0].find_element(By.CSS_SELECTOR, ".from").text == "user-ea"
    assert "hello from a real browser" in said[0].text

    # "sign out everywhere" from elsewhere: the page's open socket is closed with 4401
    chat_portal.run_db(lambda db: store.revoke_user_sessions(db, "user-ea"))
    wait.until(lambda d: "session ended" in _text(d, "status"))

    assert severe_errors(browser) == []  # no script refused by the CSP, no failed socket
