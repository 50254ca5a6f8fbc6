"""The FAISS index of knowledge chunks: incremental, atomically swapped builds.

Layout under ``$BELOFTE_HOME/knowledge/``::

    imported/                  articles written by `belofte knowledge import`
    cache/embeddings.sqlite    embedding and latent-term cache, key = sha256(encoder, version,
                               chunk hash)
    index/current -> gen-000042   symlink, replaced atomically with os.replace()
    index/gen-000042/          one immutable generation:
        manifest.json          encoder + version, dimension, kind, nprobe/efSearch, chunk hashes
        chunks.jsonl           chunk metadata and text, row i = FAISS id i
        index.faiss            IndexFlatIP (small) or IndexIVFFlat (inner product, large)
        latents.npz            the chunks' latent terms, row i = chunk i (encoders that have
                               them, :class:`knowledge.encoders.LatentTermEncoder`)

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
import math
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import faiss
import numpy as np
from pydantic import BaseModel
from scipy import sparse
from tqdm import tqdm

from knowledge.articles import Chunk
from knowledge.encoders import Encoder, LatentTermEncoder, Vectors

MANIFEST_FORMAT = 1
KEEP_GENERATIONS = 3
LATENTS_FILE = "latents.npz"
T = TypeVar("T")
IndexKind = Literal["flat", "ivf", "hnsw"]
AnnKind = Literal["ivf", "hnsw"]


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
    nprobe: int | None = None
    nlist: int | None = None
    recall_at_10: float | None = None
    content_digest: str
    embedded: int
    reused: int
    chunk_hashes: dict[str, str]
    #: Dimension of the chunks' latent terms (``latents.npz``); None: the encoder has none.
    latent_dim: int | None = None


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
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS latents (key TEXT PRIMARY KEY, idx BLOB, val BLOB)"
        )

    @staticmethod
    def key(encoder: Encoder, content_hash: str) -> str:
        """Cache key of a chunk under an encoder (name and version both matter)."""
        raw = f"{encoder.name}\x00{encoder.version}\x00{content_hash}"
        return hashlib.sha256(raw.encode()).hexdigest()

    def _rows(self, table: str, columns: str, keys: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        """Rows (key, *columns) of ``table`` among ``keys``, 500 keys a query."""
        for start in range(0, len(keys), 500):
            batch = list(keys[start : start + 500])
            marks = ",".join("?" * len(batch))
            yield from self._db.execute(
                f"SELECT key, {columns} FROM {table} WHERE key IN ({marks})", batch
            ).fetchall()

    def get_many(self, keys: Sequence[str]) -> dict[str, Vectors]:
        """The cached vectors among ``keys``."""
        return {
            key: np.frombuffer(blob, dtype=np.float32)
            for key, blob in self._rows("vectors", "vec", keys)
        }

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

    def get_latents(self, keys: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The cached latent terms among ``keys``: (indices, weights)."""
        return {
            key: (np.frombuffer(idx, np.int32), np.frombuffer(val, np.float32))
            for key, idx, val in self._rows("latents", "idx, val", keys)
        }

    def put_latents(self, items: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """Store latent terms (one transaction)."""
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO latents (key, idx, val) VALUES (?, ?, ?)",
                [
                    (k, np.asarray(i, np.int32).tobytes(), np.asarray(v, np.float32).tobytes())
                    for k, (i, v) in items.items()
                ],
            )

    def close(self) -> None:
        """Close the database."""
        self._db.close()


@dataclass(frozen=True)
class IndexConfig:
    """How the vector index is built."""

    exact_max_chunks: int = 20_000
    # Above the cutoff: IVF (inverted lists over k-means cells, nprobe tuned for recall). It
    # builds far faster than HNSW on 2 cores and, measured at 1M (docs/benchmarks.md), reaches
    # the recall target at a fraction of HNSW's query time. HNSW stays selectable.
    ann: AnnKind = "ivf"
    # Cells: None = about 4·sqrt(N), a power of two, at least 39 training vectors per cell.
    ivf_nlist: int | None = None
    # k-means runs on at most this many vectors (a random sample): the costly part of a build.
    ivf_train_max: int = 200_000
    hnsw_m: int = 16
    ef_construction: int = 64
    min_recall: float = 0.98
    recall_queries: int = 1000
    seed: int = 0
    # Latent terms of every chunk, for the abstention model, where the encoder has them. They
    # take about 2 KB a chunk (2 GB at a million), more than the vectors.
    latent_terms: bool = True


