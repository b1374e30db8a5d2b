"""The defaults of each training type and embeddings: the best recipe found for it, each choice made on
validation data (the README's "Default recipes" says which runs chose what). A parameter the request
gives wins over the recipe; the recipe wins over `TrainParams`' generic defaults. Classification and
assertion have two recipes, the fine-tuned head's and the few-shot path's (`trainers.fewshot`)."""

from __future__ import annotations

FEW_SHOT = "few-shot"
MULTIPLE = "multiple choice"  # classification with multiple choice: the mean-pooled head (trainers.pooled)
FEW_SHOT_BELOW = 64  # few_shot "auto": that path when the median label has fewer training examples (bench/fewshot.py)
FEW_SHOT_TYPES = ("classification", "assertion")

RECIPES: dict[tuple[str, ...], dict] = {
    # CoNLL-2003 (bench/ner_vs_spacy.py, chosen on its dev set): warmup, a decaying rate and the
    # average of the last quarter's weights; bf16 where the CPU or GPU has it natively
    ("ner", "minilm"): {
        "epochs": 4,
        "learning_rate": 1e-4,
        "warmup": 0.1,
        "decay": 0.5,
        "bf16": True,
        "average_last": 0.25,
    },
    ("ner", "bilstm"): {"epochs": 12, "learning_rate": 1e-3, "dropout": 0.5, "decay": 0.05},
    ("classification", "minilm"): {"epochs": 5, "learning_rate": 5e-5},
    ("classification", "minilm", FEW_SHOT): {"epochs": 1, "learning_rate": 2e-5},
    # GoEmotions' 10k sample, its dev set validating (bench/recipes.py goemotions)
    ("classification", "minilm", MULTIPLE): {"epochs": 3, "learning_rate": 1e-4, "warmup": 0.1},
    ("assertion", "minilm"): {"epochs": 5, "learning_rate": 5e-5},
    ("assertion", "minilm", FEW_SHOT): {"epochs": 1, "learning_rate": 2e-5},
    ("relation", "minilm"): {"epochs": 5, "learning_rate": 5e-5},
    # FUNSD's 50 training forms, 5 of them validating (bench/visual_ner.py): whole pages in one
    # window, small batches, warmup; 40 epochs, of which the best validating one is kept
    ("visual_ner", "minilm"): {
        "epochs": 40,
        "learning_rate": 1e-4,
        "warmup": 0.1,
        "batch_size": 4,
        "max_length": 512,
    },
    # Spark NLP: NerDL and ClassifierDL over the averaged MiniLM word vectors. NerDL: 1,350 CoNLL-2003
    # training sentences, its dev set validating (bench/recipes.py nerdl): Spark NLP's own dropout 0.5
    # and decay 0.005, small batches, lr 3e-3 (the old 5 epochs, batch 16, dropout 0.1 tagged all O)
    ("ner", "minilm_words"): {"epochs": 20, "learning_rate": 3e-3, "decay": 0.005, "dropout": 0.5, "batch_size": 8},
    ("classification", "minilm_words"): {"epochs": 5, "learning_rate": 3e-4},
}


# A registered encoder (`labtrain embeddings add`) starts from MiniLM's fine-tuning recipe of its type;
# an encoder of BERT-base width or wider takes BASE_LEARNING_RATE at most (BERT's own NER and GLUE
# fine-tunes use 2e-5 to 5e-5; MiniLM's 1e-4 suits its 384 dimensions).
REGISTERED = "registered"
BASE_WIDTH = 768
BASE_LEARNING_RATE = 5e-5


def recipe(training_type: str, embeddings: str | None, path: str = "", hidden_size: int | None = None) -> dict:
    """The recipe's parameters (empty for a custom script or an unknown pair); `hidden_size` names a
    registered encoder's width (its recipe is MiniLM's, see REGISTERED)."""
    if hidden_size is not None:
        found = recipe(training_type, "minilm", path)
        if hidden_size >= BASE_WIDTH and found.get("learning_rate", 0) > BASE_LEARNING_RATE:
            found["learning_rate"] = BASE_LEARNING_RATE
        return found
    key = (training_type, embeddings or "", path) if path else (training_type, embeddings or "")
    return dict(RECIPES.get(key, {}))


# A small NER training part: the recipes above were chosen on thousands of sentences, where 16 a
# batch and 4 epochs make thousands of steps; 30 annotated notes would get 8 steps and learn nothing
# (the examples/ project: test F1 0.000). Below SMALL_BELOW sequences a training left to the recipe
# takes batches of SMALL_BATCH and enough epochs for MIN_STEPS steps, at most MAX_EPOCHS (that
# project's NER, one seed: batch 4 and 20 epochs 0.874 in 40 s; batch 4 and 10 epochs 0.772; batch 16 and
# 40 epochs 0.628; this schedule gives it 19 epochs).
SMALL_BELOW = 400
SMALL_BATCH = 4
MIN_STEPS = 150
MAX_EPOCHS = 20


def small_data_schedule(items: int, batch_size: int, epochs: int, given: frozenset[str]) -> tuple[int, int] | None:
    """The batch size and epochs for a small training part of `items` sequences, or None when the
    recipe's values stand (enough data, or the request gave both)."""
    if items >= SMALL_BELOW or {"batch_size", "epochs"} <= given:
        return None
    batch = batch_size if "batch_size" in given else min(batch_size, SMALL_BATCH)
    steps = -(-max(1, items) // batch)
    wanted = epochs if "epochs" in given else max(epochs, min(MAX_EPOCHS, -(-MIN_STEPS // steps)))
    return None if (batch, wanted) == (batch_size, epochs) else (batch, wanted)
