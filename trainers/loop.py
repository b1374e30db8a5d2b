"""The training loop every PyTorch trainer shares: seeded, device-aware, learning-rate decay per
epoch, early stopping on validation; it yields one row per epoch and never knows who listens."""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from trainers.reporting import Reporter
from trainers.spec import TrainParams


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(requested: str, reporter: Reporter) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        reporter.line("device: cuda was asked for but no GPU is present; training on cpu")
        return torch.device("cpu")
    device = torch.device(requested)
    reporter.line(f"device: {device}" + (f" ({torch.cuda.get_device_name(0)})" if device.type == "cuda" else
                                         f" ({torch.get_num_threads()} threads)"))
    return device


def batches(items: list, size: int, rng: random.Random | None = None,
            length: Callable[[object], int] | None = None) -> Iterator[list]:
    """Shuffled batches; with `length`, items of similar length share a batch (less padding):
    sorted within pools of 50 batches, then the batches are shuffled."""
    order = list(range(len(items)))
    if rng is not None:
        rng.shuffle(order)
    if length is not None:
        pool = 50 * size
        order = [j for i in range(0, len(order), pool)
                 for j in sorted(order[i:i + pool], key=lambda k: length(items[k]))]
    chunks = [order[i:i + size] for i in range(0, len(order), size)]
    if rng is not None and length is not None:
        rng.shuffle(chunks)
    for chunk in chunks:
        yield [items[j] for j in chunk]


@dataclass
class EpochResult:
    epoch: int
    loss: float
    scores: dict | None  # validation micro P/R/F1, None without a validation set
    seconds: float
    improved: bool
    stops_early: bool = False


def train_while_improving(model: torch.nn.Module, train: list, params: TrainParams, lr: float,
                          step: Callable[[list], torch.Tensor], validate: Callable[[], dict | None],
                          progress: Callable[[float], None] | None = None,
                          length: Callable[[object], int] | None = None) -> Iterator[EpochResult]:
    """Run epochs; after each, validate (micro scores with an 'f1'). Keeps the best weights on the
    model when it ends; stops early after `early_stopping_patience` epochs without improvement."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    rng = random.Random(params.seed)
    n_batches = max(1, -(-len(train) // params.batch_size))
    best_f1, best_state, waited = float("-inf"), None, 0
    for epoch in range(1, params.epochs + 1):
        for group in optimizer.param_groups:
            group["lr"] = lr / (1 + params.decay * (epoch - 1))
        model.train()
        started, total = time.monotonic(), 0.0
        for i, batch in enumerate(batches(train, params.batch_size, rng, length)):
            optimizer.zero_grad()
            loss = step(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            total += loss.item()
            if progress:
                progress(((epoch - 1) + (i + 1) / n_batches) / params.epochs)
        model.eval()
        with torch.no_grad():
            scores = validate()
        f1 = scores["f1"] if scores else float(epoch)  # no validation set: the last epoch is kept
        improved = f1 > best_f1
        if f1 >= best_f1:  # a tie keeps the later, longer-trained weights but is no improvement
            best_state = copy.deepcopy(model.state_dict())
        waited = 0 if improved else waited + 1
        best_f1 = max(best_f1, f1)
        stop = bool(params.early_stopping_patience) and waited >= params.early_stopping_patience
        yield EpochResult(epoch, total / n_batches, scores, time.monotonic() - started, improved, stop)
        if stop:
            break
    if best_state is not None:
        model.load_state_dict(best_state)


def epoch_note(result: EpochResult, patience: int) -> str:
    """The log's marks: '*' for a new best validation score, and why training stops early."""
    note = "*" if result.improved else ""
    if result.stops_early:
        note += f" early stopping: no improvement on validation for {patience} epochs; keeping the best epoch"
    return note.strip()
