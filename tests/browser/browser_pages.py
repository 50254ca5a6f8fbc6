"""Helpers of the browser tests: Chromium's launch flags, accounts, contexts, logging in."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from live_stack import TEST_HOME, LiveStack
from playwright.sync_api import Browser, BrowserContext, Page

CHROMIUM = Path(os.environ.get("BELOFTE_TEST_CHROMIUM", "/usr/bin/chromium"))
#: Headless and quiet: the background-networking flags stop Chromium from calling home, which the
#: closed network of the test machines refuses (and which slows every start elsewhere).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOTS = TEST_HOME / "screenshots"
#: Generous for a shared 2-core machine; a page that works answers far sooner.
EXPECT_TIMEOUT_MS = 15_000


@dataclass(frozen=True)
class Account:
    username: str
    password: str
    role: str
    display_name: str


@dataclass(frozen=True)
class BrowserStack:
    stack: LiveStack
    accounts: dict[str, Account] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.stack.base


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


@dataclass
class PageErrors:
    """Uncaught JavaScript errors of the pages in a context (a broken script fails the test)."""

    errors: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> Page:
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))
        return page


def new_context(browser: Browser) -> BrowserContext:
    """A fresh browser profile (own cookies), Dutch, in the contact center's time zone."""
    context = browser.new_context(
        locale="nl-NL", timezone_id="Europe/Amsterdam", viewport={"width": 1366, "height": 900}
    )
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    return context


def log_in(page: Page, base: str, account: Account, next_path: str = "") -> None:
    """Log in through the real login form; waits until the login page has been left."""
    page.goto(f"{base}/login" + (f"?next={next_path}" if next_path else ""))
    page.locator("input[name=username]").fill(account.username)
    page.locator("input[name=password]").fill(account.password)
    page.locator("[data-testid=login-submit]").click()
    page.wait_for_url(lambda url: "/login" not in url)
