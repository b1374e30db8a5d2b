"""Fine-tuned MiniLM sequence classifier: single choice (softmax) or multiple choice (sigmoid
with one threshold per label, tuned on validation). Classification, assertion status and
relations use it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from labtrain.encoders import Encoder
from trainers.dataset import Example, Splits
from trainers.embeddings import minilm_path
from trainers.encoders import head_config, load_tokenizer, local_folder
from trainers.loop import EpochResult, epoch_note, resolve_device, seed_everything, train_while_improving
from trainers.metrics import classification_scores, multilabel_scores
from trainers.reporting import EpochTable, Reporter
from trainers.spec import TrainParams


@dataclass
class SequenceModel:
    model: AutoModelForSequenceClassification
    tokenizer: AutoTokenizer
    labels: list[str]
    multiple: bool
    thresholds: list[float]  # multiple choice: one per label
    device: torch.device
    max_length: int

    def probabilities(self, texts: list[str], batch_size: int = 32) -> torch.Tensor:
        self.model.eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                enc = self.tokenizer(
                    texts[i : i + batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                logits = self.model(**enc).logits
                out.append((torch.sigmoid(logits) if self.multiple else torch.softmax(logits, -1)).cpu())
        return torch.cat(out) if out else torch.zeros(0, len(self.labels))

    def predict(self, texts: list[str]) -> list[list[str]]:
        probs = self.probabilities(texts)
        if self.multiple:
            return [[lab for lab, p, t in zip(self.labels, row, self.thresholds) if p >= t] for row in probs.tolist()]
        return [[self.labels[int(i)]] for i in probs.argmax(-1)]

    def save(self, directory: Path) -> None:
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)

    @classmethod
    def load(
        cls, directory: Path, multiple: bool, thresholds: list[float] | None, max_length: int, device: str = "cpu"
    ) -> SequenceModel:
        model = AutoModelForSequenceClassification.from_pretrained(directory).to(device)
        labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        return cls(
            model,
            load_tokenizer(directory, model.config.model_type),
            labels,
            multiple,
            thresholds or [0.5] * len(labels),
            torch.device(device),
            max_length,
        )


def score(model: SequenceModel, examples: list[Example]) -> dict:
    predicted = model.predict([e.text for e in examples])
    if model.multiple:
        return multilabel_scores([set(e.labels) for e in examples], [set(p) for p in predicted], model.labels)
    return classification_scores([e.labels[0] for e in examples], [p[0] for p in predicted], model.labels)


def tune_thresholds(model: SequenceModel, examples: list[Example]) -> list[float]:
    """Per label, the sigmoid threshold with the best F1 on validation, among thresholds where the
    label's precision is at least twice its prevalence. A label the model cannot yet tell apart
    would otherwise get 'predict it everywhere'; it takes the threshold with the best micro F1
    over all labels instead. Without validation data: 0.5."""
    if not examples:
        return [0.5] * len(model.labels)
    probs = model.probabilities([e.text for e in examples])
    gold = torch.tensor([[label in e.labels for label in model.labels] for e in examples])
    candidates = torch.arange(1, 46) / 50
    predicted = probs.unsqueeze(0) >= candidates.view(-1, 1, 1)  # candidates x examples x labels
    tp = (predicted & gold).sum(1).float()
    fp = (predicted & ~gold).sum(1).float()
    fn = (~predicted & gold).sum(1).float()
    micro = 2 * tp.sum(1) / (2 * tp.sum(1) + fp.sum(1) + fn.sum(1)).clamp(min=1)
    fallback = float(candidates[micro.argmax()])
    f1 = 2 * tp / (2 * tp + fp + fn).clamp(min=1)
    prevalence = gold.float().mean(0)
    f1[tp / (tp + fp).clamp(min=1) < 2 * prevalence] = -1.0
    best = candidates[f1.argmax(0)]
    useful = f1.max(0).values > 0
    return [float(t) if ok else fallback for t, ok in zip(best, useful)]


def train_sequence_classifier(
    splits: Splits,
    labels: list[str],
    params: TrainParams,
    lr: float,
    device_name: str,
    reporter: Reporter,
    registered: Encoder | None = None,
) -> tuple[SequenceModel, list[EpochResult]]:
    """Single choice (classification, assertion, relations); multiple choice trains in
    trainers.pooled. SequenceModel still loads the multiple-choice models saved before that."""
    seed_everything(params.seed)
    device = resolve_device(device_name, reporter)
    source = local_folder(registered) if registered else minilm_path()
    config = head_config(
        source,
        params.dropout,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={lab: i for i, lab in enumerate(labels)},
        problem_type="single_label_classification",
    )
    model = AutoModelForSequenceClassification.from_pretrained(source, config=config).to(device)
    tokenizer = load_tokenizer(source, model.config.model_type)
    max_length = min(params.max_length, registered.max_length) if registered else params.max_length
    wrapped = SequenceModel(model, tokenizer, labels, False, [0.5] * len(labels), device, max_length)
    n_params = sum(p.numel() for p in model.parameters())
    what = (
        f"{registered.name} ({registered.architecture}, {registered.layers} layers, hidden {registered.hidden_size})"
        if registered
        else "MiniLM-L6 encoder (6 layers, hidden 384)"
    )
    reporter.line(
        f"model: {what} + softmax head over {len(labels)} labels; {n_params / 1e6:.1f} M parameters; source {source}"
    )
    index = {lab: i for i, lab in enumerate(labels)}

    def step(batch: list[Example]) -> torch.Tensor:
        enc = tokenizer(
            [e.text for e in batch], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        ).to(device)
        target = torch.tensor([index[e.labels[0]] for e in batch], device=device)
        return model(**enc, labels=target).loss

    def validate() -> dict | None:
        return score(wrapped, splits.validation)["micro"] if splits.validation else None

    table, epochs = EpochTable(reporter), []
    for result in train_while_improving(
        model,
        splits.train,
        params,
        lr,
        step,
        validate,
        lambda f: reporter.progress(100 * f * 0.95),
        length=lambda e: len(e.text),
        checkpoints=reporter.checkpoints,
    ):
        note = epoch_note(result, params.early_stopping_patience)
        table.row(result.epoch, result.loss, result.scores, result.seconds, note.strip())
        reporter.progress(100 * 0.95 * result.epoch / params.epochs, result.epoch, result.scores)
        epochs.append(result)
    return wrapped, epochs
