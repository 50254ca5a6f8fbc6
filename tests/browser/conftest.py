"""Fixtures of the browser tests: Debian's Chromium driven by Playwright, against the live stack.

``browser_stack`` (session) Rasa and the service on loopback over a fresh PostgreSQL database with
                  the demo data, the knowledge index and one user per role, created with
                  ``belofte users add --password-stdin``.
``browser``       (session) Chromium (``BELOFTE_TEST_CHROMIUM``, default ``/usr/bin/chromium``);
                  Playwright's own browser download needs the internet, so it is never used.
                  Missing: the tests skip, except in CI (``CI`` set), where they fail.
``shoot``         saves a full-page screenshot to ``$BELOFTE_TEST_HOME/screenshots/<name>.png``.

Pages are checked through the data-testid attributes the page packages promise (see the
templates), with Playwright's auto-waiting ``expect``: no sleeps.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from browser_pages import (
    CHROMIUM,
    CHROMIUM_ARGS,
    EXPECT_TIMEOUT_MS,
    SCREENSHOTS,
    Account,
    BrowserStack,
    in_ci,
)
from live_stack import fresh_postgres_database, live_stack
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright


@pytest.fixture(scope="session")
def browser_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserStack]:
    """The service with Rasa over a seeded PostgreSQL database, and an agent, supervisor and CX."""
    if os.environ.get("BELOFTE_TEST_SKIP_POSTGRES", "").strip().lower() in {"1", "true", "yes"}:
        pytest.skip("BELOFTE_TEST_SKIP_POSTGRES=1: the browser test runs on PostgreSQL")
    home = tmp_path_factory.mktemp("belofte-browser-home")
    with (
        fresh_postgres_database() as database_url,
        live_stack(home, database_url=database_url, knowledge=True) as stack,
    ):
        accounts = {
            role: Account(
                username=f"{role}-{uuid.uuid4().hex[:6]}",
                password=f"pw-{uuid.uuid4().hex}",
                role=role,
                display_name=name,
            )
            for role, name in (
                ("agent", "Anouk Agent"),
                ("supervisor", "Sem Supervisor"),
                ("cx", "Cas Klantbeleving"),
            )
        }
        for account in accounts.values():
            stack.add_user(account.username, account.password, account.role, account.display_name)
        yield BrowserStack(stack=stack, accounts=accounts)


# Module scope, not session: while Playwright's sync API is open it holds an event loop on the
# main thread, and every later test that calls asyncio.run() would fail.
@pytest.fixture(scope="module")
def playwright_instance() -> Iterator[Playwright]:
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless."""
    if not os.access(CHROMIUM, os.X_OK):
        message = (
            f"{CHROMIUM} not found: the browser tests drive Debian's Chromium "
            "(`make test` installs the package chromium with apt-get)"
        )
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    browser = playwright_instance.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def shoot() -> Callable[[Page, str], Path]:
    """``shoot(page, name)``: a full-page screenshot in ``$BELOFTE_TEST_HOME/screenshots``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def _shoot(page: Page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        # From the top: scrolled (e.g. to a row after a click), a full-page shot draws the sticky
        # header across the middle of the page.
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(path), full_page=True)
        return path

    return _shoot
