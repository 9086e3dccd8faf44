"""The admin area and the account page in real headless Chromium (tests/browser.py), two
people at once where it matters: an admin raises a user's level while the user, in another
browser, is refused and then let in; an admin moves a product between levels and access follows;
a user signs out everywhere else and their other browser is out; a reset password leads to the
forced change. Every page is saved as build/screenshots/<name>.png."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select
from sqlalchemy import select, update

from portal_asgi.db import store
from portal_asgi.db.engine import Database
from portal_asgi.db.models import Session, User, utcnow

from .browser import chromium, screenshot, severe_errors, sign_in, wait
from .servers import RunningPortal, password_for, serve

ADMIN = "ada"  # not the first start's `admin`, whose one-time password must be changed first
USER = "sam"
NEW_PASSWORD = "sam chose this one 2026"


@pytest.fixture
def running(tmp_path: Path) -> Iterator[RunningPortal]:
    with serve(tmp_path) as portal:
        portal.add_user(ADMIN, "admin", email="ada@example.org")
        portal.add_user(USER, "stable", email="sam@example.org")
        portal.wait_until(lambda: portal.knows(ADMIN, USER))
        yield portal


@pytest.fixture
def other(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """A second person's browser, with a profile of its own."""
    folder = tmp_path / "other"
    folder.mkdir()
    with chromium(folder) as driver:
        yield driver


def path_of(driver: webdriver.Chrome) -> str:
    parts = urlsplit(driver.current_url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def text(driver: webdriver.Chrome, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def submit(driver: webdriver.Chrome, form_css: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f"{form_css} button[type=submit]").click()


def refused(driver: webdriver.Chrome) -> bool:
    """Whether the page shown is the portal's 403."""
    found = driver.find_elements(By.CSS_SELECTOR, ".status")
    return bool(found) and found[0].text == "ERROR 403"


def opened(driver: webdriver.Chrome, username: str) -> bool:
    """Whether the page shown is the test product greeting `username`."""
    found = driver.find_elements(By.CSS_SELECTOR, "h1")
    return bool(found) and found[0].text == f"Hello, {username}"


def reload_until(driver: webdriver.Chrome, condition: object) -> None:
    """Reload until `condition(driver)` holds, as a person pressing F5 would."""

    def check(d: webdriver.Chrome) -> bool:
        if condition(d):  # type: ignore[operator]
            return True
        d.refresh()
        return False

    wait(driver).until(check)


def open_user(driver: webdriver.Chrome, url: str, username: str) -> None:
    """From the users table, search for `username` and open their page."""
    driver.get(url + "/admin/users")
    search = driver.find_element(By.NAME, "q")
    search.send_keys(username)
    submit(driver, "form[role=search]")
    wait(driver).until(lambda d: "q=" in d.current_url)
    driver.find_element(By.LINK_TEXT, username).click()
    wait(driver).until(lambda d: path_of(d) == f"/admin/user?name={username}")


def test_raising_a_level_lets_the_user_in_after_a_reload(
    browser: webdriver.Chrome, other: webdriver.Chrome, running: RunningPortal
) -> None:
    sign_in(other, running.url, USER, password_for(USER))
    other.get(running.url + "/ea/")
    assert refused(other)

    sign_in(browser, running.url, ADMIN, password_for(ADMIN))
    browser.find_element(By.LINK_TEXT, "Admin").click()  # from the catalogue's header
    wait(browser).until(lambda d: path_of(d) == "/admin/users")
    open_user(browser, running.url, USER)
    Select(
        browser.find_element(By.CSS_SELECTOR, "form[action='/admin/user/level'] select")
    ).select_by_value("ea")
    submit(browser, "form[action='/admin/user/level']")
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".notice"))
    assert text(browser, ".notice").startswith("Level changed")
    assert text(browser, ".card-head .level") == "EA"

    reload_until(other, lambda d: opened(d, USER))  # the same session, let in
    assert severe_errors(browser) == []


def test_a_products_level_changed_and_reverted_moves_access(
    browser: webdriver.Chrome, other: webdriver.Chrome, running: RunningPortal
) -> None:
    sign_in(other, running.url, USER, password_for(USER))
    other.get(running.url + "/ea/")
    assert refused(other)

    sign_in(browser, running.url, ADMIN, password_for(ADMIN))
    browser.get(running.url + "/admin/products")
    row = "//tr[td/a[@href='/ea/']]"
    Select(browser.find_element(By.XPATH, f"{row}//select")).select_by_value("stable")
    browser.find_element(By.XPATH, f"{row}//button[text()='Set']").click()
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".notice"))
    assert "override" in browser.find_element(By.XPATH, row).text.lower()
    reload_until(other, lambda d: opened(d, USER))

    browser.find_element(By.XPATH, f"{row}//button[text()='Revert']").click()
    wait(browser).until(lambda d: "done=reverted" in d.current_url)
    assert "override" not in browser.find_element(By.XPATH, row).text.lower()
    reload_until(other, refused)


