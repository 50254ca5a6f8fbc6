"""The CX inbox: who may see it, states with their history, comments, filters, links, CSV."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from cx_helpers import make_app
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from web_login import login

from bot.cx.routes import safe_cell
from bot.feedback.service import record_feedback
from bot.settings import Settings
from bot.storage.models import (
    Conversation,
    Feedback,
    FeedbackForward,
    FeedbackStateChange,
    Outage,
)

NOW = datetime.now(UTC).replace(microsecond=0)
CONVERSATION = "sms:+31612345678"
TRICKY = '=HYPERLINK("http://evil.example","klik"), met "quotes"\nen een tweede regel'


@pytest.fixture
def settings(api_settings: Settings) -> Settings:
    return api_settings.model_copy(update={"cx_webhook_url": SecretStr("http://127.0.0.1:9/h")})


@pytest.fixture
def seeded(session: Session) -> dict[str, int]:
    """Three observations: named with links, anonymous, and a customer's."""
    session.add(Conversation(id=CONVERSATION, channel="sms", language="nl"))
    outage = Outage(
        reference="STO-26-00042",
        service="internet",
        cause="fiber_cut",
        region_name="Utrecht",
        country="NL",
        started_at=NOW,
        customers_affected=10,
    )
    session.add(outage)
    session.flush()
    named = record_feedback(
        session,
        text="De beloofde tijd voor Utrecht was te krap",
        channel="web",
        source="agent",
        language="nl",
        now=NOW - timedelta(hours=3),
        author="Anna de Vries",
        category="promise",
        conversation_id=CONVERSATION,
        outage_id=outage.id,
        forward=True,
    )
    anonymous = record_feedback(
        session,
        text=TRICKY,
        channel="web",
        source="agent",
        language="nl",
        now=NOW - timedelta(hours=2),
        category="process",
        anonymous=True,
        forward=True,
    )
    customer = record_feedback(
        session,
        text="-1 voor de wachttijd",
        channel="sms",
        source="customer",
        language="nl",
        now=NOW - timedelta(hours=1),
        conversation_id=CONVERSATION,
    )
    session.commit()
    return {"named": named.id, "anonymous": anonymous.id, "customer": customer.id}


@pytest.fixture
def client(settings: Settings, db_engine: Engine, seeded: dict[str, int]) -> Iterator[TestClient]:
    # No lifespan: the forwarder must not post to the (unreachable) webhook during these tests.
    yield TestClient(make_app(settings, db_engine))


def _row(html: str, feedback_id: int) -> str:
    match = re.search(
        rf'<li class="cx-observation"[^>]*data-id="{feedback_id}".*?</li>\s*'
        r'(?=<li class="cx-obs|</ol>)',
        html,
        re.S,
    )
    assert match, f"no row for observation {feedback_id}"
    return match.group(0)


def test_only_cx_and_admin_open_the_inbox(client: TestClient, session: Session) -> None:
    visitor = client.get("/cx", follow_redirects=False)
    assert visitor.status_code == 303
    assert visitor.headers["location"].startswith("/login?next=")
    login(client, session, "agent")
    forbidden = client.get("/cx")
    assert forbidden.status_code == 403
    assert 'data-testid="forbidden"' in forbidden.text
    assert client.get("/api/v1/cx/observations").status_code == 403
    assert client.get("/api/v1/cx/observations.csv").status_code == 403
    for role in ("cx", "admin"):
        login(client, session, role)
        assert client.get("/cx").status_code == 200, role
        assert client.get("/api/v1/cx/observations").status_code == 200, role


