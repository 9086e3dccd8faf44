"""The pages a person sees, in a real headless Chromium: each is checked for what a person
needs from it and saved as build/screenshots/<name>.png (tests/browser.py), to be looked at
after a change to a page or to portal.css. Sign-in, the catalogue of an admin and of a stable
user, the refusal pages (403, 404, and the 405 of `GET /auth/logout`, whose button signs out),
and a browser that opened the portal by another name than base_url's."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from .browser import screenshot, severe_errors, sign_in, wait
from .servers import RunningPortal, password_for, serve

# A small portal as a research group would run it: every level, titles and descriptions.
MOUNTS = """
[[mount]]
path = "/hazard"
app = "products.test.app:app"
level = "stable"
title = "Hazard maps"
description = "Seismic hazard curves and maps for any site."

[[mount]]
path = "/disagg/v1"
app = "products.disagg.app:v1"
level = "stable"
title = "Disaggregation"
description = "Which earthquakes drive the hazard at a site."

[[mount]]
path = "/disagg/v2"
app = "products.disagg.app:v2"
level = "ea"
title = "Disaggregation v2"
description = "The next version, for early-access partners."

[[mount]]
path = "/dashboard"
app = "products.dashboard.app:app"
level = "ea"
title = "Dashboard"
description = "Runs, queues and storage at a glance."

[[mount]]
path = "/devel"
app = "products.test.app:app"
level = "devel"
title = "Test product"
description = "Says who you are and the level it is mounted at."

[[mount]]
path = "/ops"
app = "products.test.app:app"
level = "admin"
title = "Operations"
description = "The group's servers and jobs."

[[mount]]
path = "/about"
app = "products.about.app:app"
level = "public"
title = "About the group"
description = "Open to everyone."
"""
ADMIN = "ada"  # not the first start's `admin`, whose one-time password must be changed first
STABLE = "sam"


@pytest.fixture(scope="module")
def shown(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPortal]:
    with serve(tmp_path_factory.mktemp("screens"), mounts=MOUNTS) as running:
        running.add_user(ADMIN, "admin", email="ada@example.org")
        running.add_user(STABLE, "stable", email="sam@example.org")
        running.wait_until(lambda: running.knows(ADMIN, STABLE))
        yield running


def text(driver: webdriver.Chrome, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def texts(driver: webdriver.Chrome, css: str) -> list[str]:
    return [str(element.text) for element in driver.find_elements(By.CSS_SELECTOR, css)]


def group_levels(driver: webdriver.Chrome) -> list[str]:
    return texts(driver, ".level-group .group-head .level")


def test_sign_in_and_the_catalogue_of_an_admin(
    browser: webdriver.Chrome, shown: RunningPortal
) -> None:
    browser.get(shown.url + "/auth/login")
    assert text(browser, ".brand") == "Test Portal"
    assert texts(browser, ".plain a") == ["About the group"]  # open to everyone
    assert severe_errors(browser) == []  # no style or script refused by the CSP
    screenshot(browser, "login")

    browser.find_element(By.NAME, "username").send_keys(ADMIN)
    browser.find_element(By.NAME, "password").send_keys("not the password")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".error"))
    assert text(browser, ".error") == "Wrong username or password."
    assert browser.find_element(By.NAME, "username").get_attribute("value") == ADMIN
    assert browser.find_element(By.NAME, "password").get_attribute("value") == ""
    # the console notes the 401 of the refused sign-in, and nothing else
    assert [entry["message"] for entry in severe_errors(browser)] == [
        f"{shown.url}/auth/login - Failed to load resource: the server responded with a status "
        "of 401 (Unauthorized)"
    ]
    screenshot(browser, "login-failed")

    browser.find_element(By.NAME, "password").send_keys(password_for(ADMIN))
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(browser).until(lambda d: urlsplit(d.current_url).path == "/")
    assert text(browser, ".who .name") == ADMIN
    assert group_levels(browser) == ["ADMIN", "DEVEL", "EA", "STABLE", "PUBLIC"]
    assert texts(browser, ".tile-title") == [
        "Operations",
        "Test product",
        "Dashboard",
        "Disaggregation v2",
        "Disaggregation",
        "Hazard maps",
        "About the group",
    ]
    colours = {
        level: browser.find_element(
            By.CSS_SELECTOR, f".group-head .level-{level}"
        ).value_of_css_property("background-color")
        for level in ("public", "stable", "ea", "devel", "admin")
    }
    assert len(set(colours.values())) == 5, colours  # one colour per level, as drawn
    assert severe_errors(browser) == []
    screenshot(browser, "catalogue-admin")


def test_a_stable_users_catalogue_refusals_and_sign_out(
    browser: webdriver.Chrome, shown: RunningPortal
) -> None:
    sign_in(browser, shown.url, STABLE, password_for(STABLE))
    assert group_levels(browser) == ["STABLE", "PUBLIC"]
    assert texts(browser, ".tile-title") == ["Disaggregation", "Hazard maps", "About the group"]
    screenshot(browser, "catalogue-stable")

    # the public page knows who is there
    browser.get(shown.url + "/about/")
    assert "You are signed in as sam." in text(browser, ".card")
    assert not browser.find_elements(By.LINK_TEXT, "Sign in")

    for name, path, status in (("error-403", "/ops/", 403), ("error-404", "/no/such/page", 404)):
        browser.get(shown.url + path)
        assert text(browser, ".status") == f"ERROR {status}"
        assert text(browser, ".brand") == "Test Portal"
        assert text(browser, ".who .name") == STABLE
        assert browser.find_elements(By.CSS_SELECTOR, ".who form button")  # Sign out
        screenshot(browser, name)

    browser.get(shown.url + "/auth/logout")
    assert text(browser, "h1") == "Sign out with the button"
    assert text(browser, ".status") == "ERROR 405"
    screenshot(browser, "error-405-logout")
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    wait(browser).until(lambda d: urlsplit(d.current_url).path == "/auth/login")
    browser.get(shown.url + "/")  # signed out: back to the sign-in form
    wait(browser).until(lambda d: urlsplit(d.current_url).path == "/auth/login")
    assert not browser.find_elements(By.CSS_SELECTOR, ".who")


def test_a_browser_at_localhost_is_sent_to_the_portals_address(
    browser: webdriver.Chrome, shown: RunningPortal
) -> None:
    """base_url says 127.0.0.1: opened at localhost, the browser lands at 127.0.0.1, where a
    sign-in counts, and signs in there."""
    port = urlsplit(shown.url).port
    browser.get(f"http://localhost:{port}/")
    wait(browser).until(lambda d: d.current_url.startswith(shown.url + "/auth/login"))
    browser.find_element(By.NAME, "username").send_keys(STABLE)
    browser.find_element(By.NAME, "password").send_keys(password_for(STABLE))
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(browser).until(lambda d: d.current_url == shown.url + "/")
    assert text(browser, ".who .name") == STABLE
