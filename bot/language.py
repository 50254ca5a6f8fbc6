"""Which language, Dutch or English, a customer's message is in.

General-purpose detectors are unreliable on the two-word messages customers send ("storing?",
"hoi", "tv"): Lingua alone calls "hoi" English. So the identifier combines Lingua with a character
n-gram naive Bayes model fitted on the project's own labelled NLU examples (``data/nlu/nl.yml`` and
``data/nlu/en.yml``), and abstains on messages with no language signal ("3511 AB", "ok"), leaving
the conversation in the language it was in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import cast

import numpy as np
import yaml
from lingua import Language as LinguaLanguage
from lingua import LanguageDetector, LanguageDetectorBuilder
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.naive_bayes import MultinomialNB

from bot.settings import Language

_LABELS: tuple[Language, Language] = ("nl", "en")
# Postcodes, house numbers and Rasa annotations carry no language signal.
_ANNOTATION = re.compile(r"\[([^\]]*)\](?:\{[^}]*\}|\([^)]*\))")
_NOISE = re.compile(r"\d+\s?[a-zA-Z]{0,2}\b|[^\w\s]|\d")


def clean_text(text: str) -> str:
    """The text with digits, postcodes, punctuation and Rasa annotation markup removed."""
    text = _ANNOTATION.sub(r"\1", text.lower())
    return " ".join(_NOISE.sub(" ", text).split())


def read_nlu_examples(path: Path) -> list[str]:
    """The example texts of a Rasa NLU YAML file (intents only), annotations removed."""
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    texts: list[str] = []
    for block in document.get("nlu", []):
        if "intent" not in block:
            continue
        for line in str(block.get("examples", "")).splitlines():
            line = line.strip()
            if line.startswith("- "):
                texts.append(clean_text(line[2:]))
    return [t for t in texts if t]


class LanguageIdentifier:
    """Dutch/English identifier for short customer messages.

    Estimator-style: :meth:`fit` on labelled texts, then :meth:`predict`. The fitted state is the
    vectoriser and the naive Bayes model; Lingua is a fixed prior.

    Args:
        min_confidence: The probability the winning language needs; below it :meth:`predict`
            abstains (returns ``None``).
    """

    def __init__(self, min_confidence: float = 0.7) -> None:
        self.min_confidence = min_confidence
        self._vectorizer = TfidfVectorizer(
            analyzer="char_wb", ngram_range=(1, 4), sublinear_tf=True
        )
        self._model = MultinomialNB(alpha=0.1)
        # Lingua loads its n-gram models on first use by default: that cost (0.3-0.7 s here)
        # then fell on the first customer's turn after every start.
        self._lingua: LanguageDetector = (
            LanguageDetectorBuilder.from_languages(LinguaLanguage.DUTCH, LinguaLanguage.ENGLISH)
            .with_preloaded_language_models()
            .build()
        )
        self._fitted = False

    def fit(self, texts: Sequence[str], labels: Sequence[Language]) -> LanguageIdentifier:
        """Fit the n-gram model on ``texts`` labelled ``nl`` or ``en``."""
        if set(labels) != set(_LABELS):
            raise ValueError("training data needs examples of both 'nl' and 'en'")
        features = self._vectorizer.fit_transform([clean_text(t) for t in texts])
        self._model.fit(features, list(labels))
        self._fitted = True
        return self

    @classmethod
    def from_nlu_data(cls, nlu_dir: Path, min_confidence: float = 0.7) -> LanguageIdentifier:
        """An identifier fitted on ``nlu_dir/nl.yml`` and ``nlu_dir/en.yml``."""
        texts: list[str] = []
        labels: list[Language] = []
        for language in _LABELS:
            examples = read_nlu_examples(nlu_dir / f"{language}.yml")
            texts.extend(examples)
            labels.extend([language] * len(examples))
        return cls(min_confidence).fit(texts, labels)

    def probabilities(self, text: str) -> dict[Language, float]:
        """Probability of each language for ``text`` (uniform when there is no signal)."""
        if not self._fitted:
            raise RuntimeError("LanguageIdentifier.fit() has not been called")
        cleaned = clean_text(text)
        if len(cleaned.replace(" ", "")) < 2:
            return {"nl": 0.5, "en": 0.5}
        classes = cast(list[str], list(self._model.classes_))
        bayes = self._model.predict_proba(self._vectorizer.transform([cleaned]))[0]
        lingua = {
            cast(Language, c.language.iso_code_639_1.name.lower()): c.value
            for c in self._lingua.compute_language_confidence_values(cleaned)
        }
        # The domain model knows the vocabulary; Lingua knows the language at large. Their
        # geometric mean lets a confident one win only when the other does not object strongly.
        combined = np.sqrt(
            np.array([bayes[classes.index(lang)] * lingua.get(lang, 0.5) for lang in _LABELS])
        )
        combined = combined / combined.sum()
        return {lang: float(p) for lang, p in zip(_LABELS, combined, strict=True)}

    def predict(self, text: str) -> Language | None:
        """The language of ``text``, or ``None`` when it is not clear enough to say."""
        probabilities = self.probabilities(text)
        best = max(probabilities, key=lambda lang: probabilities[lang])
        return best if probabilities[best] >= self.min_confidence else None

    def predict_many(self, texts: Iterable[str]) -> list[Language | None]:
        """:meth:`predict` for each text."""
        return [self.predict(t) for t in texts]


def choose_language(
    identifier: LanguageIdentifier, text: str, previous: Language | None, default: Language
) -> Language:
    """The language to answer ``text`` in: detected, else the conversation's, else the default."""
    return identifier.predict(text) or previous or default
