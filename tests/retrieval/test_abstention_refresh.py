"""`belofte run` keeps the abstention model fitted for the articles it serves."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bot.settings import Settings
from knowledge.abstention import FORMAT_VERSION, MODEL_FILE
from knowledge.index import KnowledgeStore
from knowledge.refresh import TrainingFiles, ensure_abstention_model

FIXTURES = Path(__file__).parent / "fixtures"
QUERIES = FIXTURES / "queries.yml"


@pytest.fixture()
def settings(tmp_path: Path, built_store: KnowledgeStore) -> Settings:
    """A home whose knowledge store holds the fixture articles' index and no model."""
    settings = Settings(home=tmp_path / "home")
    shutil.copytree(built_store.root, settings.knowledge_dir, symlinks=True)
    (settings.knowledge_dir / MODEL_FILE).unlink(missing_ok=True)
    return settings


@pytest.fixture()
def references(tmp_path: Path) -> Path:
    """An editable copy of the fixture reference questions."""
    path = tmp_path / "nlu.yml"
    shutil.copy(FIXTURES / "nlu.yml", path)
    return path


def _files(references: Path) -> TrainingFiles:
    """The fixture queries, with ``references`` as reference questions and examples."""
    return TrainingFiles(QUERIES, (references,), (references,))


def _stored(settings: Settings) -> dict[str, object]:
    data: dict[str, object] = json.loads((settings.knowledge_dir / MODEL_FILE).read_text())
    return data


def test_the_model_is_fitted_once_and_again_when_its_inputs_change(
    settings: Settings, references: Path
) -> None:
    first = ensure_abstention_model(settings, _files(references))
    fitted = _stored(settings)
    again = ensure_abstention_model(settings, _files(references))
    unchanged = _stored(settings)
    with references.open("a") as extra:
        extra.write("      - wie wint de tour de france dit jaar\n")
    after_edit = ensure_abstention_model(settings, _files(references))

    assert first.startswith("Abstention model fitted on 10 queries")
    assert again == "Abstention model is up to date" and unchanged == fitted
    assert after_edit.startswith("Abstention model fitted")
    assert _stored(settings)["metadata"] != fitted["metadata"]  # type: ignore[index]


def test_a_model_fitted_without_the_examples_is_fitted_again_with_them(
    settings: Settings, references: Path
) -> None:
    ensure_abstention_model(settings, TrainingFiles(QUERIES, (references,)))
    without = _stored(settings)

    message = ensure_abstention_model(settings, _files(references))

    assert without["metadata"]["unanswerable_examples"] == 0  # type: ignore[index]
    assert message.startswith("Abstention model fitted on 10 queries")
    assert _stored(settings)["metadata"]["unanswerable_examples"] == 6  # type: ignore[index]


def test_a_model_is_fitted_again_when_answerable_examples_are_added(
    settings: Settings, references: Path, tmp_path: Path
) -> None:
    answerable = tmp_path / "answerable.yml"
    answerable.write_text(
        "- {query: 'ik wil eraf', language: nl, relevant: [cancel-subscription]}\n",
        "utf-8",
    )
    ensure_abstention_model(settings, _files(references))
    without = _stored(settings)

    with_answerable = TrainingFiles(QUERIES, (references,), (references,), (answerable,))
    message = ensure_abstention_model(settings, with_answerable)
    again = ensure_abstention_model(settings, with_answerable)

    assert without["metadata"]["answerable_examples"] == 0  # type: ignore[index]
    assert message.startswith("Abstention model fitted on 10 queries")
    assert _stored(settings)["metadata"]["answerable_examples"] == 1  # type: ignore[index]
    assert again == "Abstention model is up to date"


def test_a_model_of_an_older_format_is_fitted_again(settings: Settings, references: Path) -> None:
    ensure_abstention_model(settings, _files(references))
    old = _stored(settings)
    (settings.knowledge_dir / MODEL_FILE).write_text(json.dumps({**old, "format": 1}))

    message = ensure_abstention_model(settings, _files(references))

    assert message.startswith("Abstention model fitted on 10 queries")
    assert _stored(settings)["format"] == FORMAT_VERSION


def test_a_model_calibrated_on_other_queries_is_kept(settings: Settings, references: Path) -> None:
    ensure_abstention_model(settings, _files(references))
    path = settings.knowledge_dir / MODEL_FILE
    data = _stored(settings)
    data["metadata"] = {**data["metadata"], "refit_when_stale": False}  # type: ignore[dict-item]
    path.write_text(json.dumps(data))
    references.write_text(references.read_text() + "      - hoe laat is het\n")

    message = ensure_abstention_model(settings, _files(references))

    assert message.endswith(": kept") and _stored(settings) == data


def test_queries_about_other_articles_fit_no_model(
    settings: Settings, references: Path, tmp_path: Path
) -> None:
    queries = tmp_path / "queries.yml"
    queries.write_text(
        QUERIES.read_text()
        + '- {query: "Hoe installeer ik de app?", language: nl, relevant: [app-install]}\n'
    )

    message = ensure_abstention_model(
        settings, TrainingFiles(queries, (references,), (references,))
    )

    assert message.startswith("No abstention model: 1 article families")
    assert "belofte knowledge eval --calibrate --queries FILE" in message
    assert not (settings.knowledge_dir / MODEL_FILE).exists()


def test_a_configured_threshold_needs_no_model(settings: Settings, references: Path) -> None:
    configured = settings.model_copy(update={"knowledge_abstain_threshold": 0.8})

    message = ensure_abstention_model(configured, _files(references))

    assert message.startswith("Abstention threshold configured")
    assert not (settings.knowledge_dir / MODEL_FILE).exists()
