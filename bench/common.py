"""What the bench scripts share: run a labtrain training as its own process and measure it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from trainers.custom import tree_rss_mb

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def timed(cmd: list[str], log: Path, env: dict | None = None) -> tuple[float, float, int]:
    """Run a command under GNU time; (wall seconds, peak RSS in GB, exit code)."""
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "PEAK_RSS_KB=%M", *cmd], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    wall = time.monotonic() - started
    peak = re.findall(r"PEAK_RSS_KB=(\d+)", log.read_text())
    return wall, (int(peak[-1]) / 1e6 if peak else float("nan")), proc.returncode


def timed_tree(cmd: list[str], log: Path, env: dict | None = None) -> tuple[float, float, int]:
    """Like `timed`, but the peak is of the whole process tree's summed RSS, sampled twice a
    second: a Spark NLP training is a Python process and its JVM."""
    started, peak = time.monotonic(), 0
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        while proc.poll() is None:
            peak = max(peak, tree_rss_mb(proc.pid))
            time.sleep(0.5)
    return time.monotonic() - started, peak * 2**20 / 1e9, proc.returncode


def write_snapshot(path: Path, rows: list[dict]) -> None:
    """rows: task_id, split, text, result (JSON list in the export's result format)."""
    pq.write_table(pa.Table.from_pylist(rows), path)


def run_trainer(work: Path, name: str, spec: dict, tree: bool = False) -> tuple[dict, float, float]:
    """`python -m trainers.run` on a spec; returns (metrics.json, wall seconds, peak RSS GB);
    `tree`: the peak of the process and its children together (see `timed_tree`)."""
    spec = {**spec, "output_dir": str(work / f"out_{name}")}
    (work / f"{name}.json").write_text(json.dumps(spec))
    wall, peak, code = (timed_tree if tree else timed)(
        [sys.executable, "-m", "trainers.run", str(work / f"{name}.json")],
        work / f"{name}.log",
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if code:
        raise SystemExit(f"{name} failed; see {work / f'{name}.log'}")
    return json.loads((work / f"out_{name}" / "metrics.json").read_text()), wall, peak


def serve(home: Path, num_cpus: int, port: int) -> dict:
    """`labtrain serve --detach` on its own home and port; its service.json (url, admin_token, ...)."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ray_app.cli",
            "serve",
            "--detach",
            "--json",
            "--home",
            str(home),
            "--port",
            str(port),
            "--num-cpus",
            str(num_cpus),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout)


def stop(home: Path) -> None:
    subprocess.run([sys.executable, "-m", "ray_app.cli", "stop", "--home", str(home)], capture_output=True, cwd=ROOT)


def minutes(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m {s:02d}s"
