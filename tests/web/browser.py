"""A real headless Chromium for the web interface's tests (Debian's chromium
and chromium-driver, driven by Selenium), and helpers to use it like a person."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
TMP_SHOTS = Path(tempfile.gettempdir()) / "linesync-screenshots"
DESKTOP = (1280, 860)
PHONE = (390, 844)
T = TypeVar("T")


def need_browser() -> None:
    """Skip without a browser, except in CI, where a missing one is a failure
    (``make unit`` installs it: tests/support/ensure_browser.sh)."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if not missing:
        return
    msg = f"{', '.join(missing)} missing: run `make browser` (Debian chromium, chromium-driver)"
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def start(downloads: Path):  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={DESKTOP[0]},{DESKTOP[1]}", "--lang=en-US",
                "--disable-extensions", "--no-first-run", "--hide-scrollbars"):  # fmt: skip
        opts.add_argument(arg)
    opts.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    return driver


def wait_for(check: Callable[[], T | None], timeout: float = 20.0, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.05)


def downloaded(folder: Path, name: str, timeout: float = 15.0) -> bytes:
    path = folder / name
    wait_for(
        lambda: path.exists() and not list(folder.glob("*.crdownload")),
        timeout,
        f"download of {name}",
    )
    return path.read_bytes()


def screenshot(driver, name: str) -> Path:  # type: ignore[no-untyped-def]
    """Save the page as NAME.png: in docs/screenshots/ (the README shows some)
    under ``make screenshots`` (LINESYNC_SCREENSHOTS=docs), else in the temporary
    directory (linesync-screenshots/), so that a test run leaves the work tree
    as it was."""
    folder = SCREENSHOTS if os.environ.get("LINESYNC_SCREENSHOTS") == "docs" else TMP_SHOTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path)), name
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000, name
    return path


def clear(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
