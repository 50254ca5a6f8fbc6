"""Keep the knowledge index and the abstention model current.

What ``belofte run`` does before it serves, and what ``belofte knowledge index`` and
``belofte knowledge eval --calibrate`` share: build a new index generation when articles
changed (:func:`build_index`), and fit the abstention model again when the articles served or
the files it is fitted from (:class:`TrainingFiles`) changed since its fit
(:func:`ensure_abstention_model`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.settings import PROJECT_ROOT, Settings
from knowledge.abstention import AbstentionModel
from knowledge.articles import ArticleError, Language, chunk_articles, load_articles
from knowledge.encoders import make_encoder
from knowledge.index import BuildReport, IndexBuilder, IndexConfig, KnowledgeStore
from knowledge.retriever import Retriever

if TYPE_CHECKING:
    from knowledge.evaluation import Evaluator

DEFAULT_QUERIES = PROJECT_ROOT / "knowledge" / "eval" / "queries.yml"
#: Reference questions of the abstention model, written independently of the evaluation
#: queries: the bot's NLU examples (in-domain intents vs out_of_scope) and near-domain
#: questions the knowledge base does not answer.
DEFAULT_REFERENCES = (
    PROJECT_ROOT / "data" / "nlu" / "nl.yml",
    PROJECT_ROOT / "data" / "nlu" / "en.yml",
    PROJECT_ROOT / "knowledge" / "reference" / "out_of_scope.yml",
)
#: Questions the knowledge base does not answer that the abstention model is also fitted on,
#: as unanswerable rows (written independently of the evaluation queries).
DEFAULT_EXAMPLES = (PROJECT_ROOT / "knowledge" / "reference" / "out_of_scope.yml",)
#: Questions the knowledge base answers that the abstention model is also fitted on, as
#: answerable rows (evaluation-query format, written independently of the evaluation queries).
DEFAULT_ANSWERABLE = (PROJECT_ROOT / "knowledge" / "reference" / "answerable.yml",)


@dataclass(frozen=True)
class TrainingFiles:
    """The files an abstention model is fitted from, besides the articles served.

    Args:
        queries: the evaluation queries (``knowledge/eval/queries.yml`` format), the only
            questions scored.
        references: Rasa NLU files of reference questions (in-domain intents vs
            ``out_of_scope``).
        examples: Rasa NLU files whose ``out_of_scope`` questions are unanswerable rows.
        answerable: query files of questions the knowledge base answers: answerable rows.
    """

    queries: Path
    references: tuple[Path, ...] = ()
    examples: tuple[Path, ...] = ()
    answerable: tuple[Path, ...] = ()

    def digest(self, retriever: Retriever) -> str:
        """Digest of the chunks being served and of these files: a model fitted from another
        digest is stale."""
        digest = hashlib.sha256(retriever.content_digest.encode())
        # The markers also tell a model fitted before a kind of example existed from one
        # fitted with it.
        if self.examples:
            digest.update(b"examples")
        if self.answerable:
            digest.update(b"answerable")
        for path in (self.queries, *self.references, *self.examples, *self.answerable):
            digest.update(path.name.encode())
            digest.update(path.read_bytes() if path.is_file() else b"")
        return digest.hexdigest()


#: What ``belofte run`` fits the abstention model from.
BUNDLED = TrainingFiles(DEFAULT_QUERIES, DEFAULT_REFERENCES, DEFAULT_EXAMPLES, DEFAULT_ANSWERABLE)


class NoArticlesError(ValueError):
    """There is nothing to index: no article loads from the configured folders."""


def index_config(settings: Settings) -> IndexConfig:
    """Index settings from Belofte's settings."""
    return IndexConfig(
        exact_max_chunks=settings.knowledge_exact_max_chunks,
        hnsw_m=settings.knowledge_hnsw_m,
        ef_construction=settings.knowledge_hnsw_ef_construction,
        min_recall=settings.knowledge_min_recall,
        ann=settings.knowledge_ann_index,
        latent_terms=settings.knowledge_latent_terms,
    )


@dataclass(frozen=True)
class IndexOutcome:
    """What :func:`build_index` did: the build, how many articles, the files it skipped."""

    report: BuildReport
    articles: int
    skipped: list[ArticleError]

    def summary(self) -> str:
        """One line for the console."""
        report = self.report
        if not report.changed:
            return f"Index is up to date: generation {report.generation}, {report.chunks} chunks."
        tuned = ""
        if report.recall_at_10 is not None:
            knob = (
                f"efSearch {report.ef_search}"
                if report.kind == "hnsw"
                else f"nprobe {report.nprobe}"
            )
            tuned = f", {knob} (recall@10 vs exact {report.recall_at_10:.3f})"
        return (
            f"Built generation {report.generation}: {self.articles} articles, "
            f"{report.chunks} chunks ({report.embedded} embedded, {report.reused} from cache), "
            f"{report.kind} index{tuned}."
        )


