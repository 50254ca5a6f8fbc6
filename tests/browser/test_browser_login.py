"""The login page in a real browser: a visitor is sent there, a wrong password is refused."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from browser_pages import BrowserStack, PageErrors, new_context
from playwright.sync_api import Browser, Page, expect

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def test_a_visitor_is_sent_to_the_login_page_and_a_wrong_password_is_refused(
    browser: Browser, browser_stack: BrowserStack, shoot: Callable[[Page, str], Path]
) -> None:
    context = new_context(browser)
    errors = PageErrors()
    page = errors.watch(context.new_page())
    try:
        page.goto(f"{browser_stack.base}/console")
        expect(page).to_have_url(re.compile(r"/login\?next=%2Fconsole|/login\?next=/console"))
        expect(page.locator("[data-testid=login-submit]")).to_be_visible()
        expect(page.locator("html")).to_have_attribute("lang", "nl")  # Dutch by default
        shoot(page, "login")

        agent = browser_stack.accounts["agent"]
        page.locator("input[name=username]").fill(agent.username)
        page.locator("input[name=password]").fill(agent.password + "-wrong")
        page.locator("[data-testid=login-submit]").click()
        expect(page.locator("[data-testid=login-error]")).to_be_visible()
        expect(page).to_have_url(re.compile(r"/login"))
        # The refused attempt logged nobody in: the console still sends the visitor back.
        page.goto(f"{browser_stack.base}/console")
        expect(page).to_have_url(re.compile(r"/login"))
        assert errors.errors == []
    finally:
        context.close()
