"""Local word vectors for Spark NLP's `WordEmbeddings` (nothing may be downloaded): the packaged
all-MiniLM-L6-v2's input word-piece embeddings, averaged over each word's pieces and reduced from
384 to 300 dimensions by PCA, because NerDL's bundled graphs take 300 but no 384."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from trainers.embeddings import minilm_path

DIMENSIONS = 300
STORAGE_REF = f"labtrain_minilm_words_{DIMENSIONS}"


def piece_table() -> tuple[np.ndarray, object]:
    """MiniLM's word-piece embedding table projected on its first DIMENSIONS principal
    components, and its tokenizer."""
    from safetensors import safe_open
    from transformers import AutoTokenizer

    source = minilm_path()
    with safe_open(str(source / "model.safetensors"), "np") as weights:
        table = weights.get_tensor("embeddings.word_embeddings.weight").astype(np.float64)
    centered = table - table.mean(0)
    _, _, components = np.linalg.svd(centered, full_matrices=False)
    projected = centered @ components[:DIMENSIONS].T
    # GloVe-like magnitudes (standard deviation 0.5), which NerDL's graphs were made for.
    return (0.5 * projected / projected.std()).astype(np.float32), AutoTokenizer.from_pretrained(source)


def write_vectors(words: Iterable[str], path: Path) -> int:
    """Writes `word v1 ... v300` lines (lower case) for the given words and MiniLM's whole-word
    vocabulary, so that text seen at prediction time is mostly covered; returns the count."""
    table, tokenizer = piece_table()
    vocabulary = {w.lower() for w in words if w.strip()}
    vocabulary |= {t for t in tokenizer.get_vocab() if t.isalpha() and not t.startswith("[")}
    ordered = sorted(vocabulary)
    pieces = tokenizer(ordered, add_special_tokens=False)["input_ids"]
    with open(path, "w", encoding="utf-8") as out:
        for word, ids in zip(ordered, pieces):
            if ids and " " not in word:
                vector = table[ids].mean(0)
                out.write(word + " " + " ".join(f"{v:.4f}" for v in vector) + "\n")
    return len(ordered)
