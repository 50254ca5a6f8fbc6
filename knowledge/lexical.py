"""Lexical retrieval: BM25 (bm25s) over chunk texts, stemmed per language (PyStemmer)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import bm25s
import numpy as np
import Stemmer
from bm25s.stopwords import STOPWORDS_DUTCH, STOPWORDS_EN_PLUS

from knowledge.articles import Chunk, Language

_WORD = re.compile(r"\w\w+", re.UNICODE)
_STEMMERS = {"nl": "dutch", "en": "english"}
# Both lists for every text: knowledge bases mix languages, and a Dutch stop word in an English
# text (or the reverse) carries no meaning either.
_STOPWORDS = frozenset(STOPWORDS_DUTCH) | frozenset(STOPWORDS_EN_PLUS)


class Analyzer:
    """Lower-cases, drops Dutch and English stop words and stems with the text's language."""

    def __init__(self) -> None:
        self._stemmers = {lang: Stemmer.Stemmer(algo) for lang, algo in _STEMMERS.items()}

    def tokens(self, text: str, language: Language | None) -> list[str]:
        """Index/query terms of ``text``; without a language both stemmers contribute."""
        words = [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]
        if language is not None:
            return list(self._stemmers[language].stemWords(words))
        seen: dict[str, None] = {}
        for stemmer in self._stemmers.values():
            seen.update(dict.fromkeys(stemmer.stemWords(words)))
        return list(seen)


class LexicalIndex:
    """BM25 over a fixed list of chunks; row i is chunk i, as in the FAISS index."""

    def __init__(self, chunks: Sequence[Chunk], analyzer: Analyzer | None = None) -> None:
        self.analyzer = analyzer or Analyzer()
        corpus = [self.analyzer.tokens(c.text, c.language) for c in chunks]
        self._bm25: Any = bm25s.BM25()
        self._bm25.index(corpus, show_progress=False)
        self.size = len(chunks)

    def scores(
        self, text: str, language: Language | None, mask: np.ndarray[Any, Any] | None = None
    ) -> np.ndarray[Any, Any]:
        """BM25 score of every chunk (0 where ``mask`` is False)."""
        tokens = self.analyzer.tokens(text, language)
        ids = self._bm25.get_tokens_ids(tokens)
        if not ids:
            return np.zeros(self.size, dtype=np.float32)
        weight = None if mask is None else mask.astype(np.float32)
        return np.asarray(self._bm25.get_scores_from_ids(ids, weight_mask=weight))

    def search(
        self,
        text: str,
        language: Language | None,
        k: int,
        mask: np.ndarray[Any, Any] | None = None,
    ) -> list[tuple[int, float]]:
        """Top-``k`` (row, score) with a positive score, best first."""
        scores = self.scores(text, language, mask)
        k = min(k, self.size)
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]