def build_index(
    settings: Settings, *, force: bool = False, show_progress: bool | None = None
) -> IndexOutcome:
    """Chunk the articles (bundled and imported), embed new or changed chunks and swap in a
    new index generation; a bad article file is skipped and reported, never fatal.

    Raises:
        NoArticlesError: no article loads at all.
    """
    store = KnowledgeStore(settings.knowledge_dir)
    articles, skipped = load_articles([settings.knowledge_articles_dir, store.imported_dir])
    chunks = chunk_articles(articles)
    if not chunks:
        raise NoArticlesError("No articles to index.")
    encoder = make_encoder(
        settings.knowledge_encoder,
        settings.knowledge_model_path,
        threads=settings.knowledge_encoder_threads,
    )
    builder = IndexBuilder(store, encoder, index_config(settings))
    report = builder.build(chunks, force=force, show_progress=show_progress)
    return IndexOutcome(report=report, articles=len(articles), skipped=skipped)


def example_language(settings: Settings) -> Callable[[str], Language]:
    """The language of an example question, detected as the bot detects a customer's."""
    from bot.language import LanguageIdentifier

    identifier = LanguageIdentifier.from_nlu_data(
        PROJECT_ROOT / "data" / "nlu", settings.language_min_confidence
    )
    return lambda text: identifier.predict(text) or settings.default_language


def make_evaluator(
    settings: Settings, retriever: Retriever, files: TrainingFiles, *, repeats: int | None = None
) -> Evaluator:
    """An evaluator that fits the abstention model from ``files`` (``repeats``: shuffles of
    the held-out estimate; default :data:`knowledge.evaluation.HELD_OUT_REPEATS`)."""
    from knowledge.evaluation import HELD_OUT_REPEATS, Evaluator

    return Evaluator(
        retriever,
        references=files.references,
        examples=files.examples,
        answerable=files.answerable,
        repeats=HELD_OUT_REPEATS if repeats is None else repeats,
        detect_language=example_language(settings),
    )


def save_abstention_model(
    settings: Settings,
    retriever: Retriever,
    model: AbstentionModel,
    files: TrainingFiles,
    *,
    refit_when_stale: bool,
) -> Path:
    """Store ``model`` with what it was fitted on, so that :func:`ensure_abstention_model`
    can tell when it is stale; ``refit_when_stale`` False keeps it whatever changes (a model
    an operator calibrated on their own queries). Returns the file written."""
    model.metadata["queries_file"] = str(files.queries)
    model.metadata["inputs"] = files.digest(retriever)
    model.metadata["refit_when_stale"] = refit_when_stale
    return model.save(KnowledgeStore(settings.knowledge_dir).root)


def ensure_abstention_model(settings: Settings, files: TrainingFiles = BUNDLED) -> str:
    """Fit the abstention model on ``files`` when there is none or it is stale.

    Stale: the articles served or any of the files changed since the fit.
    A model calibrated by hand on other queries (``eval --calibrate --queries FILE``) is left
    alone, and so is a configured threshold, which overrides any model. Returns what was done,
    for the console.
    """
    from knowledge.evaluation import load_queries

    if settings.knowledge_abstain_threshold is not None:
        return "Abstention threshold configured: no abstention model needed"
    retriever = Retriever.from_settings(settings)
    current = retriever.abstention
    if current is not None and not current.metadata.get("refit_when_stale"):
        return f"Abstention model calibrated on {current.metadata.get('queries_file')}: kept"
    if current is not None and current.metadata.get("inputs") == files.digest(retriever):
        return "Abstention model is up to date"
    loaded = load_queries(files.queries)
    missing = {family for query in loaded for family in query.relevant} - retriever.families
    if missing:
        # The bundled queries describe the demo articles; on another knowledge base they
        # would teach the model nonsense.
        return (
            f"No abstention model: {len(missing)} article families named in {files.queries} "
            "are not "
            "in this knowledge base. Write queries for yours and run "
            "`belofte knowledge eval --calibrate --queries FILE`; until then the retriever "
            "abstains below a dense-similarity threshold."
        )
    # One shuffle of the held-out estimate is enough here: only the fitted model is kept.
    evaluator = make_evaluator(settings, retriever, files, repeats=1)
    evaluator.run(loaded)
    model = evaluator.fitted_model
    if model is None:
        return f"No abstention model: {files.queries} needs answerable and unanswerable queries"
    save_abstention_model(settings, retriever, model, files, refit_when_stale=True)
    return f"Abstention model fitted on {len(loaded)} queries (threshold {model.threshold:.3f})"
