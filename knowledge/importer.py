"""Import a company's own FAQ into the knowledge store.

Accepted inputs:

* CSV with a header row, columns ``id, question, answer, language, url`` (``url`` may be empty)
  and optionally ``audience`` (``customer;agent``), ``tags`` (``a;b``), ``details``, ``updated``;
* JSONL, one object a line with the same keys (``audience`` / ``tags`` may be lists);
* a folder of Markdown articles in the article format.

Every good row becomes an article file ``$BELOFTE_HOME/knowledge/imported/<id>.<lang>.md``, so
imported and shipped articles share one format, one parser and one review path (git-able,
diff-able). A bad row is reported with its line number and skipped; the other rows are kept.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from knowledge.articles import (
    FAMILY_ID_PATTERN,
    Article,
    ArticleError,
    ArticleMeta,
    Audience,
    Language,
    load_article,
    render_article,
)

REQUIRED_COLUMNS = ("id", "question", "answer", "language")


class FaqRow(BaseModel):
    """One FAQ entry of a CSV or JSONL import."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    id: str = Field(pattern=FAMILY_ID_PATTERN)
    question: str = Field(min_length=1)
    answer: str = Field(min_length=1)
    language: Language
    url: str | None = None
    audience: tuple[Audience, ...] = ("customer", "agent")
    tags: tuple[str, ...] = ()
    details: str = ""
    updated: dt.date | None = None

    @field_validator("audience", "tags", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        # CSV cells hold lists as "a;b" (or "a,b"); an empty cell means the default.
        if isinstance(value, str):
            return [p.strip() for p in value.replace(",", ";").split(";") if p.strip()]
        return [] if value is None else value

    @field_validator("language", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("url", "updated", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    def to_article(self, source: str) -> Article:
        """The article this row describes."""
        meta = ArticleMeta(
            id=self.id,
            title=self.question,
            language=self.language,
            audience=self.audience or ("customer", "agent"),
            tags=self.tags,
            updated=self.updated or dt.date.today(),
            url=self.url,
        )
        return Article(meta=meta, answer=self.answer, details=self.details, source=source)


@dataclass(frozen=True)
class RowError:
    """A skipped row: where it was and why."""

    source: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.message}"


@dataclass
class ImportReport:
    """What an import did."""

    written: list[Path] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no row was skipped."""
        return not self.errors


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'row'}: {err['msg']}" for err in exc.errors()
    )


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """(line number, row or None, error) for each CSV record; line numbers count the header."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            yield 1, None, f"header lacks column(s): {', '.join(missing)}"
            return
        start = reader.line_num + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield start, None, f"unreadable CSV: {exc}"
                return
            # A quoted cell may span lines: report the line where the record starts.
            line, start = start, reader.line_num + 1
            if None in row:
                yield line, None, "more cells than header columns"
                continue
            yield line, dict(row), None


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    with path.open(encoding="utf-8-sig") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield line_no, None, f"invalid JSON: {exc.msg}"
                continue
            if not isinstance(obj, dict):
                yield line_no, None, "a line must hold one JSON object"
                continue
            yield line_no, obj, None


def _write_atomic(path: Path, text: str) -> None:
    # A reindex running at the same moment must never read half an article.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


class FaqImporter:
    """Reads FAQ exports and writes them as article files into ``target_dir``."""

    def __init__(self, target_dir: Path) -> None:
        self.target_dir = target_dir

    def import_path(self, path: Path) -> ImportReport:
        """Import a CSV file, a JSONL file or a folder of Markdown articles."""
        if path.is_dir():
            return self._import_folder(path)
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return self._import_rows(path, _csv_rows(path))
        if suffix in (".jsonl", ".ndjson"):
            return self._import_rows(path, _jsonl_rows(path))
        if suffix == ".md":
            return self._import_markdown([path])
        raise ValueError(f"{path}: expected a .csv, .jsonl file or a folder of .md articles")

    def _import_rows(
        self, path: Path, rows: Iterator[tuple[int, dict[str, Any] | None, str | None]]
    ) -> ImportReport:
        report = ImportReport()
        seen: dict[tuple[str, str], int] = {}
        good: list[Article] = []
        for line, row, error in rows:
            if row is None:
                report.errors.append(RowError(str(path), line, error or "unreadable row"))
                continue
            try:
                faq = FaqRow.model_validate(row)
            except ValidationError as exc:
                report.errors.append(RowError(str(path), line, _describe(exc)))
                continue
            key = (faq.id, faq.language)
            if key in seen:
                report.errors.append(
                    RowError(
                        str(path),
                        line,
                        f"duplicate id {faq.id!r} ({faq.language}) first seen on line {seen[key]}",
                    )
                )
                continue
            seen[key] = line
            good.append(faq.to_article(f"{path}:{line}"))
        for article in good:
            report.written.append(self._write(article))
        return report

    def _import_folder(self, folder: Path) -> ImportReport:
        return self._import_markdown(sorted(folder.glob("*.md")))

    def _import_markdown(self, paths: list[Path]) -> ImportReport:
        report = ImportReport()
        for path in paths:
            try:
                article = load_article(path)
            except ArticleError as exc:
                report.errors.append(RowError(exc.source, exc.line or 1, exc.message))
                continue
            report.written.append(self._write(article))
        return report

    def _write(self, article: Article) -> Path:
        target = self.target_dir / article.file_name
        _write_atomic(target, render_article(article))
        return target
