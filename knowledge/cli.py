"""`belofte knowledge ...`: import FAQs, build the index, search, evaluate."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from bot.settings import Settings, get_settings
from knowledge.articles import Audience, Language
from knowledge.importer import FaqImporter
from knowledge.index import EncoderMismatchError, IndexNotBuiltError, KnowledgeStore
from knowledge.refresh import (
    DEFAULT_ANSWERABLE,
    DEFAULT_EXAMPLES,
    DEFAULT_QUERIES,
    DEFAULT_REFERENCES,
    NoArticlesError,
    TrainingFiles,
    build_index,
    make_evaluator,
    save_abstention_model,
)
from knowledge.retriever import Retriever, write_calibration

app = typer.Typer(
    help="Knowledge retrieval: import FAQs, index articles, search and evaluate.",
    no_args_is_help=True,
)


def _store(settings: Settings) -> KnowledgeStore:
    return KnowledgeStore(settings.knowledge_dir)


def _retriever(settings: Settings) -> Retriever:
    try:
        return Retriever.from_settings(settings)
    except (EncoderMismatchError, IndexNotBuiltError) as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc


@app.command("import")
def import_(
    path: Annotated[
        Path, typer.Argument(help="FAQ as .csv or .jsonl, or a folder of .md articles.")
    ],
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 if any row was skipped.")
    ] = False,
) -> None:
    """Import a company's FAQ into $BELOFTE_HOME/knowledge/imported/ (one article file per row).

    Bad rows are reported with their line number and skipped; good rows are kept.
    Run `belofte knowledge index` afterwards.
    """
    if not path.exists():
        typer.secho(f"{path}: no such file or folder", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    store = _store(get_settings())
    try:
        report = FaqImporter(store.imported_dir).import_path(path)
    except ValueError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    for error in report.errors:
        typer.secho(f"skipped {error}", fg=typer.colors.YELLOW, err=True)
    typer.echo(
        f"Imported {len(report.written)} article(s) into {store.imported_dir}; "
        f"skipped {len(report.errors)} bad row(s)."
    )
    if (strict and report.errors) or (report.errors and not report.written):
        raise typer.Exit(1)


@app.command()
def index(
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild even if nothing changed.")
    ] = False,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Progress bar (default: on long builds)."),
    ] = None,
) -> None:
    """Chunk the articles, embed new or changed chunks and swap in a new index generation."""
    try:
        outcome = build_index(get_settings(), force=force, show_progress=progress)
    except NoArticlesError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    for error in outcome.skipped:
        typer.secho(f"skipped {error}", fg=typer.colors.YELLOW, err=True)
    typer.echo(outcome.summary())


def _print_hits(
    retriever: Retriever,
    question: str,
    *,
    k: int,
    language: Language | None,
    audience: Audience | None,
    tags: list[str] | None,
    mode: Literal["dense", "lexical", "hybrid"],
    as_json: bool,
) -> None:
    hits = retriever.search(
        question, k=k, mode=mode, language=language, audience=audience, tags=tags
    )
    if as_json:
        typer.echo(json.dumps([h.to_json() for h in hits], ensure_ascii=False))
        return
    if not hits:
        typer.echo("(no results)")
    for rank, hit in enumerate(hits, start=1):
        typer.echo(
            f"{rank:>2}. {hit.family_id} [{hit.language}] {hit.title}  "
            f"score={hit.score:.4f} confidence={hit.confidence:.3f}"
        )
        typer.echo(f"    {hit.answer.splitlines()[0] if hit.answer else ''}")


@app.command()
def search(
    question: Annotated[str | None, typer.Argument(help="The question.")] = None,
    k: Annotated[int, typer.Option("--k", help="Number of article families.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
    queries: Annotated[
        Path | None,
        typer.Option("--queries", help="File with one query a line; prints one result per line."),
    ] = None,
    language: Annotated[
        str | None, typer.Option(help="Asker's language (nl/en): answers come in it if present.")
    ] = None,
    audience: Annotated[
        str | None, typer.Option(help="Only articles for this audience (customer/agent).")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Only articles with this tag.")] = None,
    mode: Annotated[str, typer.Option(help="hybrid, dense or lexical.")] = "hybrid",
) -> None:
    """Search the knowledge index: `search "question" --k 10 --json`."""
    if (question is None) == (queries is None):
        typer.secho("Give a question or --queries FILE.", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    if language not in (None, "nl", "en") or audience not in (None, "customer", "agent"):
        typer.secho("--language is nl|en, --audience customer|agent", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    if mode not in ("hybrid", "dense", "lexical"):
        typer.secho("--mode is hybrid|dense|lexical", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    retriever = _retriever(get_settings())  # encoder and index are loaded once
    texts = (
        [question]
        if question is not None
        else [
            line.strip()
            for line in Path(queries).read_text("utf-8").splitlines()  # type: ignore[arg-type]
            if line.strip()
        ]
    )
    for text in texts:
        _print_hits(
            retriever,
            text,
            k=k,
            language=language,  # type: ignore[arg-type]
            audience=audience,  # type: ignore[arg-type]
            tags=tag,
            mode=mode,  # type: ignore[arg-type]
            as_json=as_json or queries is not None,
        )


@app.command("eval")
def eval_(
    queries: Annotated[Path, typer.Option("--queries", help="Evaluation queries (YAML).")] = (
        DEFAULT_QUERIES
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    calibrate: Annotated[
        bool,
        typer.Option(
            "--calibrate",
            help="Store the calibrated cosine threshold and the abstention model for the encoder.",
        ),
    ] = False,
    references: Annotated[
        list[Path] | None,
        typer.Option("--references", help="Rasa NLU files with the reference questions."),
    ] = None,
    examples: Annotated[
        list[Path] | None,
        typer.Option(
            "--examples",
            help="Rasa NLU files whose out_of_scope questions the knowledge base does not "
            "answer: the abstention model is also fitted on them.",
        ),
    ] = None,
    answerable: Annotated[
        list[Path] | None,
        typer.Option(
            "--answerable",
            help="Query files (the --queries format) of questions the knowledge base answers: "
            "the abstention model is also fitted on those whose article is served.",
        ),
    ] = None,
) -> None:
    """Recall@1/3, MRR@10 for dense, lexical and hybrid retrieval; abstention quality."""
    from knowledge.evaluation import format_report, load_queries

    settings = get_settings()
    retriever = _retriever(settings)
    files = TrainingFiles(
        queries,
        references=tuple(references or DEFAULT_REFERENCES),
        examples=DEFAULT_EXAMPLES if examples is None else tuple(examples),
        answerable=DEFAULT_ANSWERABLE if answerable is None else tuple(answerable),
    )
    evaluator = make_evaluator(settings, retriever, files)
    report = evaluator.run(load_queries(queries))
    if calibrate and report.calibrated is not None:
        path = write_calibration(
            _store(settings),
            retriever.encoder,
            report.calibrated.threshold,
            abstain_recall=report.calibrated.abstain_recall,
            answer_rate=report.calibrated.answer_rate,
            queries=str(queries),
        )
        print(
            f"calibrated threshold {report.calibrated.threshold:.4f} written to {path}",
            file=sys.stderr,
        )
    if calibrate and evaluator.fitted_model is not None:
        model = evaluator.fitted_model
        # Calibrated on the bundled queries, ``belofte run`` keeps it current; on an
        # operator's own queries, only the operator does.
        bundled = queries.resolve() == DEFAULT_QUERIES.resolve()
        written = save_abstention_model(settings, retriever, model, files, refit_when_stale=bundled)
        print(
            f"abstention model (threshold {model.threshold:.4f}) written to {written}",
            file=sys.stderr,
        )
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=1))
    else:
        typer.echo(format_report(report))
