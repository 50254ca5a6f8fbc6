"""The FAISS index of knowledge chunks: incremental, atomically swapped builds.

Layout under ``$BELOFTE_HOME/knowledge/``::

    imported/                  articles written by `belofte knowledge import`
    cache/embeddings.sqlite    embedding cache, key = sha256(encoder, version, chunk hash)
    index/current -> gen-000042   symlink, replaced atomically with os.replace()
    index/gen-000042/          one immutable generation:
        manifest.json          encoder + version, dimension, kind, efSearch, chunk hashes
        chunks.jsonl           chunk metadata and text, row i = FAISS id i
        index.faiss            IndexFlatIP (small) or IndexHNSWFlat (inner product, large)

A build writes a new generation into a temporary folder, renames it into place and only then
swaps ``current``; a reader resolves ``current`` once and reads a finished generation, so a
half-built index is never served. The last few generations are kept so that a reader which
resolved an older one a moment ago can still open it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
from pydantic import BaseModel
from tqdm import tqdm

from knowledge.articles import Chunk
from knowledge.encoders import Encoder, Vectors

MANIFEST_FORMAT = 1
KEEP_GENERATIONS = 3
IndexKind = Literal["flat", "hnsw"]


class EncoderMismatchError(RuntimeError):
    """The index on disk was built with another encoder than the configured one."""


class IndexNotBuiltError(RuntimeError):
    """No index generation exists yet."""


class Manifest(BaseModel):
    """Describes one index generation."""

    format: int = MANIFEST_FORMAT
    generation: int
    created_at: str
    encoder: str
    encoder_version: str
    dim: int
    kind: IndexKind
    count: int
    ef_search: int | None = None
    hnsw_m: int | None = None
    recall_at_10: float | None = None
    content_digest: str
    embedded: int
    reused: int
    chunk_hashes: dict[str, str]


class KnowledgeStore:
    """Paths of the knowledge store under one root (``$BELOFTE_HOME/knowledge``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def imported_dir(self) -> Path:
        """Articles written by the importer."""
        return self.root / "imported"

    @property
    def index_dir(self) -> Path:
        """Parent of the index generations."""
        return self.root / "index"

    @property
    def current_link(self) -> Path:
        """Symlink to the generation being served."""
        return self.index_dir / "current"

    @property
    def cache_path(self) -> Path:
        """SQLite embedding cache."""
        return self.root / "cache" / "embeddings.sqlite"

    @property
    def calibration_path(self) -> Path:
        """Abstain threshold calibrated by the evaluation."""
        return self.root / "calibration.json"

    def current_generation(self) -> Path | None:
        """The generation folder ``current`` points to, or None before the first build."""
        try:
            target = os.readlink(self.current_link)
        except (FileNotFoundError, OSError):
            return None
        path = self.index_dir / target
        return path if (path / "manifest.json").is_file() else None

    def generations(self) -> list[Path]:
        """Finished generation folders, oldest first."""
        if not self.index_dir.is_dir():
            return []
        return sorted(p for p in self.index_dir.glob("gen-*") if p.is_dir())

    @contextlib.contextmanager
    def build_lock(self) -> Iterator[None]:
        """Exclusive lock so two `index` runs do not race for a generation number."""
        self.index_dir.mkdir(parents=True, exist_ok=True)
        with (self.index_dir / ".lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


class EmbeddingCache:
    """Passage vectors keyed by encoder identity and chunk content hash (SQLite)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, dim INTEGER, vec BLOB)"
        )

    @staticmethod
    def key(encoder: Encoder, content_hash: str) -> str:
        """Cache key of a chunk under an encoder (name and version both matter)."""
        raw = f"{encoder.name}\x00{encoder.version}\x00{content_hash}"
        return hashlib.sha256(raw.encode()).hexdigest()

    def get_many(self, keys: Sequence[str]) -> dict[str, Vectors]:
        """The cached vectors among ``keys``."""
        found: dict[str, Vectors] = {}
        for start in range(0, len(keys), 500):
            batch = list(keys[start : start + 500])
            marks = ",".join("?" * len(batch))
            rows = self._db.execute(
                f"SELECT key, vec FROM vectors WHERE key IN ({marks})", batch
            ).fetchall()
            for key, blob in rows:
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, items: dict[str, Vectors]) -> None:
        """Store vectors (one transaction)."""
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO vectors (key, dim, vec) VALUES (?, ?, ?)",
                [
                    (k, int(v.shape[0]), np.asarray(v, np.float32).tobytes())
                    for k, v in items.items()
                ],
            )

    def close(self) -> None:
        """Close the database."""
        self._db.close()


@dataclass(frozen=True)
class IndexConfig:
    """How the vector index is built."""

    exact_max_chunks: int = 20_000
    # M=16 / efConstruction=64: a 1M-vector graph builds in minutes on 2 cores; the recall
    # target is then met by tuning efSearch, which costs query time, not build time.
    hnsw_m: int = 16
    ef_construction: int = 64
    min_recall: float = 0.98
    recall_queries: int = 300
    seed: int = 0


@dataclass(frozen=True)
class VectorIndex:
    """A built FAISS index and how it was tuned."""

    index: Any
    kind: IndexKind
    ef_search: int | None
    recall_at_10: float | None


def exact_neighbours(vectors: Vectors, queries: Vectors, k: int) -> np.ndarray[Any, Any]:
    """Ids of the exact top-k by inner product (the ground truth for recall)."""
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    _, ids = flat.search(queries, k)
    return np.asarray(ids)


def recall_at_k(found: np.ndarray[Any, Any], truth: np.ndarray[Any, Any]) -> float:
    """Mean fraction of the exact top-k that the approximate search returned."""
    k = truth.shape[1]
    hits = sum(len(set(f[f >= 0]) & set(t[t >= 0])) for f, t in zip(found, truth, strict=True))
    return hits / float(truth.shape[0] * k)


def probe_queries(vectors: Vectors, n: int, seed: int = 0) -> Vectors:
    """Realistic recall probes: stored vectors moved off themselves by noise, renormalised.

    Querying with stored vectors alone would trivially find themselves and flatter recall.
    """
    rng = np.random.default_rng(seed)
    picks = vectors[rng.choice(len(vectors), size=min(n, len(vectors)), replace=False)]
    noise = rng.normal(size=picks.shape).astype(np.float32)
    noise *= 0.6 / np.linalg.norm(noise, axis=1, keepdims=True)
    probes = picks + noise
    return np.ascontiguousarray(probes / np.linalg.norm(probes, axis=1, keepdims=True))


def tune_ef_search(
    index: Any, vectors: Vectors, *, min_recall: float, n_queries: int = 300, seed: int = 0
) -> tuple[int, float]:
    """Smallest efSearch (doubling from 16) whose recall@10 against exact is ``min_recall``."""
    queries = probe_queries(vectors, n_queries, seed)
    k = min(10, len(vectors))
    truth = exact_neighbours(vectors, queries, k)
    recall = 0.0
    ef = 16
    while ef <= 4096:
        index.hnsw.efSearch = ef
        _, found = index.search(queries, k)
        recall = recall_at_k(found, truth)
        if recall >= min_recall:
            break
        ef *= 2
    return min(ef, 4096), recall


def build_vector_index(vectors: Vectors, config: IndexConfig) -> VectorIndex:
    """IndexFlatIP up to ``exact_max_chunks`` vectors, else an HNSW graph tuned for recall."""
    dim = int(vectors.shape[1])
    if len(vectors) <= config.exact_max_chunks:
        flat = faiss.IndexFlatIP(dim)
        flat.add(vectors)
        return VectorIndex(flat, "flat", None, None)
    hnsw = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = config.ef_construction
    hnsw.add(vectors)
    ef, recall = tune_ef_search(
        hnsw, vectors, min_recall=config.min_recall, n_queries=config.recall_queries,
        seed=config.seed,
    )
    hnsw.hnsw.efSearch = ef
    return VectorIndex(hnsw, "hnsw", ef, recall)


@dataclass(frozen=True)
class BuildReport:
    """What `index` did."""

    generation: int
    path: Path
    chunks: int
    embedded: int
    reused: int
    kind: IndexKind
    changed: bool
    ef_search: int | None = None
    recall_at_10: float | None = None


def _digest(encoder: Encoder, chunks: Sequence[Chunk], config: IndexConfig) -> str:
    digest = hashlib.sha256(f"{encoder.name}\x00{encoder.version}\x00{config}".encode())
    for chunk in chunks:
        digest.update(json.dumps(chunk.to_record(), sort_keys=True).encode())
    return digest.hexdigest()


def read_manifest(generation: Path) -> Manifest:
    """The manifest of a generation folder."""
    return Manifest.model_validate_json((generation / "manifest.json").read_text("utf-8"))


class IndexBuilder:
    """Builds index generations for one store and encoder."""

    def __init__(self, store: KnowledgeStore, encoder: Encoder, config: IndexConfig) -> None:
        self.store = store
        self.encoder = encoder
        self.config = config

    def _embed(self, chunks: Sequence[Chunk], show_progress: bool | None) -> tuple[Vectors, int]:
        cache = EmbeddingCache(self.store.cache_path)
        try:
            keys = [EmbeddingCache.key(self.encoder, c.content_hash) for c in chunks]
            cached = cache.get_many(keys)
            missing = sorted({i for i, k in enumerate(keys) if k not in cached})
            # Same text twice (e.g. identical answers) is embedded once.
            todo: dict[str, int] = {}
            for i in missing:
                todo.setdefault(keys[i], i)
            batch = 64
            items = list(todo.items())
            bar = tqdm(
                total=len(items), desc="embedding chunks", unit="chunk",
                disable=(not items or len(items) < 200) if show_progress is None
                else not show_progress,
            )
            with bar:
                for start in range(0, len(items), batch):
                    part = items[start : start + batch]
                    vecs = self.encoder.encode_passages([chunks[i].text for _, i in part])
                    fresh = {key: vecs[j] for j, (key, _) in enumerate(part)}
                    cache.put_many(fresh)
                    cached.update(fresh)
                    bar.update(len(part))
            dim = self.encoder.dim
            matrix = np.zeros((len(chunks), dim), dtype=np.float32)
            for i, key in enumerate(keys):
                vec = cached[key]
                if vec.shape[0] != dim:
                    raise EncoderMismatchError(
                        f"cached vector has dimension {vec.shape[0]}, encoder gives {dim}"
                    )
                matrix[i] = vec
            return matrix, len(todo)
        finally:
            cache.close()

    def build(
        self, chunks: Sequence[Chunk], *, force: bool = False, show_progress: bool | None = None
    ) -> BuildReport:
        """Embed what changed, build the index and make it current (atomically).

        Without ``force`` nothing is written when chunks, encoder and settings are unchanged.
        """
        if not chunks:
            raise ValueError("no chunks to index: add or import articles first")
        digest = _digest(self.encoder, chunks, self.config)
        with self.store.build_lock():
            current = self.store.current_generation()
            if current is not None and not force:
                manifest = read_manifest(current)
                if manifest.content_digest == digest:
                    return BuildReport(
                        manifest.generation, current, manifest.count, 0, manifest.count,
                        manifest.kind, False, manifest.ef_search, manifest.recall_at_10,
                    )
            vectors, embedded = self._embed(chunks, show_progress)
            threads = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(os.cpu_count() or 1)  # builds use every core
            try:
                built = build_vector_index(vectors, self.config)
            finally:
                faiss.omp_set_num_threads(threads)
            generations = self.store.generations()
            number = int(generations[-1].name.split("-")[1]) + 1 if generations else 1
            manifest = Manifest(
                generation=number,
                created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                encoder=self.encoder.name,
                encoder_version=self.encoder.version,
                dim=int(vectors.shape[1]),
                kind=built.kind,
                count=len(chunks),
                ef_search=built.ef_search,
                hnsw_m=self.config.hnsw_m if built.kind == "hnsw" else None,
                recall_at_10=built.recall_at_10,
                content_digest=digest,
                embedded=embedded,
                reused=len(chunks) - embedded,
                chunk_hashes={c.chunk_id: c.content_hash for c in chunks},
            )
            final = self._publish(manifest, built, chunks)
            self._prune()
        return BuildReport(
            number, final, len(chunks), embedded, len(chunks) - embedded, built.kind, True,
            built.ef_search, built.recall_at_10,
        )

    def _publish(self, manifest: Manifest, built: VectorIndex, chunks: Sequence[Chunk]) -> Path:
        index_dir = self.store.index_dir
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=index_dir))
        faiss.write_index(built.index, str(tmp / "index.faiss"))
        with (tmp / "chunks.jsonl").open("w", encoding="utf-8") as handle:
            for chunk in chunks:
                handle.write(json.dumps(chunk.to_record(), ensure_ascii=False) + "\n")
        # The manifest is written last: its presence marks a complete generation.
        (tmp / "manifest.json").write_text(manifest.model_dump_json(indent=1), "utf-8")
        final = index_dir / f"gen-{manifest.generation:06d}"
        os.rename(tmp, final)
        link_tmp = index_dir / f".current-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            link_tmp.unlink()
        os.symlink(final.name, link_tmp)
        os.replace(link_tmp, self.store.current_link)  # the atomic swap
        return final

    def _prune(self) -> None:
        current = self.store.current_generation()
        for old in self.store.generations()[:-KEEP_GENERATIONS]:
            if old != current:
                shutil.rmtree(old, ignore_errors=True)
        for stale in self.store.index_dir.glob(".build-*"):
            shutil.rmtree(stale, ignore_errors=True)


@dataclass(frozen=True)
class LoadedIndex:
    """One generation in memory: manifest, FAISS index and chunk metadata (row i = id i)."""

    path: Path
    manifest: Manifest
    index: Any
    chunks: list[Chunk]


def check_encoder(manifest: Manifest, encoder: Encoder, where: Path) -> None:
    """Refuse an index whose vectors come from another encoder."""
    if manifest.encoder != encoder.name or manifest.encoder_version != encoder.version:
        raise EncoderMismatchError(
            f"the knowledge index at {where} was built with encoder {manifest.encoder} "
            f"({manifest.encoder_version}), but the configured encoder is {encoder.name} "
            f"({encoder.version}). Its vectors are not comparable: run "
            "`belofte knowledge index` to rebuild it, or set BELOFTE_KNOWLEDGE_ENCODER back."
        )


def load_generation(path: Path, encoder: Encoder) -> LoadedIndex:
    """Load a finished generation, refusing an encoder mismatch."""
    manifest = read_manifest(path)
    check_encoder(manifest, encoder, path)
    index: Any = faiss.read_index(str(path / "index.faiss"))
    if manifest.kind == "hnsw" and manifest.ef_search:
        index.hnsw.efSearch = manifest.ef_search
    with (path / "chunks.jsonl").open(encoding="utf-8") as handle:
        chunks = [Chunk.from_record(json.loads(line)) for line in handle if line.strip()]
    if len(chunks) != index.ntotal or index.d != manifest.dim:
        raise RuntimeError(
            f"{path}: index and chunk list disagree ({index.ntotal} vs {len(chunks)})"
        )
    return LoadedIndex(path, manifest, index, chunks)


def load_current(store: KnowledgeStore, encoder: Encoder) -> LoadedIndex:
    """Load the generation ``current`` points to."""
    path = store.current_generation()
    if path is None:
        raise IndexNotBuiltError(
            f"no knowledge index under {store.index_dir}: run `belofte knowledge index`"
        )
    return load_generation(path, encoder)
