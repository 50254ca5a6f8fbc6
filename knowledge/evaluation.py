"""Retrieval evaluation: recall@1/3 and MRR@10 per mode, abstention calibration.

Abstention is measured two ways: the dense-cosine threshold (baseline) and the learned model of
:mod:`knowledge.abstention`; both are calibrated on the queries, and both get held-out
(cross-validated) figures, which are the ones to trust.

Queries come from ``knowledge/eval/queries.yml``: a list of
``{query, language, audience, relevant: [family ids]}``; ``relevant: []`` marks a question the
knowledge base cannot answer. recall@k is the share of answerable queries with a relevant
family among the first k (one relevant family suffices).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, field_validator

from knowledge import abstention as abst
from knowledge.articles import Audience, Language
from knowledge.retriever import Mode, Retriever

MODES: tuple[Mode, ...] = ("dense", "lexical", "hybrid")
#: Shuffles of the held-out estimate. With 44 unanswerable queries, the mean over five moved
#: by four points between two sets of five seeds (0.818 and 0.777); ten halve that variance.
HELD_OUT_REPEATS = 10


class EvalQuery(BaseModel):
    """One evaluation question."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    query: str
    language: Language
    audience: Audience = "customer"
    relevant: tuple[str, ...] = ()

    @field_validator("audience", mode="before")
    @classmethod
    def _first(cls, value: object) -> object:
        # Tolerate `audience: [agent]`: a question is asked on one channel.
        if isinstance(value, list | tuple):
            return value[0] if value else "customer"
        return value

    @field_validator("relevant", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return () if value is None else value

    @property
    def answerable(self) -> bool:
        """Does some article answer it?"""
        return bool(self.relevant)


def load_queries(path: Path) -> list[EvalQuery]:
    """Parse the query file."""
    data = yaml.safe_load(path.read_text("utf-8"))
    if isinstance(data, dict):  # allow {queries: [...]}
        data = data.get("queries", [])
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of queries")
    return [EvalQuery.model_validate(item) for item in data]


@dataclass(frozen=True)
class ModeMetrics:
    """Ranking quality of one retrieval mode on the answerable queries."""

    recall_at_1: float
    recall_at_3: float
    mrr_at_10: float
    queries: int


@dataclass(frozen=True)
class AbstentionMetrics:
    """How a threshold separates answerable from unanswerable queries (hybrid mode).

    ``method`` is ``cosine`` (abstain below a dense-cosine ``threshold``) or ``learned``
    (abstain when the model's P(unanswerable) >= ``threshold``).
    """

    threshold: float
    abstain_recall: float  # share of unanswerable queries abstained on
    abstain_precision: float  # share of abstentions that were unanswerable
    answer_rate: float  # share of answerable queries answered
    answer_precision: float  # share of answers whose top suggestion is a relevant family
    unanswerable: int
    answerable: int
    method: str = "cosine"


@dataclass
class EvalReport:
    """Everything `belofte knowledge eval` reports."""

    encoder: str
    chunks: int
    modes: dict[str, ModeMetrics]
    abstention: AbstentionMetrics
    calibrated: AbstentionMetrics | None = None
    cross_validated: dict[str, float] = field(default_factory=dict)
    #: The learned model fitted on all queries, at its operating point (in-sample figures).
    learned: AbstentionMetrics | None = None
    #: Its held-out figures (repeated stratified k-fold, threshold chosen inside each split).
    learned_cross_validated: abst.HeldOutMetrics | None = None

    def to_json(self) -> dict[str, object]:
        """JSON-serialisable form."""
        return asdict(self)


def rank_of_first_relevant(found: Sequence[str], relevant: Sequence[str]) -> int | None:
    """1-based rank of the first relevant family, None if absent."""
    for rank, family in enumerate(found, start=1):
        if family in relevant:
            return rank
    return None


def abstention_metrics(
    threshold: float, confidences: np.ndarray, answerable: np.ndarray, correct: np.ndarray
) -> AbstentionMetrics:
    """Metrics of abstaining when the top confidence is below ``threshold``."""
    return decision_metrics(threshold, confidences < threshold, answerable, correct)


def decision_metrics(
    threshold: float,
    abstain: np.ndarray,
    answerable: np.ndarray,
    correct: np.ndarray,
    method: str = "cosine",
) -> AbstentionMetrics:
    """Metrics of given abstain decisions."""
    unans = ~answerable
    n_unans, n_ans = int(unans.sum()), int(answerable.sum())
    answered = ~abstain
    return AbstentionMetrics(
        threshold=float(threshold),
        abstain_recall=float((abstain & unans).sum() / n_unans) if n_unans else 1.0,
        abstain_precision=float((abstain & unans).sum() / abstain.sum()) if abstain.any() else 1.0,
        answer_rate=float((answered & answerable).sum() / n_ans) if n_ans else 1.0,
        answer_precision=float((answered & correct).sum() / answered.sum())
        if answered.any()
        else 1.0,
        unanswerable=n_unans,
        answerable=n_ans,
        method=method,
    )


def calibrate_threshold(
    confidences: np.ndarray,
    answerable: np.ndarray,
    *,
    min_answer_rate: float = 0.9,
) -> float:
    """Threshold abstaining on the most unanswerable queries while still answering at least
    ``min_answer_rate`` of the answerable ones; ties go to the widest margin (midpoints).

    If no threshold keeps that answer rate (tiny sets), the one maximising
    abstain-recall + answer-rate is taken.
    """
    values = np.unique(confidences)
    candidates = np.concatenate(
        [[values[0] - 1e-6], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-6]]
    )
    unans = ~answerable
    best: tuple[float, float, float] | None = None
    fallback: tuple[float, float] | None = None
    for t in candidates:
        abstain = confidences < t
        rec = float((abstain & unans).sum() / max(1, unans.sum()))
        ans = float((~abstain & answerable).sum() / max(1, answerable.sum()))
        if fallback is None or rec + ans > fallback[0]:
            fallback = (rec + ans, float(t))
        if ans >= min_answer_rate and (best is None or (rec, ans) > (best[0], best[1])):
            best = (rec, ans, float(t))
    if best is not None:
        return best[2]
    assert fallback is not None
    return fallback[1]