def test_the_page_shows_each_observation_with_its_author_links_and_dialog(
    client: TestClient, session: Session, seeded: dict[str, int]
) -> None:
    login(client, session, "cx")
    html = client.get("/cx").text
    named = _row(html, seeded["named"])
    assert 'data-state="new"' in named
    assert re.search(r'data-testid="observation-author">Anna de Vries<', named)
    assert re.search(r'data-testid="observation-category"[^>]*>Belofte \(hersteltijd\)<', named)
    assert 'href="/console?conversation=sms%3A%2B31612345678"' in named
    assert "STO-26-00042" in named
    anonymous = _row(html, seeded["anonymous"])
    assert re.search(r'data-testid="observation-author">anoniem<', anonymous)
    assert "Anna" not in anonymous
    # Escaped, not executed or broken out of.
    assert "=HYPERLINK(&#34;http://evil.example&#34;" in anonymous
    customer = _row(html, seeded["customer"])
    assert re.search(r'data-testid="observation-author">klant via sms<', customer)
    for testid in (
        "observation-text",
        "observation-state-select",
        "observation-comment-input",
        "observation-comment-add",
    ):
        assert f'data-testid="{testid}"' in named, testid
    for testid in ("cx-export", "cx-themes", "feedback-text", "feedback-category"):
        assert f'data-testid="{testid}"' in html, testid
    for value in ("process", "product", "knowledge_base", "promise", "tooling", "other"):
        assert f'<option value="{value}"' in html


def test_the_anonymous_word_follows_the_language(client: TestClient, session: Session) -> None:
    login(client, session, "cx", username="cx-en", language="en")
    html = client.get("/cx").text
    assert re.search(r'data-testid="observation-author">anonymous<', html)


