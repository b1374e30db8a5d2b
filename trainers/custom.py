"""Custom NER training scripts: the contract, and one script run in a process of its own.

The contract (README, "Custom training scripts"). labtrain runs

    python SCRIPT --data DATA --params PARAMS --output OUTPUT

with the labtrain environment's Python, in a working folder of its own, and:

- DATA, a folder: `train.conll` and `dev.conll` (a word and its BIO tag per line, separated by a
  tab, a blank line between documents), `train.parquet` (the snapshot's rows of those two parts:
  task_id, split = train | validation, text, result as in the export) and `labels.json` (labels
  and BIO tags). The test part is not given: labtrain scores the model on it itself.
- PARAMS, `params.json`: the training parameters as the request gave them (epochs,
  learning_rate, decay, dropout, batch_size, seed, max_length, ...), plus labels, tags,
  language, device and `minilm`, the folder of the packaged all-MiniLM-L6-v2.
- OUTPUT, the model folder to write. A transformers token-classification folder (`config.json`
  whose `id2label` are BIO tags of the project's labels, and a fast tokenizer) is loaded by
  labtrain, scored on the test part and can pre-annotate once deployed; any other folder is kept
  unscored. `OUTPUT/metrics.json` (optional, a JSON object) is kept as the script's own scores.
- Exit 0 for success. stdout and stderr are the job's live log; a line `LABTRAIN_PROGRESS 42`
  moves its progress bar instead.

The process gets a time limit and a memory limit (the resident memory of the script and its
children, checked four times a second): past either it is killed and its job fails with that
reason. It works in a scratch folder outside labtrain's home (DATA, OUTPUT and its working folder;
afterwards the model and DATA are copied into the job's folder and the rest is removed), and its
environment holds no
labtrain token, Ray address or home path: only PATH, HOME and TMPDIR in its working folder, and
thread counts for the job's CPUs.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from labtrain.errors import LabtrainError
from trainers import dataset
from trainers.embeddings import minilm_path
from trainers.reporting import Reporter
from trainers.spec import TrainSpec

PROGRESS_PREFIX = "LABTRAIN_PROGRESS "
POLL_S = 0.25
MAX_LOG_LINES = 20000
MAX_LINE_CHARS = 2000


class ScriptError(LabtrainError):
    """The script failed, hung or went past a limit; the message is the job's failure reason."""

    status_code = 422


class SavedByScript:
    """The model the script wrote: it is already in the model folder, so saving does nothing."""

    def __init__(self, folder: Path, tagger=None):
        self.folder, self.tagger = folder, tagger

    def save(self, directory: Path) -> None:
        if Path(directory).resolve() != self.folder.resolve():
            shutil.copytree(self.folder, directory, dirs_exist_ok=True)


def write_conll(path: Path, docs: list) -> None:
    with path.open("w", encoding="utf-8") as out:
        for doc in docs:
            for (word, _, _), tag in zip(doc.words, doc.tags):
                out.write(f"{word}\t{tag}\n")
            out.write("\n")


def prepare_inputs(spec: TrainSpec, documents: list[dataset.Document], data: Path, reporter: Reporter):
    """Write the DATA folder and params.json; return the parts (the test part stays here)."""
    from trainers.ner import prepare, tag_set

    docs = prepare(documents, spec.labels, reporter)
    rows = dataset.read_snapshot(spec.snapshot)
    parts = dataset.split_examples(
        list(range(len(docs))), [d.split for d in documents], spec.params.validation_share, spec.params.seed
    )
    data.mkdir(parents=True, exist_ok=True)
    write_conll(data / "train.conll", [docs[i] for i in parts.train])
    write_conll(data / "dev.conll", [docs[i] for i in parts.validation])
    given = [{**rows[i], "split": "train"} for i in parts.train] + [
        {**rows[i], "split": "validation"} for i in parts.validation
    ]
    pq.write_table(pa.Table.from_pylist(given), data / "train.parquet")
    tags = tag_set(spec.labels)
    (data / "labels.json").write_text(json.dumps({"labels": spec.labels, "tags": tags}, indent=2))
    params = {
        **spec.params.model_dump(),
        "labels": spec.labels,
        "tags": tags,
        "language": spec.language,
        "device": spec.device,
        "minilm": str(minilm_path()),
    }
    (data / "params.json").write_text(json.dumps(params, indent=2))
    return [docs[i] for i in parts.test], parts