class Evaluator:
    """Runs the evaluation queries against a retriever."""

    def __init__(
        self,
        retriever: Retriever,
        *,
        k: int = 10,
        references: Sequence[Path] = (),
        competitors: Sequence[str] | None = None,
        c: float | None = None,
        repeats: int = HELD_OUT_REPEATS,
        min_answer_rate: float = 0.9,
        examples: Sequence[Path] = (),
        answerable: Sequence[Path] = (),
        detect_language: Callable[[str], Language] | None = None,
    ) -> None:
        """
        Args:
            references: Rasa NLU files whose in-domain / ``out_of_scope`` examples are the
                abstention model's reference questions (independent of the evaluation set).
            examples: Rasa NLU files whose ``out_of_scope`` examples are questions the
                knowledge base does not answer, written independently of the evaluation
                set; they join every fit as unanswerable rows and are never scored.
            answerable: query files (the evaluation format) of questions the knowledge base
                answers, written independently of the evaluation set; those with a served
                ``relevant`` article join every fit as answerable rows and are never scored.
            detect_language: the language an example is asked in (default: ``nl``), as the
                bot detects a customer's.
            competitors: other providers' names (default: ``knowledge/competitors.txt``).
            c: logistic-regression regularisation of the abstention model; None: chosen by
                cross-validation among :data:`knowledge.abstention.C_CANDIDATES`.
            repeats: shuffles of the stratified cross-validation.
            min_answer_rate: operating point: answer at least this share of answerable queries.
        """
        self.retriever = retriever
        self.k = k
        self.references = tuple(references)
        self.competitors = abst.load_competitors() if competitors is None else tuple(competitors)
        self.c = c
        self.repeats = repeats
        self.min_answer_rate = min_answer_rate
        self.examples = tuple(examples)
        self.answerable = tuple(answerable)
        self.detect_language = detect_language
        #: The abstention model fitted on all queries by the last :meth:`run` (None if the
        #: queries have no unanswerable or no answerable ones).
        self.fitted_model: abst.AbstentionModel | None = None

    def run(self, queries: Sequence[EvalQuery], *, folds: int = 5) -> EvalReport:
        """Metrics for every mode, the abstention at the current threshold and a calibration."""
        if not queries:
            raise ValueError("no evaluation queries")
        answerable_queries = [q for q in queries if q.answerable]
        modes: dict[str, ModeMetrics] = {}
        for mode in MODES:
            r1 = r3 = mrr = 0.0
            for q in answerable_queries:
                hits = self.retriever.search(
                    q.query, k=self.k, mode=mode, language=q.language, audience=q.audience
                )
                rank = rank_of_first_relevant([h.family_id for h in hits], q.relevant)
                if rank is not None:
                    r1 += rank <= 1
                    r3 += rank <= 3
                    mrr += 1.0 / rank
            n = max(1, len(answerable_queries))
            modes[mode] = ModeMetrics(r1 / n, r3 / n, mrr / n, len(answerable_queries))

        confidences, answerable, correct, signals = [], [], [], []
        for q in queries:
            hits, sig = self.retriever.search_with_signals(
                q.query, k=1, language=q.language, audience=q.audience
            )
            confidences.append(hits[0].confidence if hits else 0.0)
            answerable.append(q.answerable)
            correct.append(bool(hits) and hits[0].family_id in q.relevant)
            signals.append(sig)
        conf = np.asarray(confidences)
        ans = np.asarray(answerable, dtype=bool)
        corr = np.asarray(correct, dtype=bool)

        active = self.retriever.abstention
        if active is not None:
            decisions = np.array([active.abstain(sig)[0] for sig in signals], dtype=bool)
            current = decision_metrics(active.threshold, decisions, ans, corr, "learned")
        else:
            current = abstention_metrics(self.retriever.threshold, conf, ans, corr)
        calibrated: AbstentionMetrics | None = None
        cv: dict[str, float] = {}
        learned: AbstentionMetrics | None = None
        learned_cv: abst.HeldOutMetrics | None = None
        self.fitted_model = None
        if ans.any() and (~ans).any():
            calibrated = abstention_metrics(calibrate_threshold(conf, ans), conf, ans, corr)
            cv = self._cross_validate(conf, ans, corr, folds)
            model, features, examples = self._fit(signals, ans, folds)
            self.fitted_model = model
            p = np.array([model.probability_of(f) for f in features])
            learned = decision_metrics(model.threshold, p >= model.threshold, ans, corr, "learned")
            learned_cv = abst.cross_validate(
                features,
                ~ans,
                corr,
                c=self.c,
                folds=folds,
                repeats=self.repeats,
                min_answer_rate=self.min_answer_rate,
                examples=examples,
            )
        return EvalReport(
            encoder=f"{self.retriever.encoder.name} ({self.retriever.encoder.version})",
            chunks=self.retriever.chunk_count,
            modes=modes,
            abstention=current,
            calibrated=calibrated,
            cross_validated=cv,
            learned=learned,
            learned_cross_validated=learned_cv,
        )

    def _fit(
        self, signals: Sequence[abst.Signals], answerable: np.ndarray, folds: int
    ) -> tuple[abst.AbstentionModel, np.ndarray, abst.ExampleRows | None]:
        """Abstention model on all queries, the queries' feature matrix and the examples'."""
        encoder = self.retriever.encoder
        inside, outside = abst.load_reference_questions(self.references)
        in_refs = encoder.encode_queries(inside)
        out_refs = encoder.encode_queries(outside)
        references = abst.ReferenceQuestions.of(in_refs, out_refs)
        pattern = abst._competitor_pattern(self.competitors)
        features = np.vstack([abst.extract_features(s, references, pattern) for s in signals])
        examples = abst.ExampleRows.of(
            unanswerable=self._example_features(references, outside, pattern),
            answerable=self._answerable_features(references, pattern),
        )
        model = abst.fit_model(
            features,
            ~answerable,
            encoder=encoder,
            in_refs=in_refs,
            out_refs=out_refs,
            competitors=self.competitors,
            c=self.c,
            folds=folds,
            min_answer_rate=self.min_answer_rate,
            examples=examples,
            metadata={
                "queries": len(answerable),
                "unanswerable": int((~answerable).sum()),
                "references": [str(p) for p in self.references],
                "generation": self.retriever.generation,
            },
        )
        return model, features, examples

    def _example_features(
        self,
        references: abst.ReferenceQuestions,
        outside: Sequence[str],
        pattern: re.Pattern[str] | None,
    ) -> np.ndarray | None:
        """Feature rows of the unanswerable examples, each retrieved as a customer's question.

        An example that is also a reference question is left out of the references when its
        own features are computed: its nearest out-of-scope neighbour would be itself.
        """
        _, questions = abst.load_reference_questions(self.examples)
        if not questions:
            return None
        rows = []
        for question in questions:
            language = self.detect_language(question) if self.detect_language else "nl"
            _, signals = self.retriever.search_with_signals(
                question, k=1, language=language, audience="customer"
            )
            others = np.array([text != question for text in outside], dtype=bool)
            rows.append(abst.extract_features(signals, references.without_outside(others), pattern))
        return np.vstack(rows)

    def _answerable_features(
        self, references: abst.ReferenceQuestions, pattern: re.Pattern[str] | None
    ) -> np.ndarray | None:
        """Feature rows of the answerable examples whose article is served, each retrieved as
        asked (language, audience); on another knowledge base the rest would be mislabelled."""
        served = self.retriever.families
        questions = [
            q for path in self.answerable for q in load_queries(path) if set(q.relevant) & served
        ]
        if not questions:
            return None
        rows = []
        for q in questions:
            _, signals = self.retriever.search_with_signals(
                q.query, k=1, language=q.language, audience=q.audience
            )
            rows.append(abst.extract_features(signals, references, pattern))
        return np.vstack(rows)

    @staticmethod
    def _cross_validate(
        conf: np.ndarray, ans: np.ndarray, corr: np.ndarray, folds: int
    ) -> dict[str, float]:
        """Held-out estimate: calibrate on k-1 folds, measure on the remaining one.

        The calibrated figures are measured on the queries they were tuned on; this says how
        much of that survives on unseen questions.
        """
        rng = np.random.default_rng(0)
        order = rng.permutation(len(conf))
        abstained_unans = answered_ans = 0
        for fold in range(folds):
            test = order[fold::folds]
            train = np.setdiff1d(order, test)
            if not ans[train].any() or ans[train].all():
                continue
            t = calibrate_threshold(conf[train], ans[train])
            abstained_unans += int(((conf[test] < t) & ~ans[test]).sum())
            answered_ans += int(((conf[test] >= t) & ans[test]).sum())
        return {
            "folds": float(folds),
            "abstain_recall": abstained_unans / max(1, int((~ans).sum())),
            "answer_rate": answered_ans / max(1, int(ans.sum())),
        }


