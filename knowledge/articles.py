"""Knowledge articles: parsing, validation, rendering and chunking.

An article is one Markdown file ``<family-id>.<lang>.md``::

    ---
    id: invoice-explained          # family id, shared by the .nl.md / .en.md pair
    title: Your invoice explained
    language: en
    audience: [customer, agent]
    tags: [billing]
    updated: 2026-11-01
    url: https://example.com/help/invoice   # optional
    ---
    ## Answer
    Sentences an agent can say or a customer can be sent.

    ## Details
    Background for the agent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

Language = Literal["nl", "en"]
Audience = Literal["customer", "agent"]
LANGUAGES: tuple[Language, ...] = ("nl", "en")

#: Family ids become file names, so they are restricted to a safe alphabet.
FAMILY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_HEADING = re.compile(r"^##[ \t]+(.+?)[ \t]*$", re.MULTILINE)


class ArticleError(ValueError):
    """An article (or FAQ row) that cannot be used; ``line`` is 1-based where known."""

    def __init__(self, source: str, message: str, line: int | None = None) -> None:
        self.source = source
        self.line = line
        self.message = message
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {message}")


class ArticleMeta(BaseModel):
    """The front matter of an article, validated."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(pattern=FAMILY_ID_PATTERN)
    title: str = Field(min_length=1)
    language: Language
    audience: tuple[Audience, ...] = Field(min_length=1)
    tags: tuple[str, ...] = ()
    updated: dt.date
    url: str | None = None

    @field_validator("audience", "tags", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        # Authors write `audience: customer` as often as `audience: [customer]`.
        if isinstance(value, str):
            return [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]
        return value

    @field_validator("title")
    @classmethod
    def _strip(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()


@dataclass(frozen=True)
class Article:
    """One article in one language."""

    meta: ArticleMeta
    answer: str
    details: str = ""
    source: str = ""

    @property
    def family_id(self) -> str:
        """Id shared by the translations of this article."""
        return self.meta.id

    @property
    def language(self) -> Language:
        """Language of this article."""
        return self.meta.language

    @property
    def key(self) -> tuple[str, Language]:
        """(family id, language): unique within a knowledge store."""
        return (self.meta.id, self.meta.language)

    @property
    def file_name(self) -> str:
        """Canonical file name ``<family-id>.<lang>.md``."""
        return f"{self.meta.id}.{self.meta.language}.md"


@dataclass(frozen=True)
class Chunk:
    """A passage of an article that is embedded and searched on its own."""

    chunk_id: str
    family_id: str
    language: Language
    title: str
    audience: tuple[Audience, ...]
    tags: tuple[str, ...]
    section: Literal["answer", "details"]
    text: str
    answer: str
    url: str | None = None
    content_hash: str = field(default="")

    def to_record(self) -> dict[str, object]:
        """JSON-serialisable form (one line of ``chunks.jsonl``)."""
        return {
            "chunk_id": self.chunk_id,
            "family_id": self.family_id,
            "language": self.language,
            "title": self.title,
            "audience": list(self.audience),
            "tags": list(self.tags),
            "section": self.section,
            "text": self.text,
            "answer": self.answer,
            "url": self.url,
            "content_hash": self.content_hash,
        }

    @classmethod
    def from_record(cls, record: dict[str, object]) -> Chunk:
        """Inverse of :meth:`to_record`."""
        return cls(
            chunk_id=str(record["chunk_id"]),
            family_id=str(record["family_id"]),
            language=cast(Language, record["language"]),
            title=str(record["title"]),
            audience=tuple(cast("list[Audience]", record["audience"])),
            tags=tuple(cast("list[str]", record["tags"])),
            section=cast(Literal["answer", "details"], record["section"]),
            text=str(record["text"]),
            answer=str(record["answer"]),
            url=cast("str | None", record.get("url")) or None,
            content_hash=str(record["content_hash"]),
        )


def _format_validation(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "front matter"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def parse_article(text: str, *, source: str = "<string>") -> Article:
    """Parse one article; raise :class:`ArticleError` naming the problem and its line."""
    match = _FRONT_MATTER.match(text)
    if match is None:
        raise ArticleError(source, "missing YAML front matter (--- ... --- at the top)", line=1)
    try:
        raw = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        # +2: the mark is 0-based and counts from the line after the opening '---'.
        line = mark.line + 2 if mark is not None else 1
        raise ArticleError(source, f"front matter is not valid YAML: {exc}", line=line) from exc
    if not isinstance(raw, dict):
        raise ArticleError(source, "front matter must be a mapping", line=2)
    try:
        meta = ArticleMeta.model_validate(raw)
    except ValidationError as exc:
        raise ArticleError(source, _format_validation(exc), line=2) from exc

    body = text[match.end() :]
    body_line = text[: match.end()].count("\n") + 1
    sections: dict[str, str] = {}
    headings = list(_HEADING.finditer(body))
    for i, heading in enumerate(headings):
        end = headings[i + 1].start() if i + 1 < len(headings) else len(body)
        sections[heading.group(1).strip().lower()] = body[heading.end() : end].strip()
    answer = sections.get("answer", "")
    if not answer:
        raise ArticleError(source, "body needs a non-empty '## Answer' section", line=body_line)
    return Article(meta=meta, answer=answer, details=sections.get("details", ""), source=source)


def load_article(path: Path) -> Article:
    """Parse an article file and check that its name matches its front matter."""
    article = parse_article(path.read_text(encoding="utf-8"), source=str(path))
    if path.name != article.file_name:
        raise ArticleError(
            str(path), f"file name should be {article.file_name} (from id and language)", line=1
        )
    return article


def load_articles(folders: Iterable[Path]) -> tuple[list[Article], list[ArticleError]]:
    """Load every ``*.md`` article in ``folders`` (later folders override earlier ones).

    Bad files are returned as errors rather than raised, so one broken article never takes
    the whole knowledge base down.
    """
    found: dict[tuple[str, Language], Article] = {}
    errors: list[ArticleError] = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.md")):
            if path.name.lower() == "readme.md":
                continue
            try:
                article = load_article(path)
            except ArticleError as exc:
                errors.append(exc)
                continue
            found[article.key] = article
    return sorted(found.values(), key=lambda a: a.key), errors


def render_article(article: Article) -> str:
    """Markdown text of ``article`` (round-trips through :func:`parse_article`)."""
    meta = article.meta.model_dump(mode="json", exclude_none=True)
    meta["audience"] = list(article.meta.audience)
    meta["tags"] = list(article.meta.tags)
    front = yaml.safe_dump(meta, allow_unicode=True, sort_keys=False).strip()
    parts = [f"---\n{front}\n---\n", f"## Answer\n\n{article.answer.strip()}\n"]
    if article.details.strip():
        parts.append(f"\n## Details\n\n{article.details.strip()}\n")
    return "".join(parts)


def _split_paragraphs(text: str, max_chars: int) -> list[str]:
    """Group paragraphs into pieces of at most ``max_chars`` (a longer paragraph stays whole).

    Small encoders truncate at ~512 tokens, and a passage about one thing matches better than
    a page about many.
    """
    pieces: list[str] = []
    current = ""
    for para in (p.strip() for p in re.split(r"\n\s*\n", text)):
        if not para:
            continue
        if current and len(current) + len(para) + 2 > max_chars:
            pieces.append(current)
            current = para
        else:
            current = f"{current}\n\n{para}" if current else para
    if current:
        pieces.append(current)
    return pieces


def content_hash(*parts: str) -> str:
    """Hash of what an encoder sees, the key of the embedding cache."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


def chunk_article(article: Article, *, max_chars: int = 800) -> list[Chunk]:
    """Split an article into passages: title + answer first, then pieces of the details.

    Each passage carries the title because a details paragraph alone often lacks the topic.
    """
    meta = article.meta
    texts: list[tuple[Literal["answer", "details"], str]] = [
        ("answer", f"{meta.title}\n{article.answer}")
    ]
    texts += [
        ("details", f"{meta.title}\n{piece}")
        for piece in _split_paragraphs(article.details, max_chars)
    ]
    return [
        Chunk(
            chunk_id=f"{meta.id}.{meta.language}.{n}",
            family_id=meta.id,
            language=meta.language,
            title=meta.title,
            audience=meta.audience,
            tags=meta.tags,
            section=section,
            text=text,
            answer=article.answer,
            url=meta.url,
            content_hash=content_hash(text),
        )
        for n, (section, text) in enumerate(texts)
    ]


def chunk_articles(articles: Sequence[Article], *, max_chars: int = 800) -> list[Chunk]:
    """Chunks of all ``articles`` in a stable order."""
    return [chunk for article in articles for chunk in chunk_article(article, max_chars=max_chars)]
