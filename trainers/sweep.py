"""What a parameter search and a train-curve are, without Ray: the search space (parsed from
`lr=1e-5:1e-3:log,dropout=0.1:0.5,batch_size=8|16|32`), the curve's training subsets, the
tables of the log and the curve's plot and verdict. `ray_app.sweep_run` runs them on Ray Tune."""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, pstdev

import pyarrow.compute as pc
import pyarrow.parquet as pq

from trainers.spec import SpecError, TrainParams

ALIASES = {"lr": "learning_rate", "bs": "batch_size"}
INTEGER = ("batch_size", "epochs", "max_length", "early_stopping_patience")
TUNABLE = ("learning_rate", "dropout", "batch_size", "decay", "warmup", "epochs", "max_length", "average_last")
DEFAULT_POINTS = (25, 50, 75, 100)
RISING = 0.005  # F1 gained from the last-but-one point to 100 % above which the curve still rises


def default_space(learning_rate: float) -> dict:
    """Around the embeddings' own learning rate: 10x either way (log), dropout, batch size."""
    return {
        "learning_rate": {"low": learning_rate / 10, "high": learning_rate * 10, "log": True},
        "dropout": {"low": 0.1, "high": 0.5, "log": False},
        "batch_size": {"choices": [8, 16, 32]},
    }


def parse_space(text: str | dict | None) -> dict:
    """`name=low:high[:log]` or `name=a|b|c`, comma-separated (or that already as a dict);
    SpecError naming the parameter at fault. Every value must be a valid parameter."""
    if text is None or text == "" or text == {}:
        return {}
    items = text.items() if isinstance(text, dict) else _split(text)
    space = {}
    for raw, value in items:
        name = ALIASES.get(raw.strip(), raw.strip())
        if name not in TUNABLE:
            raise SpecError(
                f"tune space: {raw!r} cannot be searched; searchable: lr (learning_rate), "
                + ", ".join(t for t in TUNABLE if t != "learning_rate")
            )
        if name in space:
            raise SpecError(f"tune space: {name} is given twice")
        space[name] = _dimension(name, value)
        for v in _extremes(space[name]):
            try:
                TrainParams.parse({name: v})
            except (SpecError, TypeError) as exc:
                raise SpecError(f"tune space: {name}: {exc}") from None
    return space


def _split(text: str) -> list[tuple[str, str]]:
    items = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise SpecError(f"tune space: {part!r} is not name=low:high[:log] or name=a|b|c")
        name, value = part.split("=", 1)
        items.append((name, value.strip()))
    return items


def _number(name: str, text, integer: bool):
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise SpecError(f"tune space: {name}: {text!r} is not a number") from None
    if integer:
        if value != int(value):
            raise SpecError(f"tune space: {name}: {text!r} is not an integer")
        return int(value)
    return value


def _dimension(name: str, value) -> dict:
    integer = name in INTEGER
    if isinstance(value, dict):
        if "choices" in value:
            value = "|".join(str(v) for v in value["choices"])
        else:
            value = ":".join([str(value.get("low")), str(value.get("high"))] + (["log"] if value.get("log") else []))
    if isinstance(value, (list, tuple)):
        value = "|".join(str(v) for v in value)
    value = str(value)
    if "|" in value:
        choices = [_number(name, v.strip(), integer) for v in value.split("|") if v.strip()]
        if len(choices) < 2:
            raise SpecError(f"tune space: {name}: give at least two choices (a|b)")
        return {"choices": choices}
    parts = value.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
        raise SpecError(f"tune space: {name}={value} is not low:high, low:high:log or a|b|c")
    if integer:
        raise SpecError(f"tune space: {name} is an integer: give choices (e.g. {name}=8|16|32)")
    low, high = _number(name, parts[0], False), _number(name, parts[1], False)
    if not low < high:
        raise SpecError(f"tune space: {name}: low {low:g} must be below high {high:g}")
    log = len(parts) == 3
    if log and low <= 0:
        raise SpecError(f"tune space: {name}: a log range needs low > 0")
    return {"low": low, "high": high, "log": log}


def _extremes(dimension: dict) -> list:
    return dimension["choices"] if "choices" in dimension else [dimension["low"], dimension["high"]]


def describe_space(space: dict) -> str:
    out = []
    for name, d in space.items():
        out.append(
            f"{name}={'|'.join(str(c) for c in d['choices'])}"
            if "choices" in d
            else f"{name}={d['low']:g}:{d['high']:g}{':log' if d['log'] else ''}"
        )
    return ", ".join(out)


def parse_budget(text: str | float | int | None) -> float | None:
    """`30m`, `2h`, `90s`, `45` (seconds) -> seconds; None: no budget."""
    if text is None or text == "":
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
        if not match:
            raise SpecError(f"tune budget {text!r} is not a duration such as 90s, 30m or 2h")
        seconds = float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]
    if seconds <= 0:
        raise SpecError(f"tune budget {text!r} must be more than 0 seconds")
    return seconds


