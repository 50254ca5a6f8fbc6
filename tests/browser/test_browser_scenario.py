"""Issue 6 in a real browser: agent, supervisor and CX working on one outage.

The steps are separate tests in one module (pytest runs them in file order) so a report shows
which part works; they share the people's browser contexts through ``Scenario``. A step that needs
an earlier one fails at once, naming it, when that one did not get through.

1. The agent asks about the Utrecht fibre cut of the demo data (postcode 3511, an outage that is
   always open), sees the reply, suggestion cards and the promise card, and marks a card used.
2. The agent sends feedback to CX twice: named (about this conversation) and anonymous.
3. A supervisor overrides that outage's promise; the agent's open console shows the new time.
4. CX sees both observations, the anonymous one without any name, and triages one.
5. An agent gets the 403 page on /supervisor.
Each page is saved as a screenshot in ``$BELOFTE_TEST_HOME/screenshots``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from browser_pages import BrowserStack, PageErrors, log_in, new_context
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect
from sqlalchemy import select

from bot.storage.db import make_engine, make_sessionmaker
from bot.storage.models import Outage, OutageArea

pytestmark = [pytest.mark.integration, pytest.mark.browser]

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
#: A customer's question naming the postcode and service of the demo's Utrecht fibre cut.
QUESTION = "Is er een storing in 3511 AB? Mijn internet doet het niet."
#: The first reply waits for Rasa and the retriever to warm up; later ones are quick.
REPLY_TIMEOUT_MS = 60_000
#: The console refreshes its promise card by polling; an override shows within this time.
PROMISE_REFRESH_TIMEOUT_MS = 45_000


@dataclass
class Scenario:
    """What the steps hand each other."""

    stack: BrowserStack
    browser: Browser
    reference: str
    contexts: list[BrowserContext] = field(default_factory=list)
    errors: PageErrors = field(default_factory=PageErrors)
    done: set[int] = field(default_factory=set)
    agent_page: Page | None = None
    #: (named text, anonymous text) as sent in step 2.
    feedback: tuple[str, str] | None = None

    def needs(self, *steps: int) -> None:
        missing = [step for step in steps if step not in self.done]
        if missing:
            pytest.fail(f"step {missing[0]} did not get through; this step builds on it")

    def page_of(self, role: str, path: str) -> Page:
        """A fresh context (own cookies) logged in as ``role``, showing ``path``."""
        context = new_context(self.browser)
        self.contexts.append(context)
        page = self.errors.watch(context.new_page())
        log_in(page, self.stack.base, self.stack.accounts[role], next_path=path)
        expect(page).to_have_url(re.compile(re.escape(path) + r"(\?|#|$)"))
        return page

    def agent_console(self) -> Page:
        """The agent's console, opened by the first step that needs it and kept open."""
        if self.agent_page is None:
            self.agent_page = self.page_of("agent", "/console")
        return self.agent_page

    def no_script_errors(self) -> None:
        assert self.errors.errors == [], f"JavaScript errors: {self.errors.errors}"


def _open_outage_reference(stack: BrowserStack, service: str, prefix: str) -> str:
    """The reference of the open outage of ``service`` in postcode area ``prefix``."""
    engine = make_engine(stack.stack.settings.sqlalchemy_url)
    try:
        with make_sessionmaker(engine)() as session:
            return session.scalars(
                select(Outage.reference)
                .join(OutageArea, OutageArea.outage_id == Outage.id)
                .where(
                    Outage.service == service,
                    Outage.resolved_at.is_(None),
                    OutageArea.postcode_prefix == prefix,
                )
            ).one()
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def scenario(browser: Browser, browser_stack: BrowserStack) -> Iterator[Scenario]:
    state = Scenario(
        stack=browser_stack,
        browser=browser,
        reference=_open_outage_reference(browser_stack, "internet", "3511"),
    )
    yield state
    for context in state.contexts:
        context.close()


def _override_time() -> datetime:
    """A deadline the engine would not suggest: 2 h 17 min from now, to the minute."""
    return (datetime.now(UTC) + timedelta(hours=2, minutes=17)).replace(second=0, microsecond=0)


