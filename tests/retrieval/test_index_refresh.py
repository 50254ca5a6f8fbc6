"""`belofte run` and `belofte knowledge index` build the index the same way (knowledge.refresh)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.settings import Settings
from knowledge.index import KnowledgeStore
from knowledge.refresh import NoArticlesError, build_index

ARTICLES = Path(__file__).parent / "fixtures" / "articles"


def _settings(tmp_path: Path, articles: Path) -> Settings:
    return Settings(home=tmp_path / "home", knowledge_articles_dir=articles)


def test_a_bad_article_is_skipped_and_named_and_the_rest_is_indexed(tmp_path: Path) -> None:
    articles = tmp_path / "articles"
    articles.mkdir()
    shutil.copy(ARTICLES / "cancel-subscription.en.md", articles)
    (articles / "broken.en.md").write_text("no front matter here\n", "utf-8")

    outcome = build_index(_settings(tmp_path, articles))

    assert [Path(error.source).name for error in outcome.skipped] == ["broken.en.md"]
    assert outcome.articles == 1 and outcome.report.changed
    assert outcome.summary().startswith("Built generation 1: 1 articles")


def test_a_second_build_without_changes_reports_the_index_up_to_date(tmp_path: Path) -> None:
    articles = tmp_path / "articles"
    articles.mkdir()
    shutil.copy(ARTICLES / "cancel-subscription.en.md", articles)
    settings = _settings(tmp_path, articles)
    first = build_index(settings)

    again = build_index(settings)

    assert not again.report.changed
    assert again.summary() == (
        f"Index is up to date: generation {first.report.generation}, {first.report.chunks} chunks."
    )


def test_no_articles_is_an_error_not_an_empty_index(tmp_path: Path) -> None:
    empty = tmp_path / "articles"
    empty.mkdir()
    settings = _settings(tmp_path, empty)

    with pytest.raises(NoArticlesError):
        build_index(settings)
    assert KnowledgeStore(settings.knowledge_dir).generations() == []