def parse_points(points) -> list[int]:
    """Percentages of the training part, e.g. `25,50,75,100`; sorted, each in 1..100."""
    if points is None or points == "" or points == []:
        return list(DEFAULT_POINTS)
    raw = points.split(",") if isinstance(points, str) else list(points)
    out = []
    for p in raw:
        try:
            value = float(str(p).strip().rstrip("%"))
        except ValueError:
            raise SpecError(f"curve points: {str(p).strip()!r} is not a percentage") from None
        if not 0 < value <= 100 or value != int(value):
            raise SpecError(f"curve points: {str(p).strip()!r} must be a whole percentage in 1..100")
        out.append(int(value))
    if len(set(out)) < 2:
        raise SpecError("curve points: give at least two different percentages, e.g. 50,100")
    return sorted(set(out))


# --- the curve ---------------------------------------------------------------------------------


def write_subset(snapshot: str | Path, percent: int, seed: int, path: Path) -> int:
    """The snapshot with `percent` % of its train tasks (a seeded draw; validation and test rows
    kept as they are) written to `path`; returns the number of train tasks kept."""
    table = pq.read_table(snapshot)
    is_train = pc.equal(table["split"], "train")
    train_ids = sorted(set(table.filter(is_train)["task_id"].to_pylist()))
    keep = max(1, math.ceil(len(train_ids) * percent / 100)) if train_ids else 0
    kept = set(random.Random(seed).sample(train_ids, keep)) if percent < 100 else set(train_ids)
    mask = pc.or_(pc.invert(is_train), pc.is_in(table["task_id"], value_set=_array(sorted(kept), table)))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.filter(mask), path)
    return len(kept)


def _array(values: list, table):
    import pyarrow as pa

    return pa.array(values, type=table.schema.field("task_id").type)


@dataclass
class CurvePoint:
    percent: int
    tasks: int
    f1: list[float]  # one per seed that finished

    @property
    def mean(self) -> float | None:
        return mean(self.f1) if self.f1 else None

    @property
    def spread(self) -> float:
        return pstdev(self.f1) if len(self.f1) > 1 else 0.0


def verdict(points: list[CurvePoint]) -> str:
    """One line: is the test F1 still rising at 100 % of the training part?"""
    done = [p for p in points if p.f1]
    if len(done) < 2 or done[-1].percent != 100:
        return "no verdict: fewer than two points finished, or the 100 % point did not"
    last, before = done[-1], done[-2]
    gain = last.mean - before.mean
    noise = max(last.spread, before.spread)
    step = f"{gain:+.3f} F1 from {before.percent} % to 100 %"
    if gain > max(RISING, noise):
        return f"still rising ({step}): more annotation will likely help"
    if gain < -max(RISING, noise):
        return (
            f"falling at the end ({step}): the scores are noisy at this size; more annotation may help, "
            "try more seeds or points"
        )
    return f"flat ({step}): more annotation of the same kind is unlikely to help much"


def curve_table(points: list[CurvePoint]) -> str:
    lines = [f"{'TRAIN %':>7}  {'TASKS':>6}  {'TEST F1':>8}  {'SPREAD':>6}  SEEDS"]
    for p in points:
        f1 = f"{p.mean:8.3f}" if p.f1 else f"{'failed':>8}"
        lines.append(
            f"{p.percent:>7}  {p.tasks:>6}  {f1}  {p.spread:6.3f}  " + (", ".join(f"{v:.3f}" for v in p.f1) or "-")
        )
    return "\n".join(lines)


def save_curve_png(points: list[CurvePoint], path: Path, title: str, line: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [p for p in points if p.f1]
    fig, ax = plt.subplots(figsize=(6, 4))
    for p in done:
        ax.scatter([p.tasks] * len(p.f1), p.f1, color="tab:blue", alpha=0.35, s=14)
    ax.plot([p.tasks for p in done], [p.mean for p in done], marker="o", color="tab:blue")
    for p in done:
        ax.annotate(
            f"{p.percent} %", (p.tasks, p.mean), textcoords="offset points", xytext=(0, 8), ha="center", fontsize=8
        )
    ax.set_xlabel("training tasks")
    ax.set_ylabel("test F1 (micro)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.text(0.5, 0.01, line, ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- the search's table ------------------------------------------------------------------------


def trials_table(trials: list[dict], names: list[str]) -> str:
    """One row per trial: its parameters, epochs run, best validation F1, how it ended."""

    def cell(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    header = ["TRIAL"] + [n.upper() for n in names] + ["EPOCHS", "VAL F1", "END"]
    rows = [
        [str(t["trial"])]
        + [cell(t["params"].get(n)) for n in names]
        + [
            str(t.get("epochs") or 0),
            f"{t['val_f1']:.3f}" if t.get("val_f1") is not None else "-",
            t["end"] + (" *" if t.get("best") else ""),
        ]
        for t in trials
    ]
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.rjust(w) if i < len(header) - 1 else c for i, (c, w) in enumerate(zip(r, widths)))
        for r in [header] + rows
    )
