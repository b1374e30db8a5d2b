"""How a training tells the world what it does: a `Reporter` gets log lines and progress; the
training log file is one listener, Ray and the console are others. Trainers never know who listens."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)


class Listener(Protocol):
    def __call__(self, event: dict) -> None: ...


class StopTraining(Exception):
    """Raised by a listener to end the training at once (a search's time budget is spent); unlike
    any other exception of a listener, it reaches the trainer's caller."""


class Reporter:
    """Fan-out of training events: {"kind": "log", "line"} and {"kind": "progress", "progress"
    (0-100), "epoch", "metrics"}."""

    def __init__(self, log_path: Path | None = None, listeners: list[Listener] | None = None):
        self.listeners: list[Callable[[dict], None]] = list(listeners or [])
        self.log_file = open(log_path, "a", encoding="utf-8") if log_path else None
        self.started = time.monotonic()
        self.checkpoints = None  # trainers.loop.EpochCheckpoints, when the run saves its epochs

    def checkpoint(self, folder: Path, epoch: int) -> None:
        """The training's state after `epoch` is in `folder` (a listener keeps it; see trainers.loop)."""
        self._emit({"kind": "checkpoint", "path": str(folder), "epoch": epoch})

    def line(self, text: str = "") -> None:
        for line in text.splitlines() or [""]:
            if self.log_file:
                self.log_file.write(line + "\n")
                self.log_file.flush()
            self._emit({"kind": "log", "line": line})

    def progress(self, progress: float, epoch: int | None = None, metrics: dict | None = None) -> None:
        self._emit(
            {
                "kind": "progress",
                "progress": round(min(max(progress, 0.0), 100.0), 1),
                "epoch": epoch,
                "metrics": metrics or {},
            }
        )

    def _emit(self, event: dict) -> None:
        for listener in self.listeners:
            try:
                listener(event)
            except StopTraining:
                raise
            except Exception:  # a broken listener must not stop a training
                log.exception("training event listener failed")

    def close(self) -> None:
        if self.log_file:
            self.log_file.close()
            self.log_file = None


class EpochTable:
    """The per-epoch table of the training log: E, LOSS, P, R, F1 (validation), seconds."""

    HEADER = f"{'E':>3}  {'LOSS':>9}  {'P':>6}  {'R':>6}  {'F1':>6}  {'SECONDS':>7}"

    def __init__(self, reporter: Reporter):
        self.reporter = reporter
        reporter.line(self.HEADER)
        reporter.line("-" * len(self.HEADER))

    def row(self, epoch: int, loss: float, scores: dict | None, seconds: float, note: str = "") -> None:
        p, r, f = ((scores or {}).get(k) for k in ("precision", "recall", "f1"))
        cell = lambda v: f"{v:6.3f}" if v is not None else f"{'-':>6}"  # noqa: E731
        self.reporter.line(
            f"{epoch:>3}  {loss:9.4f}  {cell(p)}  {cell(r)}  {cell(f)}  {seconds:7.1f}" + (f"  {note}" if note else "")
        )


def label_table(per_label: dict, title: str) -> str:
    width = max([len(title)] + [len(label) for label in per_label]) + 2
    lines = [f"{title:<{width}}{'P':>8}{'R':>8}{'F1':>8}{'SUPPORT':>9}"]
    for label, s in per_label.items():
        lines.append(f"{label:<{width}}{s['precision']:8.3f}{s['recall']:8.3f}{s['f1']:8.3f}{s['support']:9d}")
    return "\n".join(lines)


def matrix_table(confusion: dict) -> str:
    labels, matrix = confusion["labels"], confusion["matrix"]
    corner = "gold \\ predicted"
    width = max(len(label) for label in labels + [corner]) + 2
    col = max(6, max(len(label) for label in labels) + 2)
    lines = [f"{corner:<{width}}" + "".join(f"{label:>{col}}" for label in labels)]
    for label, row in zip(labels, matrix):
        lines.append(f"{label:<{width}}" + "".join(f"{n:>{col}}" for n in row))
    return "\n".join(lines)


def save_confusion_png(confusion: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, matrix = confusion["labels"], confusion["matrix"]
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title)
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, n in enumerate(row):
            ax.text(j, i, str(n), ha="center", va="center", color="white" if n > peak / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