def _clock_pattern(moment: datetime) -> re.Pattern[str]:
    """The promise time as the pages show it: "HH:MM", with the date before it if not today."""
    local = moment.astimezone(AMSTERDAM)
    return re.compile(rf"^\s*(\S+\s+)?{local:%H:%M}\s*$")


def _feedback(
    page: Page, text: str, category: str, *, about_conversation: bool, anonymous: bool
) -> None:
    page.locator("[data-testid=feedback-open]").click()
    status = page.locator("[data-testid=feedback-status]")
    # A fresh dialog: a "sent" left over from the previous feedback would prove nothing.
    expect(status).not_to_have_attribute("data-state", "sent")
    page.locator("[data-testid=feedback-text]").fill(text)
    page.locator("[data-testid=feedback-category]").select_option(category)
    conversation = page.locator("[data-testid=feedback-conversation]")
    if about_conversation:
        conversation.check()
    elif conversation.is_visible():
        conversation.uncheck()
    anonymous_box = page.locator("[data-testid=feedback-anonymous]")
    if anonymous:
        anonymous_box.check()
    else:
        anonymous_box.uncheck()
    page.locator("[data-testid=feedback-send]").click()
    expect(status).to_have_attribute("data-state", "sent")
    # Done: the agent closes the dialog (Escape closes a modal dialog) and goes on working.
    page.keyboard.press("Escape")
    expect(page.locator("[data-testid=feedback-text]")).to_be_hidden()


def test_1_agent_asks_about_an_outage_and_uses_a_suggestion(
    scenario: Scenario, shoot: Callable[[Page, str], Path]
) -> None:
    page = scenario.agent_console()
    expect(page.locator("[data-testid=nav]")).to_be_visible()

    page.locator("[data-testid=console-input]").fill(QUESTION)
    page.locator("[data-testid=console-send]").click()
    # The reply (several messages: the outage, then an offer to be told when it is fixed) is
    # about the Utrecht outage, whose region the demo names.
    replies = page.locator("[data-testid=bot-reply]")
    expect(replies.first).to_be_visible(timeout=REPLY_TIMEOUT_MS)
    expect(replies.filter(has_text="Utrecht").first).to_be_visible()

    cards = page.locator("[data-testid=suggestions] [data-testid=suggestion-card]")
    expect(cards.first).to_be_visible()
    card = cards.first
    for button in ("suggestion-copy", "suggestion-used", "suggestion-up", "suggestion-down"):
        expect(card.locator(f"[data-testid={button}]")).to_be_visible()
    card.locator("[data-testid=suggestion-used]").click()
    expect(card).to_have_attribute("data-used", "true")

    promise = page.locator("[data-testid=promise-card]")
    expect(promise).to_be_visible()
    expect(promise.locator("[data-testid=promise-time]")).to_have_text(
        re.compile(r"^\s*(\S+\s+)?\d{2}:\d{2}\s*$")
    )
    expect(promise.locator("[data-testid=promise-status]")).to_have_attribute(
        "data-status", re.compile(r"^(suggested|approved)$")
    )
    expect(promise.locator("[data-testid=promise-evidence]")).not_to_be_empty()
    expect(promise.locator("[data-testid=promise-customer-text]")).not_to_be_empty()
    shoot(page, "console")
    scenario.no_script_errors()
    scenario.done.add(1)


def test_2_agent_sends_feedback_named_and_anonymous(scenario: Scenario) -> None:
    page = scenario.agent_console()
    marker = uuid.uuid4().hex[:8]
    named = f"Klanten in Utrecht vragen vaak naar een vergoeding ({marker}-named)."
    anonymous = f"De storingsmelding op de website loopt achter ({marker}-anon)."
    # "About this conversation" needs the conversation of step 1.
    _feedback(page, named, "process", about_conversation=1 in scenario.done, anonymous=False)
    _feedback(page, anonymous, "tooling", about_conversation=False, anonymous=True)
    scenario.feedback = (named, anonymous)
    scenario.no_script_errors()
    scenario.done.add(2)


