"""FAQ import: CSV, JSONL and Markdown; bad rows reported by line and skipped."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from knowledge.articles import load_articles
from knowledge.importer import FaqImporter

CSV = (
    "id,question,answer,language,url,audience,tags\n"
    "pay-later,Can I pay later?,Yes: request a payment plan in My Account.,en,,customer,billing\n"
    "bad id!,Broken?,Broken.,en,,,\n"
    'pay-later,Kan ik later betalen?,"Ja, vraag een betalingsregeling aan.\nIn Mijn Account.",'
    "nl,https://example.nl/betalen,customer;agent,billing;payment\n"
    "no-answer,Where is the answer?,,en,,,\n"
    "lang-fr,Bonjour?,Oui.,fr,,,\n"
    "wifi-password,Where is my wifi password?,On the sticker under the modem.,EN,,,\n"
)


def test_csv_bad_rows_are_reported_with_line_numbers(tmp_path: Path) -> None:
    source = tmp_path / "faq.csv"
    source.write_text(CSV, encoding="utf-8")
    report = FaqImporter(tmp_path / "imported").import_path(source)
    assert sorted(p.name for p in report.written) == [
        "pay-later.en.md",
        "pay-later.nl.md",
        "wifi-password.en.md",
    ]
    # Line 4's quoted answer spans two lines, so the next record starts on line 6.
    assert [e.line for e in report.errors] == [3, 6, 7]
    assert "id" in report.errors[0].message
    assert "answer" in report.errors[1].message
    assert "language" in report.errors[2].message
    articles, errors = load_articles([tmp_path / "imported"])
    assert not errors
    nl = next(a for a in articles if a.key == ("pay-later", "nl"))
    assert nl.meta.tags == ("billing", "payment")
    assert nl.meta.url == "https://example.nl/betalen"
    assert "Mijn Account" in nl.answer


def test_csv_without_required_columns(tmp_path: Path) -> None:
    source = tmp_path / "faq.csv"
    source.write_text("id,question\nx,y\n", encoding="utf-8")
    report = FaqImporter(tmp_path / "imported").import_path(source)
    assert not report.written
    assert report.errors[0].line == 1 and "answer" in report.errors[0].message


def test_jsonl_bad_rows_are_reported_with_line_numbers(tmp_path: Path) -> None:
    lines = [
        json.dumps(
            {
                "id": "ok-1",
                "question": "Q1?",
                "answer": "A1.",
                "language": "en",
                "url": None,
                "audience": ["agent"],
                "tags": ["x"],
            }
        ),
        "{not json",
        "",
        json.dumps(
            {
                "id": "ok-2",
                "question": "V2?",
                "answer": "A2.",
                "language": "nl",
                "url": "https://example.nl",
            }
        ),
        json.dumps(["a", "list"]),
        json.dumps({"id": "no-question", "answer": "A.", "language": "en", "url": None}),
        json.dumps({"id": "ok-1", "question": "Again?", "answer": "Dup.", "language": "en"}),
    ]
    source = tmp_path / "faq.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = FaqImporter(tmp_path / "imported").import_path(source)
    assert sorted(p.name for p in report.written) == ["ok-1.en.md", "ok-2.nl.md"]
    assert [e.line for e in report.errors] == [2, 5, 6, 7]
    assert "duplicate" in report.errors[3].message
    articles, _ = load_articles([tmp_path / "imported"])
    ok1 = next(a for a in articles if a.family_id == "ok-1")
    assert ok1.meta.audience == ("agent",)


def test_markdown_folder_import(tmp_path: Path, articles_dir: Path) -> None:
    (articles_dir / "broken.en.md").write_text("nothing here", encoding="utf-8")
    report = FaqImporter(tmp_path / "imported").import_path(articles_dir)
    assert len(report.written) == 10
    assert len(report.errors) == 1 and report.errors[0].line == 1


def test_cli_import(tmp_path: Path, monkeypatch: object) -> None:
    from bot.settings import get_settings
    from knowledge.cli import app

    source = tmp_path / "faq.csv"
    source.write_text(CSV, encoding="utf-8")
    env = {"BELOFTE_HOME": str(tmp_path / "home")}
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["import", str(source)], env=env)
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "Imported 3 article(s)" in result.output
    assert "faq.csv:3:" in result.output
    assert (tmp_path / "home" / "knowledge" / "imported" / "pay-later.nl.md").is_file()
