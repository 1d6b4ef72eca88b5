"""A real headless browser for the tests of pages: Debian's chromium driven by chromedriver (selenium).

``scripts/setup.sh`` installs ``chromium`` and ``chromium-driver`` with apt and ``selenium`` with pip.
The browser starts with no network beyond loopback in mind: background networking, component updates and
sync are off (this machine refuses those connections), and each browser gets a new empty profile.

    from browser import browser_session      # tests/ is on sys.path (as for conftest)
    with browser_session() as page:
        page.open("file:///.../report.html")
        assert page.console_errors() == []
        assert page.undecoded_images() == []
        page.screenshot(tmp_path / "report.png")
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1280,1600",
]


def browser_available() -> str | None:
    """None when the browser can run here, else why not (for a clear failure in CI)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(path) is None:
            return f"{path} is missing: run scripts/setup.sh (it installs Debian's chromium and chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: run scripts/setup.sh"
    return None


class Page:
    """One browser tab: open a URL, read the console, check images, take screenshots, wait for text."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def open(self, url: str, *, timeout: float = 30) -> None:
        self.driver.set_page_load_timeout(timeout)
        self.driver.get(url)

    def console_errors(self) -> list[str]:
        """Messages the page logged at level SEVERE (errors, failed loads) since the last call."""
        return [entry["message"] for entry in self.driver.get_log("browser") if entry.get("level") == "SEVERE"]

    def undecoded_images(self) -> list[str]:
        """The ``src`` (cut to 80 characters) of every ``<img>`` that did not decode to a picture."""
        script = (
            "return Array.from(document.images)"
            ".filter(i => !(i.complete && i.naturalWidth > 0))"
            ".map(i => (i.getAttribute('src') || '').slice(0, 80));"
        )
        return list(self.driver.execute_script(script))

    def image_count(self) -> int:
        return int(self.driver.execute_script("return document.images.length;"))

    def text(self, selector: str = "body") -> str:
        """The visible text of the first element matching the CSS ``selector``."""
        from selenium.webdriver.common.by import By

        return str(self.driver.find_element(By.CSS_SELECTOR, selector).text)

    def script(self, source: str, *args: Any) -> Any:
        return self.driver.execute_script(source, *args)

    def screenshot(self, path: Path | str) -> Path:
        """A PNG of the whole page (the window is resized to the page's height first)."""
        height = int(self.driver.execute_script("return document.documentElement.scrollHeight;"))
        self.driver.set_window_size(1280, max(800, min(height, 16000)))
        path = Path(path)
        if not self.driver.save_screenshot(str(path)):
            raise AssertionError(f"the browser took no screenshot at {path}")
        return path

    def wait_for(self, condition: Callable[[Page], bool], *, timeout: float = 30, what: str = "condition") -> None:
        """Poll ``condition(page)`` every 0.2 s until it holds; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition(self):
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@contextmanager
def browser_session() -> Iterator[Page]:
    """A headless chromium with a new empty profile; fails (does not skip) when the browser is missing."""
    problem = browser_available()
    if problem:
        pytest.fail(problem)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="latentopt-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield Page(driver)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
