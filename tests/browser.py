"""Headless Chromium for the web UI's tests: Debian's `chromium` driven by Playwright (its own
browser download is not used). Shared by `tests/ui` (a dev instance) and the Kafka UI test (an
`eventflow server`). With EVENTFLOW_REQUIRE_BROWSER=1 a missing browser fails the run instead of
skipping it.

`python -m tests.browser` installs the browser with apt-get when it is missing and this is root
(what `make test` runs first): an install takes minutes, longer than a test's timeout, so it
happens before pytest rather than inside a fixture.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

#: Where the test run leaves a screenshot of each view (the README shows two of them).
SCREENSHOTS = Path(os.environ.get("EVENTFLOW_SCREENSHOTS", "build/screenshots"))
#: Chromium's flags for a machine without a display or outside network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL = "apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium"


def find() -> str | None:
    """The browser's path: $EVENTFLOW_CHROMIUM, else the first Chromium on PATH."""
    given = os.environ.get("EVENTFLOW_CHROMIUM")
    if given:
        return given
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


def install() -> str | None:
    """Installs Debian's `chromium` if it is missing and apt-get can (as root); why not, if it
    could not."""
    if find() is not None:
        return None
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return "no Chromium (as root: apt-get install chromium; or set EVENTFLOW_CHROMIUM)"
    done = subprocess.run(
        INSTALL,
        shell=True,
        capture_output=True,
        text=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    if done.returncode != 0 or find() is None:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        return f"`{INSTALL}` failed (status {done.returncode}): {last[0]}"
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    """The browser's path (see `install` for how it gets there)."""
    found = find()
    if found is None:
        why = "no Chromium (python -m tests.browser as root installs it; or EVENTFLOW_CHROMIUM)"
        if os.environ.get("EVENTFLOW_REQUIRE_BROWSER") == "1":
            pytest.fail(f"EVENTFLOW_REQUIRE_BROWSER=1 but {why}", pytrace=False)
        pytest.skip(why)
    return found


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Per module, not per session: Playwright's sync API keeps an asyncio loop running in this
    thread until it stops, and pytest-asyncio cannot run the suite's async tests beside it."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright, chromium: str) -> Iterator[Browser]:
    """Chromium with a fresh profile of its own (Playwright makes one per launch)."""
    found = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
    try:
        yield found
    finally:
        found.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    found = browser.new_context(viewport={"width": 1400, "height": 900})
    found.set_default_timeout(20_000)
    try:
        yield found
    finally:
        found.close()


def sign_in(context: BrowserContext, url: str, token: str) -> Page:
    """A page of `context` signed in to the UI at `url` with the sign-in form."""
    found = context.new_page()
    found.goto(f"{url}/ui/login")
    found.fill("#login-token", token)
    found.click("#login button")
    found.wait_for_url(f"{url}/ui/")
    return found


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def live(page: Page) -> None:
    """Waits until the page's event stream is open: what happens from now on reaches it."""
    page.wait_for_selector("body[data-live=open]")


if __name__ == "__main__":
    problem = install()
    if problem is not None:
        required = os.environ.get("EVENTFLOW_REQUIRE_BROWSER") == "1"
        print(f"tests.browser: {problem}; the web UI's tests will {'fail' if required else 'skip'}")
        sys.exit(1 if required else 0)


def act(page: Page, token: str, reason: str) -> None:
    """Answers the dialog an operator's action opens: the token and a reason."""
    page.fill("#token-input", token)
    page.fill("#reason-input", reason)
    page.click("#token-ok")
