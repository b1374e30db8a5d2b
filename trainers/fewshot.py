"""Few-shot classification, SetFit's method: the packaged sentence encoder (all-MiniLM-L6-v2, mean
pooled and normalised, as it was trained) is fine-tuned contrastively on sentence pairs drawn from
the few labelled examples (same label: similar; different: dissimilar), then a logistic regression
head is fitted on its embeddings. Single choice, multiple choice (one head per label, thresholds
tuned on validation) and assertion status. The model folder is a SetFit / sentence-transformers
folder: `SentenceTransformer(folder)` loads the encoder, `model_head.pkl` is the head."""

from __future__ import annotations

import json
import random
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from labtrain.encoders import Encoder
from trainers.dataset import Example, Splits
from trainers.embeddings import minilm_path
from trainers.encoders import load_tokenizer, local_folder
from trainers.loop import EpochResult, epoch_note, resolve_device, seed_everything, train_while_improving
from trainers.recipes import FEW_SHOT_BELOW, FEW_SHOT_TYPES
from trainers.reporting import EpochTable, Reporter
from trainers.sequence import score, tune_thresholds
from trainers.spec import TrainParams

PAIRS_PER_EXAMPLE = 20  # SetFit's num_iterations: each example gets this many positive and negative pairs
SENTENCE_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling")


def embed(
    encoder, tokenizer, texts: list[str], device, max_length: int, batch_size: int = 64, grad: bool = False
) -> torch.Tensor:
    """Mean-pooled, L2-normalised sentence embeddings (what all-MiniLM-L6-v2 was trained to give)."""
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(
            texts[i : i + batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        ).to(device)
        with torch.set_grad_enabled(grad):
            hidden = encoder(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1))
    return torch.cat(out) if out else torch.zeros(0, encoder.config.hidden_size)


def sentence_encoder(
    params: TrainParams, device_name: str, reporter: Reporter, registered: Encoder | None = None
) -> tuple:
    """Seeded, on its device: (device, source folder, tokenizer, encoder) of all-MiniLM-L6-v2, or of
    a registered encoder."""
    seed_everything(params.seed)
    device = resolve_device(device_name, reporter)
    source = local_folder(registered) if registered else minilm_path()
    model = AutoModel.from_pretrained(source).to(device)
    return device, source, load_tokenizer(source, model.config.model_type), model


def encoder_name(registered: Encoder | None) -> str:
    return f"{registered.name} ({registered.architecture})" if registered else "all-MiniLM-L6-v2"


def sentence_pairs(examples: list[Example], rng: random.Random, per_example: int = PAIRS_PER_EXAMPLE) -> list[tuple]:
    """(text, text, 1.0 if they share a label else 0.0): for each example and round, one partner
    that shares a label and one that shares none, when there is one."""
    pairs = []
    for _ in range(per_example):
        for example in examples:
            labels = set(example.labels)
            same = [e for e in examples if e is not example and labels & set(e.labels)]
            other = [e for e in examples if not labels & set(e.labels)]
            if same:
                pairs.append((example.text, rng.choice(same).text, 1.0))
            if other:
                pairs.append((example.text, rng.choice(other).text, 0.0))
    rng.shuffle(pairs)
    return pairs


@dataclass
class FewShotModel:
    encoder: AutoModel
    tokenizer: AutoTokenizer
    head: object  # sklearn: LogisticRegression, or OneVsRestClassifier of them (multiple choice)
    labels: list[str]
    multiple: bool
    thresholds: list[float]
    device: torch.device
    max_length: int
    source: Path | None = None  # the encoder it started from (None: the packaged MiniLM)

    def embeddings(self, texts: list[str]) -> np.ndarray:
        self.encoder.eval()
        return embed(self.encoder, self.tokenizer, texts, self.device, self.max_length).float().cpu().numpy()

    def probabilities(self, texts: list[str]) -> torch.Tensor:
        if not texts:
            return torch.zeros(0, len(self.labels))
        probs = self.head.predict_proba(self.embeddings(texts))
        if self.multiple and len(self.labels) == 1:
            probs = probs[:, -1:]  # scikit-learn answers a single label's (no, yes)
        return torch.tensor(probs, dtype=torch.float32)

    def predict(self, texts: list[str]) -> list[list[str]]:
        probs = self.probabilities(texts)
        if self.multiple:
            return [[lab for lab, p, t in zip(self.labels, row, self.thresholds) if p >= t] for row in probs.tolist()]
        return [[self.labels[int(i)]] for i in probs.argmax(-1)]

    def fit_head(self, examples: list[Example], seed: int) -> None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier

        x = self.embeddings([e.text for e in examples])
        if self.multiple:
            y = np.array([[label in e.labels for label in self.labels] for e in examples], dtype=int)
            self.head = OneVsRestClassifier(LogisticRegression(max_iter=1000, random_state=seed)).fit(x, y)
        else:
            index = {lab: i for i, lab in enumerate(self.labels)}
            y = np.array([index[e.labels[0]] for e in examples])
            head = LogisticRegression(max_iter=1000, random_state=seed).fit(x, y)
            self.head = _AllLabels(head, len(self.labels))

    def save(self, directory: Path) -> None:
        import joblib

        directory.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        source = self.source or minilm_path()
        if all((source / name).exists() for name in SENTENCE_FILES):
            for name in SENTENCE_FILES:
                target = directory / name
                if (source / name).is_dir():
                    shutil.copytree(source / name, target, dirs_exist_ok=True)
                else:
                    shutil.copy(source / name, target)
        else:
            sentence_transformers_files(directory, self.encoder.config.hidden_size, self.max_length)
        head = self.head.head if isinstance(self.head, _AllLabels) else self.head
        joblib.dump(head, directory / "model_head.pkl")
        (directory / "config_setfit.json").write_text(
            json.dumps(
                {
                    "labels": self.labels,
                    "normalize_embeddings": False,
                    "multi_target_strategy": "one-vs-rest" if self.multiple else None,
                }
            )
        )

    @classmethod
    def load(
        cls, directory: Path, multiple: bool, thresholds: list[float] | None, max_length: int, device: str = "cpu"
    ) -> FewShotModel:
        import joblib

        config = json.loads((Path(directory) / "config_setfit.json").read_text())
        labels = config["labels"]
        head = joblib.load(Path(directory) / "model_head.pkl")
        encoder = AutoModel.from_pretrained(directory).to(device)
        return cls(
            encoder,
            load_tokenizer(directory, encoder.config.model_type),
            head if multiple else _AllLabels(head, len(labels)),
            labels,
            multiple,
            thresholds or [0.5] * len(labels),
            torch.device(device),
            max_length,
        )