def test_signing_out_everywhere_else_ends_the_other_browser(
    browser: webdriver.Chrome, other: webdriver.Chrome, running: RunningPortal
) -> None:
    sign_in(other, running.url, USER, password_for(USER))
    sign_in(browser, running.url, USER, password_for(USER))
    browser.find_element(By.LINK_TEXT, "Account").click()
    wait(browser).until(lambda d: path_of(d) == "/account")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#sessions tbody tr")) == 2
    submit(browser, "form[action='/account/sign-out-others']")
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".notice"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#sessions tbody tr")) == 1

    other.get(running.url + "/")
    wait(other).until(lambda d: path_of(d).startswith("/auth/login"))
    browser.get(running.url + "/")  # this one stays signed in
    assert text(browser, ".who .name") == USER


def test_a_reset_password_leads_to_the_forced_change(
    browser: webdriver.Chrome, other: webdriver.Chrome, running: RunningPortal
) -> None:
    sign_in(browser, running.url, ADMIN, password_for(ADMIN))
    open_user(browser, running.url, USER)
    submit(browser, "form[action='/admin/user/password']")
    wait(browser).until(lambda d: d.find_elements(By.ID, "secret"))
    one_time = text(browser, "#secret")
    screenshot(browser, "admin-password-reset")

    sign_in(other, running.url, USER, one_time)
    wait(other).until(lambda d: path_of(d) == "/account")
    assert text(other, ".warning").startswith("Choose a new password to continue.")
    other.get(running.url + "/ea/")  # anywhere else: back to the account page
    assert path_of(other) == "/account"
    screenshot(other, "account-password-change")
    other.find_element(By.NAME, "current").send_keys(one_time)
    other.find_element(By.NAME, "new").send_keys(NEW_PASSWORD)
    other.find_element(By.NAME, "repeat").send_keys(NEW_PASSWORD)
    submit(other, "form[action='/account/password']")
    wait(other).until(lambda d: "done=password" in d.current_url)
    assert not other.find_elements(By.CSS_SELECTOR, ".warning")
    other.find_element(By.LINK_TEXT, "Your products").click()
    wait(other).until(lambda d: path_of(d) == "/")
    assert other.find_elements(By.CSS_SELECTOR, ".tile")
    assert running.run_db(lambda db: store.check_password(db, USER, NEW_PASSWORD)) is not None


def test_screenshots_of_the_account_page_and_every_admin_page(
    browser: webdriver.Chrome, other: webdriver.Chrome, running: RunningPortal
) -> None:
    # a portal that has been in use: people, an override, a token, a refusal in the log
    for name, level in (("alice", "ea"), ("bob", "devel"), ("carol", "stable"), ("erin", "ea")):
        running.add_user(name, level, email=f"{name}@example.org")
    running.run_db(lambda db: store.set_active(db, "erin", False))
    running.wait_until(lambda: running.knows("alice", "erin"))
    sign_in(other, running.url, USER, password_for(USER))
    other.get(running.url + "/ea/")  # refused: in the audit log
    other.get(running.url + "/account")
    other.find_element(By.NAME, "label").send_keys("nightly report")
    submit(other, "form[action='/account/tokens']")
    wait(other).until(lambda d: d.find_elements(By.ID, "secret"))
    screenshot(other, "account-token-shown-once")
    other.find_element(By.LINK_TEXT, "Done").click()
    wait(other).until(lambda d: path_of(d) == "/account")
    assert "nightly report" in text(other, "#tokens")
    screenshot(other, "account")

    sign_in(browser, running.url, ADMIN, password_for(ADMIN))
    browser.get(running.url + "/admin/products")
    row = "//tr[td/a[@href='/dashboard/']]"
    Select(browser.find_element(By.XPATH, f"{row}//select")).select_by_value("stable")
    browser.find_element(By.XPATH, f"{row}//button[text()='Set']").click()
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".notice"))
    screenshot(browser, "admin-products")

    for name, path, shows in (
        ("admin-users", "/admin/users", "erin@example.org"),
        ("admin-user", f"/admin/user?name={USER}", "nightly report"),
        ("admin-audit", "/admin/audit", "token.mint"),
        ("admin-settings", "/admin/settings", running.settings_file.name),
    ):
        browser.get(running.url + path)
        wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".tabs"))
        assert shows in text(browser, "main"), name
        screenshot(browser, name)

    # a sign-in older than ten minutes: deleting a user asks for the password, then goes on
    running.run_db(lambda db: sign_in_long_ago(db, ADMIN))
    browser.get(running.url + "/admin/user?name=carol")
    browser.find_element(By.NAME, "confirm").click()
    submit(browser, "form[action='/admin/user/delete']")
    wait(browser).until(lambda d: d.find_elements(By.NAME, "reauth_password"))
    assert text(browser, "main h2") == "Confirm it is you"
    screenshot(browser, "admin-reauthenticate")
    browser.find_element(By.NAME, "reauth_password").send_keys(password_for(ADMIN))
    submit(browser, "form[action='/admin/user/delete']")
    wait(browser).until(lambda d: "done=deleted" in d.current_url)
    assert text(browser, ".notice").startswith("User deleted")
    assert running.run_db(lambda db: store.get_user(db, "carol")) is None
    assert severe_errors(browser) == []


async def sign_in_long_ago(db: Database, username: str) -> None:
    """Every session of `username` proved its user an hour ago."""
    async with db.session() as session:
        user_id = select(User.id).where(User.username == username).scalar_subquery()
        await session.execute(
            update(Session)
            .where(Session.user_id == user_id)
            .values(authenticated_at=utcnow() - dt.timedelta(hours=1))
        )