def script_env(workdir: Path, cpus: int) -> dict:
    """A clean environment: nothing of labtrain's (tokens, home, Ray address) is passed on."""
    threads = str(max(1, cpus))
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(workdir),
        "TMPDIR": str(workdir / "tmp"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONNOUSERSITE": "1",
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


def tree_rss_mb(root: int) -> float:
    """Resident memory of a process and all its descendants, from /proc (MB)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    family, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in family:
                family.add(child)
                frontier.append(child)
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid in family:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return total / 2**20


def _in_child() -> None:
    import ctypes
    import resource

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: dies with its job
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_script(
    command: list[str], workdir: Path, env: dict, time_limit_s: int, memory_mb: int, reporter: Reporter, title: str
) -> dict:
    """Run the script; its output lines go to the reporter as they come. Raises ScriptError when
    it fails or passes a limit; returns its seconds and peak memory."""
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    child = subprocess.Popen(
        command,
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        start_new_session=True,
        preexec_fn=_in_child,
    )
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in child.stdout], daemon=True)
    reader.start()
    started, peak, logged, last, stopped, exited = time.monotonic(), 0.0, 0, "", None, None
    while True:
        code = child.poll()
        while not lines.empty():
            line = lines.get().rstrip("\n")[:MAX_LINE_CHARS]
            if line.startswith(PROGRESS_PREFIX):
                try:
                    reporter.progress(5 + 0.85 * float(line[len(PROGRESS_PREFIX) :]))
                except ValueError:
                    pass
                continue
            last = line if line.strip() else last
            logged += 1
            if logged <= MAX_LOG_LINES:
                reporter.line(f"script| {line}")
            elif logged == MAX_LOG_LINES + 1:
                reporter.line(f"script| ... (more than {MAX_LOG_LINES} lines: the rest is not logged)")
        if code is not None and lines.empty():
            exited = exited or time.monotonic()
            if not reader.is_alive():
                break
            if time.monotonic() - exited > 5:  # a process it left behind still holds its output open
                _kill_group(child.pid)
                reader.join(timeout=1)
                break
        if code is None and stopped is None:
            peak = max(peak, tree_rss_mb(child.pid))
            elapsed = time.monotonic() - started
            if elapsed > time_limit_s:
                stopped = f"{title} exceeded its time limit of {time_limit_s} s and was stopped"
            elif peak > memory_mb:
                stopped = f"{title} exceeded its memory limit of {memory_mb} MB (it used {peak:.0f} MB) and was stopped"
            if stopped:
                _kill_group(child.pid)
        time.sleep(POLL_S if code is None else 0.01)
    seconds = time.monotonic() - started
    reporter.line(f"{title} ended with exit code {code} after {seconds:.1f} s; peak memory {peak:.0f} MB")
    if stopped:
        raise ScriptError(stopped)
    if code < 0:
        raise ScriptError(f"{title} was killed by signal {-code} ({signal.Signals(-code).name})")
    if code != 0:
        raise ScriptError(f"{title} failed with exit code {code}" + (f": {last.strip()}" if last else ""))
    return {"seconds": round(seconds, 1), "peak_memory_mb": round(peak)}


def load_scorable(model_dir: Path, tags: list[str], max_length: int, device: str):
    """The script's model as a tagger labtrain can score and predict with, or the reason it is not one."""
    from transformers import AutoConfig

    from trainers.ner_encoder import TokenTagger

    if not (model_dir / "config.json").is_file():
        return None, "the output folder has no config.json (not a transformers model)"
    try:
        config = AutoConfig.from_pretrained(model_dir)
        found = [config.id2label[i] for i in range(config.num_labels)]
        unknown = sorted(set(found) - set(tags))
        if unknown:
            return None, f"its labels {unknown} are not BIO tags of the project's labels ({', '.join(tags)})"
        tagger = TokenTagger.load(model_dir, max_length, device)
    except Exception as exc:  # whatever the script wrote, it does not load
        return None, f"transformers cannot load it as a token classifier: {type(exc).__name__}: {exc}"
    if not tagger.tokenizer.is_fast:
        return None, "its tokenizer is not a fast tokenizer (labtrain needs word ids to score words)"
    tagger.casing = False
    return tagger, None


def train_custom(spec: TrainSpec, documents: list[dataset.Document], reporter: Reporter) -> tuple:
    """Run the project's script on the snapshot and score what it wrote. Returns what
    `trainers.run` expects: model, metrics, primary scores, epochs, data summary, extras."""
    from trainers.ner import evaluate, tag_set

    script = spec.script
    title = f"custom script {script['name']!r}" + (f" v{script['version']}" if script.get("version") else "")
    out = Path(spec.output_dir)
    model_dir = out / "model"
    shutil.copyfile(script["path"], out / "script.py")
    # The script works in a folder of its own outside labtrain's home, whose path it never sees.
    scratch = Path(tempfile.mkdtemp(prefix="labtrain-script-"))
    try:
        data, workdir, output = scratch / "data", scratch / "work", scratch / "model"
        test, parts = prepare_inputs(spec, documents, data, reporter)
        summary = f"documents: {len(parts.train)} train, {len(parts.validation)} validation, {len(test)} test"
        reporter.line(summary)
        shutil.copyfile(script["path"], scratch / "script.py")
        output.mkdir()
        cpus = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
        reporter.line(
            f"{title} (sha256 {script.get('sha256', '?')[:12]}): time limit {script['time_limit_s']} s, "
            f"memory limit {script['memory_mb']} MB, working folder {workdir}"
        )
        command = [
            sys.executable,
            str(scratch / "script.py"),
            "--data",
            str(data),
            "--params",
            str(data / "params.json"),
            "--output",
            str(output),
        ]
        ran = run_script(
            command, workdir, script_env(workdir, cpus), script["time_limit_s"], script["memory_mb"], reporter, title
        )
        if not any(output.iterdir()):
            raise ScriptError(f"{title} exited with code 0 but wrote nothing into its --output folder")
        shutil.rmtree(model_dir, ignore_errors=True)
        shutil.copytree(output, model_dir, symlinks=True)
    finally:
        if (scratch / "data").is_dir():  # what the script was given stays with the job
            shutil.copytree(scratch / "data", out / "data", dirs_exist_ok=True)
        shutil.rmtree(scratch, ignore_errors=True)
    own = _script_metrics(model_dir / "metrics.json", reporter)
    reporter.progress(92)
    tagger, why = load_scorable(model_dir, tag_set(spec.labels), spec.params.max_length, spec.device)
    extra = {
        "script": {k: script.get(k) for k in ("name", "version", "sha256", "time_limit_s", "memory_mb")},
        "scorable": tagger is not None,
    }
    metrics: dict = {"script_run": ran, "script_metrics": own}
    if tagger is None:
        reporter.line(f"labtrain did not score the model: {why}; the script's own metrics.json is kept")
        return SavedByScript(model_dir), {**metrics, "scored_by": None, "not_scored": why}, None, [], summary, extra
    if not test:
        return SavedByScript(model_dir, tagger), {**metrics, "scored_by": None}, None, [], summary, extra
    scores = evaluate(tagger, test, spec.labels)
    reporter.line(f"labtrain scored the model on the {len(test)} test documents it kept from the script")
    metrics.update(entity=scores["entity"], token=scores["token"], scored_by="labtrain")
    return SavedByScript(model_dir, tagger), metrics, scores["entity"], [], summary, extra


def _script_metrics(path: Path, reporter: Reporter) -> dict | None:
    if not path.is_file():
        return None
    try:
        own = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        reporter.line(f"note: the script's metrics.json is not JSON ({exc}); ignored")
        return None
    if not isinstance(own, dict):
        reporter.line("note: the script's metrics.json is not a JSON object; ignored")
        return None
    return own