def format_report(report: EvalReport) -> str:
    """Plain-text table of a report."""
    lines = [
        f"encoder: {report.encoder}; chunks: {report.chunks}; "
        f"answerable queries: {report.modes['hybrid'].queries}",
        "",
        f"{'mode':<8} {'recall@1':>9} {'recall@3':>9} {'MRR@10':>8}",
    ]
    for mode, m in report.modes.items():
        lines.append(f"{mode:<8} {m.recall_at_1:>9.3f} {m.recall_at_3:>9.3f} {m.mrr_at_10:>8.3f}")
    width = 26
    lines += [
        "",
        f"{'abstention':<{width}} {'threshold':>9} {'abst.rec':>8} {'abst.prec':>9} "
        f"{'answered':>8} {'ans.prec':>8}",
    ]
    rows = [(f"current ({report.abstention.method})", report.abstention)]
    if report.calibrated is not None:
        rows.append(("cosine, calibrated", report.calibrated))
    if report.learned is not None:
        rows.append(("learned, calibrated", report.learned))
    for name, a in rows:
        lines.append(
            f"{name:<{width}} {a.threshold:>9.4f} {a.abstain_recall:>8.3f} "
            f"{a.abstain_precision:>9.3f} {a.answer_rate:>8.3f} {a.answer_precision:>8.3f}"
        )
    held = report.learned_cross_validated
    if held is not None:
        lines.append(
            f"{'learned, held-out (CV)':<{width}} {'':>9} {held.abstain_recall:>8.3f} "
            f"{held.abstain_precision:>9.3f} {held.answer_rate:>8.3f} {held.answer_precision:>8.3f}"
        )
    lines.append("(calibrated rows are measured on the queries they were fitted on)")
    if report.cross_validated:
        cv = report.cross_validated
        lines.append(
            f"cosine threshold, {int(cv['folds'])}-fold cross-validated: abstains on "
            f"{cv['abstain_recall']:.3f} of unanswerable, answers {cv['answer_rate']:.3f} of "
            "answerable"
        )
    if held is not None:
        lines.append(
            f"learned model, {held.folds}-fold x {held.repeats} cross-validated (threshold "
            f"chosen inside each split): abstains on {held.abstain_recall:.3f} "
            f"(sd {held.abstain_recall_std:.3f}) of unanswerable, answers "
            f"{held.answer_rate:.3f} of answerable"
        )
    return "\n".join(lines)
