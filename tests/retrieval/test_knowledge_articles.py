"""Article format: front matter, sections, errors with line numbers, chunking."""

from __future__ import annotations

from pathlib import Path

import pytest

from knowledge.articles import (
    ArticleError,
    chunk_article,
    load_article,
    load_articles,
    parse_article,
    render_article,
)

GOOD = """---
id: router-restart
title: Restarting your router
language: en
audience: [customer, agent]
tags: [internet]
updated: 2026-10-01
url: https://example.com/router
---
## Answer

Unplug it, wait thirty seconds, plug it back in.

## Details

First paragraph.

Second paragraph.
"""


def test_parse_good_article() -> None:
    article = parse_article(GOOD)
    assert article.family_id == "router-restart"
    assert article.language == "en"
    assert article.meta.audience == ("customer", "agent")
    assert article.meta.url == "https://example.com/router"
    assert article.answer.startswith("Unplug it")
    assert "Second paragraph." in article.details


def test_render_round_trips() -> None:
    article = parse_article(GOOD)
    again = parse_article(render_article(article))
    assert again.meta == article.meta
    assert again.answer == article.answer
    assert again.details == article.details


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("## Answer\nHi\n", "missing YAML front matter", 1),
        ("---\nid: x\ntitle: [unclosed\n---\n## Answer\nHi\n", "not valid YAML", None),
        (GOOD.replace("language: en", "language: fr"), "language", 2),
        (GOOD.replace("audience: [customer, agent]", "audience: [robots]"), "audience", 2),
        (GOOD.replace("updated: 2026-10-01\n", ""), "updated", 2),
        (GOOD.replace("id: router-restart", "id: ../etc/passwd"), "id", 2),
        (GOOD.split("## Answer")[0] + "## Details\nOnly details.\n", "## Answer", 10),
    ],
)
def test_bad_articles_are_reported(text: str, message: str, line: int | None) -> None:
    with pytest.raises(ArticleError) as info:
        parse_article(text, source="x.md")
    assert message in str(info.value)
    assert info.value.source == "x.md"
    if line is not None:
        assert info.value.line == line
    else:
        assert info.value.line is not None and info.value.line >= 2


def test_file_name_must_match_front_matter(tmp_path: Path) -> None:
    path = tmp_path / "other-name.en.md"
    path.write_text(GOOD, encoding="utf-8")
    with pytest.raises(ArticleError, match=r"router-restart\.en\.md"):
        load_article(path)


def test_load_articles_skips_bad_files(tmp_path: Path) -> None:
    (tmp_path / "router-restart.en.md").write_text(GOOD, encoding="utf-8")
    (tmp_path / "broken.en.md").write_text("no front matter", encoding="utf-8")
    articles, errors = load_articles([tmp_path])
    assert [a.family_id for a in articles] == ["router-restart"]
    assert len(errors) == 1 and "broken.en.md" in str(errors[0])


def test_chunks_carry_title_and_stable_hashes() -> None:
    article = parse_article(GOOD)
    chunks = chunk_article(article)
    assert [c.section for c in chunks] == ["answer", "details"]
    assert all(c.text.startswith("Restarting your router") for c in chunks)
    assert chunks[0].chunk_id == "router-restart.en.0"
    assert chunk_article(article)[0].content_hash == chunks[0].content_hash
    long = parse_article(GOOD.replace("First paragraph.", "word " * 300))
    assert len(chunk_article(long, max_chars=800)) == 3
