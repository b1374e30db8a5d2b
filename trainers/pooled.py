"""Multiple choice, fine-tuned: the packaged sentence encoder (all-MiniLM-L6-v2), mean pooled and
normalised as it was trained, with a sigmoid head per label, trained end to end. The sequence
classifier of `trainers.sequence` reads the [CLS] token through BERT's pooler instead, which this
encoder was never trained to fill: on GoEmotions (28 labels, the 10k sample) it scored macro F1
0.100 where a frozen linear probe of the mean-pooled embeddings reaches 0.38 on dev.

The new head layer learns `HEAD_LR_SCALE` times faster than the encoder. The folder is the few-shot
path's: a SetFit / sentence-transformers folder whose `model_head.pkl` holds scikit-learn logistic
regressions carrying the trained head's weights, so `trainers.fewshot.FewShotModel` predicts with it
and `SentenceTransformer(folder)` + joblib load it."""

from __future__ import annotations

import numpy as np
import torch

from labtrain.encoders import Encoder
from trainers.dataset import Splits
from trainers.fewshot import FewShotModel, embed, encoder_name, sentence_encoder
from trainers.loop import EpochResult, epoch_note, train_while_improving
from trainers.reporting import EpochTable, Reporter
from trainers.sequence import score, tune_thresholds
from trainers.spec import TrainParams

HEAD_LR_SCALE = 20.0  # a new layer next to pretrained ones (as the NER casing rows)
SCALE = 4.0  # the unit-length embedding times the typical length of the encoder's mean (about 4)


class _TorchHead:
    """The head while it trains, answering as scikit-learn's heads do."""

    def __init__(self, linear: torch.nn.Linear):
        self.linear = linear

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        weight = self.linear.weight.detach().float().cpu().numpy()
        bias = self.linear.bias.detach().float().cpu().numpy()
        return 1 / (1 + np.exp(-(SCALE * x @ weight.T + bias)))


def sklearn_head(linear: torch.nn.Linear, dimensions: int):
    """One scikit-learn logistic regression per label with the trained layer's weights (SCALE folded
    in): fitted once on two placeholder rows so that every attribute scikit-learn needs exists, then
    given the weights. Its probabilities are the layer's sigmoids."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    n = linear.out_features
    head = OneVsRestClassifier(LogisticRegression()).fit(np.eye(2, dimensions), np.array([[1] * n, [0] * n]))
    weight = SCALE * linear.weight.detach().float().cpu().numpy().astype(np.float64)
    bias = linear.bias.detach().float().cpu().numpy().astype(np.float64)
    for j, estimator in enumerate(head.estimators_):
        estimator.coef_, estimator.intercept_ = weight[j : j + 1].copy(), bias[j : j + 1].copy()
    return head


def train_pooled_classifier(
    splits: Splits,
    labels: list[str],
    params: TrainParams,
    lr: float,
    device_name: str,
    reporter: Reporter,
    registered: Encoder | None = None,
) -> tuple[FewShotModel, list[EpochResult]]:
    device, source, tokenizer, encoder = sentence_encoder(params, device_name, reporter, registered)
    max_length = min(params.max_length, registered.max_length) if registered else params.max_length
    layer = torch.nn.Linear(encoder.config.hidden_size, len(labels)).to(device)
    network = torch.nn.ModuleDict({"encoder": encoder, "dropout": torch.nn.Dropout(params.dropout), "head": layer})
    model = FewShotModel(
        encoder, tokenizer, _TorchHead(layer), labels, True, [0.5] * len(labels), device, max_length, source
    )
    reporter.line(
        f"model: {encoder_name(registered)} sentence encoder (mean pooled, normalised) + a sigmoid head over {len(labels)} "
        f"labels, fine-tuned end to end (the head at {HEAD_LR_SCALE:g}x the learning rate); source {source}"
    )
    index = {label: i for i, label in enumerate(labels)}

    def step(batch: list) -> torch.Tensor:
        pooled = embed(encoder, tokenizer, [e.text for e in batch], device, max_length, len(batch), grad=True)
        target = torch.zeros(len(batch), len(labels), device=device)
        for row, example in enumerate(batch):
            for label in example.labels:
                target[row, index[label]] = 1.0
        logits = layer(network["dropout"](SCALE * pooled))
        return torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), target)

    def validate() -> dict | None:
        if not splits.validation:
            return None
        model.thresholds = tune_thresholds(model, splits.validation)
        return score(model, splits.validation)["micro"]

    table, epochs = EpochTable(reporter), []
    for result in train_while_improving(
        network,
        splits.train,
        params,
        lr,
        step,
        validate,
        lambda f: reporter.progress(100 * f * 0.95),
        length=lambda e: len(e.text),
        lr_scales={"head": HEAD_LR_SCALE},
        checkpoints=reporter.checkpoints,
    ):
        note = f"thresholds {min(model.thresholds):.2f}-{max(model.thresholds):.2f} "
        table.row(
            result.epoch,
            result.loss,
            result.scores,
            result.seconds,
            (note + epoch_note(result, params.early_stopping_patience)).strip(),
        )
        reporter.progress(100 * 0.95 * result.epoch / params.epochs, result.epoch, result.scores)
        epochs.append(result)
    model.thresholds = tune_thresholds(model, splits.validation)
    model.head = sklearn_head(layer, encoder.config.hidden_size)
    return model, epochs