def test_state_changes_are_recorded_with_who_when_from_and_to(
    client: TestClient, session: Session, seeded: dict[str, int]
) -> None:
    csrf = login(client, session, "cx", display_name="Chris CX")
    headers = {"X-CSRF-Token": csrf}
    url = f"/api/v1/cx/observations/{seeded['named']}"
    first = client.patch(url, json={"state": "triaged"}, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["state"] == "triaged"
    assert client.patch(url, json={"state": "triaged"}, headers=headers).status_code == 200
    second = client.patch(url, json={"state": "actioned"}, headers=headers).json()
    assert [(c["from"], c["to"], c["by"]) for c in second["changes"]] == [
        ("new", "triaged", "Chris CX"),
        ("triaged", "actioned", "Chris CX"),
    ]
    session.expire_all()
    changes = session.scalars(select(FeedbackStateChange)).all()
    assert len(changes) == 2  # the repeated "triaged" was no change
    assert all(c.user_id is not None and c.changed_at is not None for c in changes)
    assert session.get(Feedback, seeded["named"]).state == "actioned"  # type: ignore[union-attr]
    page = client.get("/cx").text
    assert 'data-state="actioned"' in _row(page, seeded["named"])


def test_bad_state_changes_are_refused(
    client: TestClient, session: Session, seeded: dict[str, int]
) -> None:
    csrf = login(client, session, "cx")
    url = f"/api/v1/cx/observations/{seeded['named']}"
    assert (
        client.patch(url, json={"state": "done"}, headers={"X-CSRF-Token": csrf}).status_code == 422
    )
    assert client.patch(url, json={"state": "triaged"}).status_code == 403  # no CSRF token
    missing = client.patch(
        "/api/v1/cx/observations/999999", json={"state": "triaged"}, headers={"X-CSRF-Token": csrf}
    )
    assert missing.status_code == 404
    assert "999999" in missing.json()["detail"]
    session.expire_all()
    assert session.get(Feedback, seeded["named"]).state == "new"  # type: ignore[union-attr]


def test_comments(client: TestClient, session: Session, seeded: dict[str, int]) -> None:
    csrf = login(client, session, "cx", display_name="Chris CX")
    headers = {"X-CSRF-Token": csrf}
    url = f"/api/v1/cx/observations/{seeded['anonymous']}/comments"
    added = client.post(url, json={"text": "Besproken met het procesteam"}, headers=headers)
    assert added.status_code == 201, added.text
    assert added.json()["author"] == "Chris CX"
    assert client.post(url, json={"text": "  "}, headers=headers).status_code == 422
    assert (
        client.post(
            "/api/v1/cx/observations/999999/comments", json={"text": "x"}, headers=headers
        ).status_code
        == 404
    )
    (observation,) = [
        o
        for o in client.get("/api/v1/cx/observations").json()["observations"]
        if o["id"] == seeded["anonymous"]
    ]
    assert [c["text"] for c in observation["comments"]] == ["Besproken met het procesteam"]
    assert "Besproken met het procesteam" in _row(client.get("/cx").text, seeded["anonymous"])


def test_filters_by_state_and_category(
    client: TestClient, session: Session, seeded: dict[str, int]
) -> None:
    csrf = login(client, session, "cx")
    client.patch(
        f"/api/v1/cx/observations/{seeded['anonymous']}",
        json={"state": "dismissed"},
        headers={"X-CSRF-Token": csrf},
    )

    def ids(query: str) -> set[int]:
        answer = client.get(f"/api/v1/cx/observations{query}")
        assert answer.status_code == 200, answer.text
        return {o["id"] for o in answer.json()["observations"]}

    assert ids("?state=dismissed") == {seeded["anonymous"]}
    assert ids("?state=new") == {seeded["named"], seeded["customer"]}
    assert ids("?category=promise") == {seeded["named"]}
    assert ids("?category=promise&category=process") == {seeded["named"], seeded["anonymous"]}
    assert ids("?state=new&category=process") == set()
    assert client.get("/api/v1/cx/observations?state=bogus").status_code == 422
    page = client.get("/cx?state=dismissed").text
    assert f'data-id="{seeded["anonymous"]}"' in page
    assert f'data-id="{seeded["named"]}"' not in page
    assert 'href="/api/v1/cx/observations.csv?state=dismissed"' in page


def test_csv_export_quotes_properly_and_defuses_formulas(
    client: TestClient, session: Session, seeded: dict[str, int]
) -> None:
    login(client, session, "cx")
    answer = client.get("/api/v1/cx/observations.csv")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    text = answer.content.decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    by_id = {int(r["id"]): r for r in rows}
    assert set(by_id) == set(seeded.values())
    anonymous = by_id[seeded["anonymous"]]
    # The formula gets a leading quote; commas, quotes and the newline survive csv quoting.
    assert anonymous["text"] == "'" + TRICKY
    assert anonymous["author"] == "" and anonymous["anonymous"] == "yes"
    assert by_id[seeded["customer"]]["text"] == "'-1 voor de wachttijd"
    named = by_id[seeded["named"]]
    assert named["author"] == "Anna de Vries"
    assert named["conversation_id"] == CONVERSATION  # "+" is not at the start: unchanged
    assert named["outage_reference"] == "STO-26-00042"
    assert named["forward_status"] == "pending"
    filtered = client.get("/api/v1/cx/observations.csv?category=promise").content.decode(
        "utf-8-sig"
    )
    assert [int(r["id"]) for r in csv.DictReader(io.StringIO(filtered))] == [seeded["named"]]


@pytest.mark.parametrize(
    ("cell", "safe"),
    [
        ("=1+1", "'=1+1"),
        ("+31612345678", "'+31612345678"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("gewoon", "gewoon"),
        ("a=b", "a=b"),
        (None, ""),
        (12, "12"),
    ],
)
def test_safe_cell(cell: object, safe: str) -> None:
    assert safe_cell(cell) == safe


def test_failed_forwards_are_counted_and_can_be_retried(
    client: TestClient, session: Session, seeded: dict[str, int]
) -> None:
    forward = session.scalars(
        select(FeedbackForward).where(FeedbackForward.feedback_id == seeded["named"])
    ).one()
    forward.status = "failed"
    forward.attempts = 8
    session.commit()
    csrf = login(client, session, "cx")
    counts = client.get("/api/v1/cx/forwards").json()
    assert counts == {"configured": True, "pending": 1, "sent": 0, "failed": 1}
    page = client.get("/cx").text
    assert 'data-failed="1"' in page and 'data-testid="cx-forwards-retry"' in page
    retried = client.post("/api/v1/cx/forwards/retry", headers={"X-CSRF-Token": csrf})
    assert retried.json() == {"retried": 1}
    session.expire_all()
    forward = session.get(FeedbackForward, forward.id)  # type: ignore[assignment]
    assert (forward.status, forward.attempts) == ("pending", 0)