def test_3_supervisor_overrides_the_promise_and_the_console_follows(
    scenario: Scenario, shoot: Callable[[Page, str], Path]
) -> None:
    page = scenario.page_of("supervisor", "/supervisor")
    row = page.locator(f'[data-testid=outage-row][data-reference="{scenario.reference}"]')
    expect(row).to_be_visible()
    deadline = _override_time()
    reason = "Monteur ter plaatse meldt extra graafwerk"
    row.locator("[data-testid=override-time]").fill(
        deadline.astimezone(AMSTERDAM).strftime("%Y-%m-%dT%H:%M")
    )
    row.locator("[data-testid=override-reason]").fill(reason)
    row.locator("[data-testid=override-submit]").click()
    # The page shows the stored promise (after its reload), not what was typed.
    expect(row.locator("[data-testid=promise-status]")).to_have_attribute(
        "data-status", "overridden"
    )
    expect(row.locator("[data-testid=promise-time]")).to_have_text(_clock_pattern(deadline))
    expect(row).to_contain_text(reason)
    shoot(page, "supervisor")

    scenario.needs(1)  # the console showing the promise before the override
    agent = scenario.agent_console()
    card = agent.locator("[data-testid=promise-card]")
    expect(card.locator("[data-testid=promise-status]")).to_have_attribute(
        "data-status", "overridden", timeout=PROMISE_REFRESH_TIMEOUT_MS
    )
    expect(card.locator("[data-testid=promise-time]")).to_have_text(_clock_pattern(deadline))
    shoot(agent, "console-overridden")
    scenario.no_script_errors()
    scenario.done.add(3)


def _observation(page: Page, text: str) -> Locator:
    return page.locator("[data-testid=observation-row]").filter(
        has=page.locator("[data-testid=observation-text]", has_text=text)
    )


def test_4_cx_sees_both_observations_and_triages_one(
    scenario: Scenario, shoot: Callable[[Page, str], Path]
) -> None:
    scenario.needs(2)
    assert scenario.feedback is not None
    named_text, anonymous_text = scenario.feedback
    agent = scenario.stack.accounts["agent"]
    page = scenario.page_of("cx", "/cx")

    named = _observation(page, named_text)
    expect(named).to_have_count(1)
    expect(named.locator("[data-testid=observation-author]")).to_have_text(agent.display_name)
    if 1 in scenario.done:  # sent "about this conversation": CX can open it and its outage
        expect(named.locator("[data-testid=observation-conversation]")).to_be_visible()
        expect(named.locator("[data-testid=observation-outage]")).to_contain_text(
            scenario.reference
        )

    anonymous = _observation(page, anonymous_text)
    expect(anonymous).to_have_count(1)
    expect(anonymous.locator("[data-testid=observation-author]")).to_have_text(
        re.compile(r"^\s*anoniem\s*$", re.IGNORECASE)
    )
    for trace in (agent.display_name, agent.username):
        expect(anonymous).not_to_contain_text(trace)
    shoot(page, "cx")

    named.locator("[data-testid=observation-state-select]").select_option("triaged")
    expect(named).to_have_attribute("data-state", "triaged")
    page.reload()
    expect(_observation(page, named_text)).to_have_attribute("data-state", "triaged")
    scenario.no_script_errors()
    scenario.done.add(4)


def test_5_an_agent_cannot_open_the_supervisor_page(
    scenario: Scenario, shoot: Callable[[Page, str], Path]
) -> None:
    context = new_context(scenario.browser)
    scenario.contexts.append(context)
    page = scenario.errors.watch(context.new_page())
    log_in(page, scenario.stack.base, scenario.stack.accounts["agent"], next_path="/console")
    response = page.goto(f"{scenario.stack.base}/supervisor")
    assert response is not None and response.status == 403
    expect(page.locator("[data-testid=forbidden]")).to_be_visible()
    expect(page.locator("[data-testid=outage-row]")).to_have_count(0)
    shoot(page, "forbidden")
    scenario.no_script_errors()
