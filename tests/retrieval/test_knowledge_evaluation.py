"""Evaluation metrics and threshold calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from knowledge.evaluation import (
    Evaluator,
    abstention_metrics,
    calibrate_threshold,
    format_report,
    load_queries,
    rank_of_first_relevant,
)
from knowledge.retriever import Retriever

FIXTURE_QUERIES = Path(__file__).parent / "fixtures" / "queries.yml"


def test_rank_of_first_relevant() -> None:
    assert rank_of_first_relevant(["a", "b", "c"], ["c", "b"]) == 2
    assert rank_of_first_relevant(["a"], ["z"]) is None


def test_calibration_separates() -> None:
    conf = np.array([0.9, 0.88, 0.86, 0.85, 0.7, 0.72, 0.87])
    answerable = np.array([True, True, True, True, False, False, False])
    t = calibrate_threshold(conf, answerable)
    m = abstention_metrics(t, conf, answerable, answerable)
    assert m.answer_rate >= 0.9
    assert m.abstain_recall == 2 / 3
    assert 0.72 < t <= 0.85


def test_evaluator_on_fixture(retriever: Retriever) -> None:
    queries = load_queries(FIXTURE_QUERIES)
    report = Evaluator(retriever).run(queries)
    assert set(report.modes) == {"dense", "lexical", "hybrid"}
    assert report.modes["hybrid"].recall_at_3 >= 0.8
    assert report.calibrated is not None
    assert report.calibrated.answer_rate >= 0.9
    text = format_report(report)
    assert "hybrid" in text and "calibrated" in text
    assert report.to_json()["modes"]
