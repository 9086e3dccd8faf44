"""A real headless Chromium for the browser tests, driven by selenium through the Debian
chromedriver (`make browser` installs both), and screenshots of what it shows.

`chromium(folder)` starts one browser (its own profile in `folder`); the `browser` fixture of
conftest.py is one per test, and a test wanting two people at once starts a second. Without
Chromium a test is skipped with the reason, and fails under CI=true. `screenshot(driver, name)`
saves the whole page, at a desktop width, as build/screenshots/<name>.png (the folder is made by
the test run, and build/ is not committed): look at them after a change to a page.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from .servers import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = ROOT / "build" / "screenshots"
WIDTH = 1280  # CSS pixels: a laptop's browser window
MIN_HEIGHT = 760
WAIT = 15  # seconds a browser step may take on a loaded machine


def require_chromium() -> None:
    """Skip the test (fail it under CI=true) when Chromium or its driver is missing."""
    if shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER):
        return
    message = "chromium and chromium-driver are not installed (`make browser` installs them)"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@contextmanager
def chromium(folder: Path) -> Iterator[webdriver.Chrome]:
    require_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--window-size={WIDTH},{MIN_HEIGHT}",
        f"--user-data-dir={folder / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # the explicit Service: selenium never goes looking for (or downloads) a driver of its own
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: webdriver.Chrome) -> WebDriverWait[webdriver.Chrome]:
    return WebDriverWait(driver, WAIT)


def sign_in(driver: webdriver.Chrome, url: str, username: str, password: str) -> None:
    """Open `url`'s sign-in form, fill it in and send it, as a person would; returns once the
    browser has left the form."""
    driver.get(url + "/auth/login")
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(driver).until(lambda d: "/auth/login" not in d.current_url)


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    """The whole page as build/screenshots/`name`.png, `WIDTH` CSS pixels wide."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script(
        "return Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)"
    )
    metrics = {
        "width": WIDTH,
        "height": max(MIN_HEIGHT, int(height)),
        "deviceScaleFactor": 1,
        "mobile": False,
    }
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        path = SCREENSHOTS / f"{name}.png"
        assert driver.save_screenshot(str(path)), path
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return path


def severe_errors(driver: webdriver.Chrome) -> list[dict[str, object]]:
    """The browser console's errors (a script or style the CSP refused, a failed request),
    favicon requests aside."""
    return [
        entry
        for entry in driver.get_log("browser")  # type: ignore[no-untyped-call]
        if entry["level"] == "SEVERE" and "favicon" not in entry["message"]
    ]
