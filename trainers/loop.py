"""The training loop every PyTorch trainer shares: seeded, device-aware, learning-rate warmup and
decay, early stopping on validation; it yields one row per epoch and never knows who listens."""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainers.reporting import Reporter
from trainers.spec import TrainParams


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def native_bf16(device: torch.device) -> bool:
    """Whether bfloat16 is native here (a recent GPU, or a CPU with AVX-512 BF16 or AMX): elsewhere
    autocast would emulate it, slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_device(requested: str, reporter: Reporter) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        reporter.line("device: cuda was asked for but no GPU is present; training on cpu")
        return torch.device("cpu")
    device = torch.device(requested)
    reporter.line(
        f"device: {device}"
        + (f" ({torch.cuda.get_device_name(0)})" if device.type == "cuda" else f" ({torch.get_num_threads()} threads)")
    )
    return device


def batches(
    items: list, size: int, rng: random.Random | None = None, length: Callable[[object], int] | None = None
) -> Iterator[list]:
    """Shuffled batches; with `length`, items of similar length share a batch (less padding):
    sorted within pools of 50 batches, then the batches are shuffled."""
    order = list(range(len(items)))
    if rng is not None:
        rng.shuffle(order)
    if length is not None:
        pool = 50 * size
        order = [
            j for i in range(0, len(order), pool) for j in sorted(order[i : i + pool], key=lambda k: length(items[k]))
        ]
    chunks = [order[i : i + size] for i in range(0, len(order), size)]
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
    averaged: dict | None = None  # the last epoch: validation scores of the averaged weights
    average_kept: bool = False  # ... and whether they are the weights the model ends with


@dataclass
class EpochCheckpoints:
    """The loop's state after every epoch, saved into `folder` and handed to `saved` (Ray Train
    keeps it where every node reaches it); `resume`: a saved state to go on from (its next epoch)."""

    folder: Path
    saved: Callable[[Path, int], None]
    resume: Path | None = None

    STATE = "loop_state.pt"

    def save(self, epoch: int, state: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        torch.save({**state, "epoch": epoch}, self.folder / self.STATE)
        self.saved(self.folder, epoch)

    def load(self) -> dict | None:
        if self.resume is None:
            return None
        return torch.load(self.resume / self.STATE, weights_only=False)


def train_while_improving(
    model: torch.nn.Module,
    train: list,
    params: TrainParams,
    lr: float,
    step: Callable[[list], torch.Tensor],
    validate: Callable[[], dict | None],
    progress: Callable[[float], None] | None = None,
    length: Callable[[object], int] | None = None,
    lr_scales: dict[str, float] | None = None,
    checkpoints: EpochCheckpoints | None = None,
) -> Iterator[EpochResult]:
    """Run epochs; after each, validate (micro scores with an 'f1'). Keeps the best weights on the
    model when it ends; stops early after `early_stopping_patience` epochs without improvement.
    `lr_scales` maps parameter name prefixes to a multiple of the learning rate (new layers
    learn faster than pretrained ones). With `params.average_last`, the weights of that final
    share of steps are averaged (every `AVERAGE_EVERY` steps); after the last epoch the average is
    validated and kept unless an earlier epoch validates better (then the best epoch is kept). With `checkpoints`, the
    whole state (weights, optimizer, random generators, best weights, the average) is saved after
    every epoch, and a run given a saved state goes on from the epoch after it."""
    optimizer = torch.optim.AdamW(parameter_groups(model, lr_scales or {}), lr=lr)
    device = next(model.parameters()).device
    device_type, bf16 = device.type, params.bf16 and native_bf16(device)
    rng = random.Random(params.seed)
    n_batches = max(1, -(-len(train) // params.batch_size))
    warmup_steps = params.warmup * n_batches * params.epochs
    best_f1, best_state, waited = float("-inf"), None, 0
    average = WeightAverage(model, params.average_last * n_batches * params.epochs) if params.average_last else None
    first = 1
    saved = checkpoints.load() if checkpoints else None
    if saved:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        rng.setstate(saved["rng"])
        torch.set_rng_state(saved["torch_rng"])
        best_f1, waited, first = saved["best_f1"], saved["waited"], saved["epoch"] + 1
        best_state = saved["best"] if saved["best"] is not None else copy.deepcopy(saved["model"])
        if average:
            average.count, average.mean = saved["average"]["count"], saved["average"]["mean"]
    for epoch in range(first, params.epochs + 1):
        model.train()
        started, total = time.monotonic(), 0.0
        for i, batch in enumerate(batches(train, params.batch_size, rng, length)):
            done = (epoch - 1) * n_batches + i  # steps done before this one
            for group in optimizer.param_groups:
                group["lr"] = group["lr_scale"] * step_lr(lr, params, done, n_batches, warmup_steps)
            optimizer.zero_grad()
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
                loss = step(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            if average:
                average.step(done + 1, n_batches * params.epochs)
            total += loss.item()
            if progress:
                progress(((epoch - 1) + (i + 1) / n_batches) / params.epochs)
        model.eval()
        with torch.no_grad():
            scores = validate()
        f1 = scores["f1"] if scores else float(epoch)  # no validation set: the last epoch is kept
        improved = f1 > best_f1
        earlier = best_f1  # the best of the epochs before this one
        if f1 >= best_f1:  # a tie keeps the later, longer-trained weights but is no improvement
            best_state = copy.deepcopy(model.state_dict())
        waited = 0 if improved else waited + 1
        best_f1 = max(best_f1, f1)
        stop = bool(params.early_stopping_patience) and waited >= params.early_stopping_patience
        averaged, average_kept = None, False
        if average and average.count and (stop or epoch == params.epochs):
            # The average is kept unless an earlier epoch validates better (then the best epoch is), and
            # kept without validation data. Not weighed against the last epoch's own weights: a
            # share held out sentence by sentence shares documents with training and favours the weights
            # that remember them; on CoNLL-2003's own dev set the average was the better (bench/ner_choices.py).
            averaged, weights = average.validate(validate)
            average_kept = not averaged or averaged["f1"] >= earlier
            if average_kept:
                best_f1, best_state = averaged["f1"] if averaged else best_f1, weights
        seconds = time.monotonic() - started  # the epoch's training and validation, without its checkpoint
        if checkpoints and not stop and epoch < params.epochs:  # the last epoch's state is the model itself
            current = model.state_dict()
            checkpoints.save(
                epoch,
                {
                    "model": current,
                    "optimizer": optimizer.state_dict(),
                    "rng": rng.getstate(),
                    "torch_rng": torch.get_rng_state(),
                    "best_f1": best_f1,
                    "waited": waited,
                    "best": None if best_state is not None and _same(best_state, current) else best_state,
                    "average": {"count": average.count, "mean": average.mean} if average else None,
                },
            )
        yield EpochResult(epoch, total / n_batches, scores, seconds, improved, stop, averaged, average_kept)
        if stop:
            break
    if best_state is not None:
        model.load_state_dict(best_state)


def _same(state: dict, other: dict) -> bool:
    """Whether two state dicts hold equal weights (the best epoch is often the current one: saved once)."""
    return state.keys() == other.keys() and all(torch.equal(state[k], other[k]) for k in state)


AVERAGE_EVERY = 20


class WeightAverage:
    """The running mean of the model's weights over the final `steps` optimizer steps, sampled
    every AVERAGE_EVERY steps (stochastic weight averaging without its learning-rate cycle)."""

    def __init__(self, model: torch.nn.Module, steps: float):
        self.model, self.steps, self.count = model, steps, 0
        self.mean: dict[str, torch.Tensor] = {}

    def step(self, done: int, total: int) -> None:
        if done < total - self.steps or done % AVERAGE_EVERY:
            return
        self.count += 1
        for name, value in self.model.state_dict().items():
            if not value.is_floating_point():
                self.mean[name] = value.clone()
            elif name in self.mean:
                self.mean[name] += (value - self.mean[name]) / self.count
            else:
                self.mean[name] = value.detach().clone()

    def validate(self, validate: Callable[[], dict | None]) -> tuple[dict | None, dict]:
        """Validation scores of the averaged weights, and those weights; the model's own weights
        are put back."""
        own = copy.deepcopy(self.model.state_dict())
        self.model.load_state_dict(self.mean)
        self.model.eval()
        with torch.no_grad():
            scores = validate()
        self.model.load_state_dict(own)
        return scores, copy.deepcopy(self.mean)


def parameter_groups(model: torch.nn.Module, lr_scales: dict[str, float]) -> list[dict]:
    groups: dict[float, list] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            scale = next((v for k, v in lr_scales.items() if name.startswith(k)), 1.0)
            groups.setdefault(scale, []).append(param)
    return [{"params": ps, "lr_scale": scale} for scale, ps in groups.items()]


def step_lr(lr: float, params: TrainParams, done: int, n_batches: int, warmup_steps: float) -> float:
    """lr / (1 + decay * epochs done), the fraction of an epoch counting, ramped up from 0 over the
    warmup steps. At each epoch's first step without warmup it is the page's lr / (1 + decay * epoch)."""
    rate = lr / (1 + params.decay * done / n_batches)
    return rate * min(1.0, (done + 1) / warmup_steps) if warmup_steps else rate


def epoch_note(result: EpochResult, patience: int) -> str:
    """The log's marks: '*' for a new best validation score, why training stops early, and the
    averaged weights' validation F1."""
    note = "*" if result.improved else ""
    if result.averaged:
        note += f" averaged weights of the last steps: F1 {result.averaged['f1']:.3f}, " + (
            "kept" if result.average_kept else "not kept (an earlier epoch's weights validate better)"
        )
    if result.stops_early:
        note += f" early stopping: no improvement on validation for {patience} epochs; keeping the best epoch"
    return note.strip()
