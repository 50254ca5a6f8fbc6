"""Shared pieces of the CX tests: an app on the test database, a small fake encoder."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import httpx
import numpy as np
from fastapi import FastAPI
from sqlalchemy import Engine

from bot.app import create_app
from bot.promises.service import PromiseService
from bot.rasa_client import RasaClient
from bot.settings import Settings
from bot.storage.db import make_sessionmaker

from fake_rasa import FakeRasaServer


def make_app(settings: Settings, db_engine: Engine) -> FastAPI:
    """The service on the test database, Rasa faked, no knowledge index."""
    return create_app(
        settings,
        dialogue=RasaClient(settings, transport=httpx.MockTransport(FakeRasaServer().handler)),
        sessions=make_sessionmaker(db_engine),
        promises=PromiseService(settings),
        knowledge=None,
    )


class KeywordEncoder:
    """A fast, deterministic stand-in for the e5 encoder.

    Each text is placed by the topic words it contains (one axis per topic, with a small
    per-text wobble), so texts sharing a topic are near and others far, as with a real model.
    ``calls`` counts the texts encoded (to check the vector cache).
    """

    name = "keyword-fake"
    TOPICS: tuple[tuple[str, ...], ...] = (
        ("storingskaart", "outage map", "kaart"),
        ("monteur", "technician", "engineer"),
        ("kennisbank", "knowledge base", "artikel"),
        ("console", "scherm"),
        ("factuur", "invoice", "bill"),
    )

    def __init__(self) -> None:
        self.calls = 0

    @property
    def version(self) -> str:
        return "keyword-fake/1"

    @property
    def dim(self) -> int:
        return len(self.TOPICS) + 8

    def _vector(self, text: str) -> np.ndarray:
        lowered = text.lower()
        vector = np.zeros(self.dim, dtype=np.float32)
        for axis, words in enumerate(self.TOPICS):
            if any(word in lowered for word in words):
                vector[axis] = 1.0
        digest = hashlib.sha256(lowered.encode()).digest()
        noise = np.frombuffer(digest[:8], dtype=np.uint8).astype(np.float32) / 255.0 - 0.5
        # Texts without a topic are spread over the noise axes (far from each other).
        vector[len(self.TOPICS) :] = noise * (0.05 if vector.any() else 1.0)
        return vector / np.linalg.norm(vector)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += len(texts)
        return np.vstack([self._vector(t) for t in texts]) if texts else np.zeros((0, self.dim))

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode_queries(texts)