def sentence_transformers_files(directory: Path, width: int, max_length: int) -> None:
    """What sentence-transformers reads beside the encoder: mean pooling, then normalisation (as `embed`)."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (directory / "modules.json").write_text(json.dumps(modules, indent=2))
    (directory / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_length}))
    (directory / "config_sentence_transformers.json").write_text(json.dumps({"similarity_fn_name": "cosine"}))
    (directory / "1_Pooling").mkdir(exist_ok=True)
    (directory / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": width, "pooling_mode_mean_tokens": True})
    )
    (directory / "2_Normalize").mkdir(exist_ok=True)


class _AllLabels:
    """A single-choice head's probabilities over every label, also those the train part lacks."""

    def __init__(self, head, n_labels: int):
        self.head, self.n_labels = head, n_labels

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        probs = np.zeros((len(x), self.n_labels))
        probs[:, self.head.classes_] = self.head.predict_proba(x)
        return probs


def train_few_shot(
    splits: Splits,
    labels: list[str],
    multiple: bool,
    params: TrainParams,
    lr: float,
    device_name: str,
    reporter: Reporter,
    registered: Encoder | None = None,
) -> tuple[FewShotModel, list[EpochResult]]:
    device, source, tokenizer, encoder = sentence_encoder(params, device_name, reporter, registered)
    max_length = min(params.max_length, registered.max_length) if registered else params.max_length
    model = FewShotModel(encoder, tokenizer, None, labels, multiple, [0.5] * len(labels), device, max_length, source)
    pairs = sentence_pairs(splits.train, random.Random(params.seed))
    reporter.line(
        f"model: {encoder_name(registered)} sentence encoder (mean pooled, normalised), fine-tuned on {len(pairs)} "
        f"sentence pairs of the {len(splits.train)} training examples ({PAIRS_PER_EXAMPLE} rounds), then a "
        f"logistic regression head{' per label' if multiple else ''}; source {source}"
    )

    def step(batch: list[tuple]) -> torch.Tensor:
        left = embed(encoder, tokenizer, [a for a, _, _ in batch], device, max_length, len(batch), grad=True)
        right = embed(encoder, tokenizer, [b for _, b, _ in batch], device, max_length, len(batch), grad=True)
        target = torch.tensor([t for _, _, t in batch], device=device, dtype=left.dtype)
        return torch.nn.functional.mse_loss((left * right).sum(-1), target)  # CosineSimilarityLoss

    def validate() -> dict | None:
        if not splits.validation:
            return None
        model.fit_head(splits.train, params.seed)
        if multiple:
            model.thresholds = tune_thresholds(model, splits.validation)
        return score(model, splits.validation)["micro"]

    table, epochs = EpochTable(reporter), []
    for result in train_while_improving(
        encoder,
        pairs,
        params,
        lr,
        step,
        validate,
        lambda f: reporter.progress(100 * f * 0.9),
        length=lambda p: len(p[0]) + len(p[1]),
        checkpoints=reporter.checkpoints,
    ):
        table.row(
            result.epoch, result.loss, result.scores, result.seconds, epoch_note(result, params.early_stopping_patience)
        )
        reporter.progress(100 * 0.9 * result.epoch / params.epochs, result.epoch, result.scores)
        epochs.append(result)
    model.fit_head(splits.train + splits.validation if not multiple else splits.train, params.seed)
    if multiple:
        model.thresholds = tune_thresholds(model, splits.validation)
    return model, epochs


def few_shot_reason(
    training_type: str, embeddings: str, choice: str, train: list[Example], labels: list[str], registered: bool = False
) -> tuple[bool, str]:
    """Whether this training takes the few-shot path, and the log line that says why. `auto` looks
    at the typical label, the median of the labels' training examples, not the smallest: one rare
    label among well-filled ones (GoEmotions' 10k sample: 'grief' has 19, the median label 317)
    is no few-shot project, and its pairs (20 per example) would cost hours."""
    if training_type not in FEW_SHOT_TYPES or (embeddings != "minilm" and not registered):
        return False, ""
    counts = {label: sum(label in e.labels for e in train) for label in labels}
    smallest = min(counts, key=counts.get)
    typical = statistics.median(counts.values())
    sizes = f"labels have a median of {typical:g} examples, the smallest, {smallest!r}, {counts[smallest]}"
    if choice == "on":
        return True, f"few-shot: asked for (few_shot=on); {sizes}"
    if choice == "off":
        return False, f"fine-tuning: asked for (few_shot=off); {sizes}"
    if typical < FEW_SHOT_BELOW:
        return True, (
            f"few-shot: {sizes} (a median under {FEW_SHOT_BELOW}): SetFit's contrastive sentence-pair "
            "fine-tuning and a logistic head"
        )
    return False, f"fine-tuning: {sizes} (a median of {FEW_SHOT_BELOW} or more): the encoder with a classification head"
