"""Headless Chromium through Selenium, for the admin pages a person clicks through.

Uses the system's chromium and chromedriver (apt: chromium chromium-driver; `.ci/run` installs
them); without them the tests skip and say why.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from tests.support.worker import BASE_DIR

WAIT_SECONDS = 20


def chromium_paths() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture
def browser() -> Iterator:
    paths = chromium_paths()
    if paths is None:
        pytest.skip("needs chromium and chromedriver on PATH (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (requirements/local.txt)")
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=paths[1]))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def sign_in(driver, base_url: str, user) -> None:
    """Open a session for `user` without the login form (django-axes guards that), as a cookie."""
    client = Client()
    client.force_login(user)
    driver.get(f"{base_url}/admin/login/")
    driver.add_cookie(
        {"name": settings.SESSION_COOKIE_NAME, "value": client.cookies[settings.SESSION_COOKIE_NAME].value}
    )


def wait_for(driver, predicate, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_SECONDS).until(lambda _driver: predicate(), message=f"waiting for {what}")


def screenshot(driver, name: str) -> Path:
    """A full-page screenshot into var/screenshots/, and into docs/screenshots/ with CHORDFLOW_SCREENSHOTS=1
    (how the README's pictures are made)."""
    height = driver.execute_script(
        "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight,"
        " ...Array.from(document.querySelectorAll('#main, #content-start, .main'), e => e.scrollHeight))"
    )
    driver.set_window_size(1280, min(max(height + 120, 600), 2400))
    folder = BASE_DIR / ("docs" if os.environ.get("CHORDFLOW_SCREENSHOTS") == "1" else "var") / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 1000)
    return path