@dataclass(frozen=True)
class VectorIndex:
    """A built FAISS index and how it was tuned."""

    index: Any
    kind: IndexKind
    ef_search: int | None
    recall_at_10: float | None
    nprobe: int | None = None
    nlist: int | None = None


def exact_neighbours(vectors: Vectors, queries: Vectors, k: int) -> np.ndarray[Any, Any]:
    """Ids of the exact top-k by inner product (the ground truth for recall)."""
    _, ids = faiss.knn(queries, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
    return np.asarray(ids)


def recall_at_k(found: np.ndarray[Any, Any], truth: np.ndarray[Any, Any]) -> float:
    """Mean fraction of the exact top-k that the approximate search returned."""
    k = truth.shape[1]
    hits = sum(len(set(f[f >= 0]) & set(t[t >= 0])) for f, t in zip(found, truth, strict=True))
    return hits / float(truth.shape[0] * k)


def probe_queries(vectors: Vectors, n: int, seed: int = 0) -> Vectors:
    """Stored vectors moved off themselves by noise, renormalised (easy probes, for tests).

    Build-time tuning uses `held_out_sample` instead: the true neighbours of a probe are
    dominated by the vector it was made from, which flatters recall.
    """
    rng = np.random.default_rng(seed)
    picks = vectors[rng.choice(len(vectors), size=min(n, len(vectors)), replace=False)]
    noise = rng.normal(size=picks.shape).astype(np.float32)
    noise *= 0.6 / np.linalg.norm(noise, axis=1, keepdims=True)
    probes = picks + noise
    return np.ascontiguousarray(probes / np.linalg.norm(probes, axis=1, keepdims=True))


def _drop_self(
    ids: np.ndarray[Any, Any], own: np.ndarray[Any, Any], k: int
) -> np.ndarray[Any, Any]:
    """Each row's ids without the query's own id, cut to ``k``."""
    out = np.full((len(ids), k), -1, dtype=np.int64)
    for row, (found, me) in enumerate(zip(ids, own, strict=True)):
        kept = found[found != me][:k]
        out[row, : len(kept)] = kept
    return out


@dataclass(frozen=True)
class _RecallProbe:
    """Held-out queries (indexed vectors, scored without themselves) and their exact top-k."""

    ids: np.ndarray[Any, Any]
    queries: Vectors
    truth: np.ndarray[Any, Any]
    k: int

    def recall(self, index: Any, params: Any = None) -> tuple[float, float]:
        """Mean recall@k and a lower confidence bound (mean - 2 standard errors).

        Tuning requires the bound, not the mean, to reach the target: a few hundred probes
        give a mean that is off by ±0.005, enough to pick a setting that misses on new queries.
        """
        _, found = index.search(self.queries, self.k + 1, params=params)
        found = _drop_self(found, self.ids, self.k)
        per_query = np.array(
            [
                len(set(f[f >= 0]) & set(t[t >= 0])) / self.k
                for f, t in zip(found, self.truth, strict=True)
            ]
        )
        mean = float(per_query.mean())
        spread = float(per_query.std(ddof=1)) if len(per_query) > 1 else 0.0
        return mean, mean - 2 * spread / np.sqrt(len(per_query))


def held_out_sample(
    vectors: Vectors, n: int, *, seed: int = 0, exclude: np.ndarray[Any, Any] | None = None
) -> _RecallProbe:
    """Recall probe: ``n`` indexed vectors (none of ``exclude``), each searched as a query.

    Its own id is dropped from both the exact and the approximate answer, so the probe
    measures what a fresh query from the same distribution would get (a query never finds
    itself). Excluding the IVF training sample keeps the probes out of the k-means fit too.
    """
    rng = np.random.default_rng(seed + 1)
    pool = np.arange(len(vectors))
    if exclude is not None and len(vectors) - len(exclude) >= n:
        pool = np.setdiff1d(pool, exclude, assume_unique=True)
    ids = np.sort(rng.choice(pool, size=min(n, len(pool)), replace=False))
    queries = np.ascontiguousarray(vectors[ids])
    k = min(10, len(vectors) - 1)
    truth = _drop_self(exact_neighbours(vectors, queries, k + 1), ids, k)
    return _RecallProbe(ids, queries, truth, k)


def tune_ef_search(
    index: Any, vectors: Vectors, *, min_recall: float, n_queries: int = 300, seed: int = 0
) -> tuple[int, float]:
    """Smallest efSearch (doubling from 16) whose recall@10 against exact is ``min_recall``.

    Returns efSearch and the mean recall (its lower confidence bound is what has to pass).
    """
    probe = held_out_sample(vectors, n_queries, seed=seed)
    recall = 0.0
    ef = 16
    while ef <= 4096:
        index.hnsw.efSearch = ef
        recall, lower = probe.recall(index)
        if lower >= min_recall:
            break
        ef *= 2
    return min(ef, 4096), recall


def ivf_parameters(nprobe: int) -> Any:
    """``SearchParametersIVF`` with ``nprobe`` cells."""
    params: Any = faiss.SearchParametersIVF()
    params.nprobe = nprobe
    return params


def tune_nprobe(index: Any, probe: _RecallProbe, *, min_recall: float) -> tuple[int, float]:
    """Smallest nprobe whose recall@10 against exact is ``min_recall`` (doubling, then bisection).

    Recall grows with nprobe (more cells are scanned); at nprobe = nlist the search is exact.
    Returns nprobe and the mean recall (its lower confidence bound is what has to pass).
    """
    nlist = int(index.nlist)
    measured: dict[int, tuple[float, float]] = {}

    def passes(nprobe: int) -> bool:
        if nprobe not in measured:
            measured[nprobe] = probe.recall(index, ivf_parameters(nprobe))
        return measured[nprobe][1] >= min_recall

    high = 1
    while high < nlist and not passes(high):
        high *= 2
    high = min(high, nlist)
    if not passes(high):  # only possible through ties: use every cell
        return high, measured[high][0]
    low = high // 2  # fails, or 0
    while high - low > 1:
        mid = (low + high) // 2
        if passes(mid):
            high = mid
        else:
            low = mid
    return high, measured[high][0]


def ivf_nlist(n: int, config: IndexConfig) -> int:
    """Number of IVF cells for ``n`` vectors."""
    if config.ivf_nlist:
        return max(1, min(config.ivf_nlist, n))
    nlist: int = 2 ** round(math.log2(4 * math.sqrt(n)))
    while nlist > 1 and min(n, config.ivf_train_max) < 39 * nlist:  # faiss' k-means minimum
        nlist //= 2
    return nlist


def _build_ivf(vectors: Vectors, config: IndexConfig) -> VectorIndex:
    dim = int(vectors.shape[1])
    nlist = ivf_nlist(len(vectors), config)
    quantizer = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.seed = config.seed  # spherical k-means (inner product), seeded for repeatability
    rng = np.random.default_rng(config.seed)
    train_ids: np.ndarray[Any, Any] | None = None
    if len(vectors) > config.ivf_train_max:
        train_ids = np.sort(rng.choice(len(vectors), size=config.ivf_train_max, replace=False))
        ivf.train(np.ascontiguousarray(vectors[train_ids]))
    else:
        ivf.train(vectors)
    ivf.add(vectors)  # (faiss' Python wrapper keeps `quantizer` alive with `ivf`)
    ivf.make_direct_map()  # reconstruct(id) works, as for flat and HNSW (8 bytes per vector)
    probe = held_out_sample(vectors, config.recall_queries, seed=config.seed, exclude=train_ids)
    nprobe, recall = tune_nprobe(ivf, probe, min_recall=config.min_recall)
    ivf.nprobe = nprobe
    return VectorIndex(ivf, "ivf", None, recall, nprobe=nprobe, nlist=nlist)


def _build_hnsw(vectors: Vectors, config: IndexConfig) -> VectorIndex:
    hnsw = faiss.IndexHNSWFlat(int(vectors.shape[1]), config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = config.ef_construction
    hnsw.add(vectors)
    ef, recall = tune_ef_search(
        hnsw,
        vectors,
        min_recall=config.min_recall,
        n_queries=config.recall_queries,
        seed=config.seed,
    )
    hnsw.hnsw.efSearch = ef
    return VectorIndex(hnsw, "hnsw", ef, recall)


def build_vector_index(vectors: Vectors, config: IndexConfig) -> VectorIndex:
    """IndexFlatIP up to ``exact_max_chunks`` vectors, else IVF (or HNSW) tuned for recall."""
    if len(vectors) <= config.exact_max_chunks:
        flat = faiss.IndexFlatIP(int(vectors.shape[1]))
        flat.add(vectors)
        return VectorIndex(flat, "flat", None, None)
    if config.ann == "hnsw":
        return _build_hnsw(vectors, config)
    return _build_ivf(vectors, config)


def search_parameters(manifest: Manifest, k: int, selectivity: float = 1.0) -> Any:
    """FAISS search parameters for one query of depth ``k`` on a generation of this manifest.

    IndexIVF refuses plain ``SearchParameters``: it needs ``SearchParametersIVF``.
    ``selectivity`` is the fraction of chunks an ID filter lets through: IVF only returns
    what lies in the probed cells, so a filter that keeps 10 % of the chunks probes 10 times
    as many cells (at most all of them, which is an exact search).
    """
    if manifest.kind == "ivf":
        nprobe = math.ceil((manifest.nprobe or 1) * k / 10 / max(selectivity, 1e-9))
        return ivf_parameters(max(manifest.nprobe or 1, min(nprobe, manifest.nlist or nprobe)))
    if manifest.kind == "hnsw":
        ef = max(manifest.ef_search or 64, k)
        return faiss.SearchParametersHNSW(efSearch=ef)  # type: ignore[attr-defined]
    return faiss.SearchParameters()


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
    nprobe: int | None = None


def _digest(encoder: Encoder, chunks: Sequence[Chunk], config: IndexConfig) -> str:
    # Latent terms are part of the content: a generation built before they existed is rebuilt.
    latents = _with_latents(encoder, config)
    digest = hashlib.sha256(
        f"{encoder.name}\x00{encoder.version}\x00{config}\x00latents={latents}".encode()
    )
    for chunk in chunks:
        digest.update(json.dumps(chunk.to_record(), sort_keys=True).encode())
    return digest.hexdigest()


def _compute_missing(
    chunks: Sequence[Chunk],
    keys: Sequence[str],
    cached: dict[str, T],
    compute: Callable[[list[str]], list[T]],
    store: Callable[[dict[str, T]], None],
    label: str,
    show_progress: bool | None,
) -> int:
    """Compute what ``cached`` lacks for ``chunks`` (row i has key i) in batches, storing each
    batch as it comes; returns how many texts were computed. The same text twice (e.g.
    identical answers) is computed once. The progress bar shows on long runs by default."""
    todo: dict[str, int] = {}
    for i, key in enumerate(keys):
        if key not in cached:
            todo.setdefault(key, i)
    items = list(todo.items())
    bar = tqdm(
        total=len(items),
        desc=label,
        unit="chunk",
        disable=(not items or len(items) < 200) if show_progress is None else not show_progress,
    )
    with bar:
        for start in range(0, len(items), 64):
            part = items[start : start + 64]
            values = compute([chunks[i].text for _, i in part])
            fresh = {key: values[j] for j, (key, _) in enumerate(part)}
            store(fresh)
            cached.update(fresh)
            bar.update(len(part))
    return len(todo)


def _with_latents(encoder: Encoder, config: IndexConfig) -> bool:
    return config.latent_terms and isinstance(encoder, LatentTermEncoder)


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
            embedded = _compute_missing(
                chunks,
                keys,
                cached,
                lambda texts: list(self.encoder.encode_passages(texts)),
                cache.put_many,
                "embedding chunks",
                show_progress,
            )
            dim = self.encoder.dim
            matrix = np.zeros((len(chunks), dim), dtype=np.float32)
            for i, key in enumerate(keys):
                vec = cached[key]
                if vec.shape[0] != dim:
                    raise EncoderMismatchError(
                        f"cached vector has dimension {vec.shape[0]}, encoder gives {dim}"
                    )
                matrix[i] = vec
            return matrix, embedded
        finally:
            cache.close()

    def _latent_terms(
        self, chunks: Sequence[Chunk], show_progress: bool | None
    ) -> sparse.csr_matrix | None:
        """The chunks' latent terms (row i = chunk i), new or changed ones computed; None when
        the encoder has none."""
        encoder = self.encoder
        if not _with_latents(encoder, self.config) or not isinstance(encoder, LatentTermEncoder):
            return None
        cache = EmbeddingCache(self.store.cache_path)
        try:
            keys = [EmbeddingCache.key(self.encoder, c.content_hash) for c in chunks]
            cached = cache.get_latents(keys)

            def compute(texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
                rows = encoder.encode_latent_terms(texts)
                return [(rows[j].indices.copy(), rows[j].data.copy()) for j in range(len(texts))]

            _compute_missing(
                chunks, keys, cached, compute, cache.put_latents, "latent terms", show_progress
            )
        finally:
            cache.close()
        indptr = np.cumsum([0] + [len(cached[key][0]) for key in keys])
        indices = np.concatenate([cached[key][0] for key in keys])
        data = np.concatenate([cached[key][1] for key in keys])
        return sparse.csr_matrix(
            (data, indices, indptr), shape=(len(chunks), encoder.latent_dim), dtype=np.float32
        )

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
                        manifest.generation,
                        current,
                        manifest.count,
                        0,
                        manifest.count,
                        manifest.kind,
                        False,
                        manifest.ef_search,
                        manifest.recall_at_10,
                        manifest.nprobe,
                    )
            vectors, embedded = self._embed(chunks, show_progress)
            latents = self._latent_terms(chunks, show_progress)
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
                nprobe=built.nprobe,
                nlist=built.nlist,
                recall_at_10=built.recall_at_10,
                content_digest=digest,
                embedded=embedded,
                reused=len(chunks) - embedded,
                chunk_hashes={c.chunk_id: c.content_hash for c in chunks},
                latent_dim=None if latents is None else int(latents.shape[1]),
            )
            final = self._publish(manifest, built, chunks, latents)
            self._prune()
        return BuildReport(
            number,
            final,
            len(chunks),
            embedded,
            len(chunks) - embedded,
            built.kind,
            True,
            built.ef_search,
            built.recall_at_10,
            built.nprobe,
        )

    def _publish(
        self,
        manifest: Manifest,
        built: VectorIndex,
        chunks: Sequence[Chunk],
        latents: sparse.csr_matrix | None,
    ) -> Path:
        index_dir = self.store.index_dir
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=index_dir))
        faiss.write_index(built.index, str(tmp / "index.faiss"))
        if latents is not None:
            sparse.save_npz(tmp / LATENTS_FILE, latents)
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
    #: The chunks' latent terms (row i = chunk i); None when the encoder has none.
    latents: sparse.csr_matrix | None = None


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
    if manifest.kind == "ivf" and manifest.nprobe:
        index.nprobe = manifest.nprobe
    with (path / "chunks.jsonl").open(encoding="utf-8") as handle:
        chunks = [Chunk.from_record(json.loads(line)) for line in handle if line.strip()]
    if len(chunks) != index.ntotal or index.d != manifest.dim:
        raise RuntimeError(
            f"{path}: index and chunk list disagree ({index.ntotal} vs {len(chunks)})"
        )
    latents = None
    if manifest.latent_dim is not None:
        latents = sparse.load_npz(path / LATENTS_FILE).tocsr()
        if latents.shape != (len(chunks), manifest.latent_dim):
            raise RuntimeError(f"{path}: latent terms and chunk list disagree")
    return LoadedIndex(path, manifest, index, chunks, latents)


def load_current(store: KnowledgeStore, encoder: Encoder) -> LoadedIndex:
    """Load the generation ``current`` points to."""
    path = store.current_generation()
    if path is None:
        raise IndexNotBuiltError(
            f"no knowledge index under {store.index_dir}: run `belofte knowledge index`"
        )
    return load_generation(path, encoder)
