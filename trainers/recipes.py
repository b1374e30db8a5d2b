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


def recipe(training_type: str, embeddings: str | None, path: str = "") -> dict:
    """The recipe's parameters (empty for a custom script or an unknown pair)."""
    key = (training_type, embeddings or "", path) if path else (training_type, embeddings or "")
    return dict(RECIPES.get(key, {}))
