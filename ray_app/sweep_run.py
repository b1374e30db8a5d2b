"""A parameter search or a train-curve as one job: Ray Tune runs its trials, each trial a function
trainable that calls a Ray Train `TorchTrainer.fit()` (how Ray 2.60 runs Train V2 under Tune), at
most as many at once as the bundles the job manager gave the job. The search stops poor trials
early (ASHA) and keeps the best trial's model; the curve trains on growing shares of the train part."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import ray

from ray_app.job_worker import Resilience, bundle_threads, forwarder, last_line, lower_priority, one_worker_trainer
from ray_app.settings import ON_THE_HEAD
from ray_app.workspace import Home, job_files
from trainers.spec import TrainParams
from trainers.sweep import CurvePoint, curve_table, describe_space, save_curve_png, trials_table, verdict, write_subset

TRIAL_MEMORY = 64 * 2**20  # the trial's own actor: no CPU (its Train worker holds the bundle), a token of memory


NOTHING_YET = {"epoch": 0, "f1": 0.0, "best_f1": 0.0}  # the result of a trial the budget ended before its epoch 1
BUDGET_SPENT = "budget.txt"  # in a trial's folder: how the search's time budget ended it, as its table row says


def trial_worker(config: dict) -> None:
    """In the Train worker: the trainer on this trial's spec; each epoch's validation F1 goes to Tune.
    Past the search's deadline the trainer is stopped and the run ends normally (Tune's own time
    budget would stop the trials from outside, and leaves their placement groups behind)."""
    import ray.train

    from trainers.reporting import StopTraining
    from trainers.run import failure_reason, run

    lower_priority()
    bundle_threads()
    deadline = config.get("deadline")
    reported = {"best_f1": None}

    def to_tune(event: dict) -> None:
        if event["kind"] == "progress" and event.get("epoch") and event["progress"] < 100:
            f1 = (event.get("metrics") or {}).get("f1") or 0.0
            reported["best_f1"] = max(reported["best_f1"] or 0.0, f1)
            ray.train.report({"epoch": event["epoch"], "f1": f1, "best_f1": reported["best_f1"]})
        if deadline and time.time() >= deadline:
            raise StopTraining("the search's time budget is spent")

    with job_files(config["job_id"], config["spec"], config["home"]) as spec:
        out = Path(spec["output_dir"])  # its markers travel back with the trial's other files
        try:
            run(spec, [to_tune])
        except StopTraining:
            (out / BUDGET_SPENT).write_text("stopped by the time budget")
        except Exception as exc:  # the trial failed: its table row says why (Ray retries only a lost worker)
            (out / "failure.txt").write_text(failure_reason(exc))
    if reported["best_f1"] is None:  # Tune wants its metric in every trial's results
        ray.train.report(NOTHING_YET)


def trial_driver(config: dict) -> None:
    """One Tune trial: one Ray Train run on the job's bundle shape."""
    from ray import tune
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig
    from ray.tune.integration.ray_train import TuneReportCallback

    spec, bundle = dict(config["spec"]), config["bundle"]
    index = trial_index(tune.get_context().get_trial_id())
    if "point" in config:  # a curve point: a share of the train part, drawn with its seed
        percent, seed = config["point"]
        out = Path(spec["output_dir"]) / "points" / f"{percent:03d}-seed{seed}"
        subset = out / "snapshot.parquet"
        write_subset(spec["snapshot"], percent, seed, subset)
        spec.update(snapshot=str(subset), params={**spec["params"], "seed": seed})
    else:
        out = Path(spec["output_dir"]) / "trials" / f"{index:02d}"
        spec["params"] = {**spec["params"], **config["params"]}
    spec["output_dir"] = str(out)
    if config.get("deadline") and time.time() >= config["deadline"]:
        out.mkdir(parents=True, exist_ok=True)
        (out / BUDGET_SPENT).write_text("not started (time budget)")
        tune.report(NOTHING_YET)
        return
    trainer = one_worker_trainer(
        trial_worker,
        train_loop_config={
            "spec": spec,
            "deadline": config.get("deadline"),
            "job_id": config["job_id"],
            "home": config["home"],
        },
        scaling_config=ScalingConfig(num_workers=1, use_gpu="GPU" in bundle, resources_per_worker=bundle),
        torch_config=TorchConfig(backend="gloo"),  # one worker: see train_run.run_job
        run_config=RunConfig(
            name=f"{config['name']}-trial-{index:02d}",
            storage_path=config["storage_path"],
            callbacks=[TuneReportCallback()],
            failure_config=FailureConfig(
                max_failures=config["max_retries"],
                controller_failure_limit=0,
                max_preemption_failures=config["max_retries"],
            ),
        ),
    )
    trainer.fit()


def trial_index(trial_id: str) -> int:
    return int(trial_id.rsplit("_", 1)[-1]) + 1


class Progress:
    """Tune callback: each trial's start, epochs and end go to the job's log; the job's progress is
    the mean of its trials' (a trial stopped early counts as done)."""

    def __init__(self, forward, total: int, epochs: int, describe):
        self.forward, self.total, self.epochs, self.describe = forward, total, epochs, describe
        self.done: dict[int, float] = {}

    def log(self, line: str) -> None:
        self.forward({"kind": "log", "line": line})

    def _progress(self) -> None:
        self.forward({"kind": "progress", "progress": 99 * sum(self.done.values()) / self.total, "epoch": None})

    def start(self, trial) -> None:
        self.done[trial_index(trial.trial_id)] = 0.0
        self.log(f"trial {trial_index(trial.trial_id)} started: {self.describe(trial.config)}")

    def result(self, trial, result: dict) -> None:
        if not result.get("epoch"):  # a trial the time budget ended before its first epoch
            return
        index = trial_index(trial.trial_id)
        self.done[index] = min(1.0, result.get("epoch", 0) / self.epochs)
        self.log(f"trial {index} epoch {result.get('epoch')}: validation F1 {result.get('f1', 0):.3f}")
        self._progress()

    def end(self, trial, failed: bool) -> None:
        index = trial_index(trial.trial_id)
        self.done[index] = 1.0
        self.log(f"trial {index} {'failed' if failed else 'ended'}")
        self._progress()


def _tune_callback(progress: Progress):
    from ray import tune

    class Callback(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            progress.start(trial)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            progress.result(trial, result)

        def on_trial_complete(self, iteration, trials, trial, **info):
            progress.end(trial, failed=False)

        def on_trial_error(self, iteration, trials, trial, **info):
            progress.end(trial, failed=True)

    return Callback()


@ray.remote(num_cpus=0, max_retries=0, resources=ON_THE_HEAD)
def run_sweep(job_id: int, spec: dict, bundle: dict, slots: int, home: Home, resilience: Resilience) -> None:
    """The job's Tune driver, on the head beside the home where its trials' files end up;
    cancelling this task ends its trials (they are its actors). A trial whose worker is lost starts
    again from its beginning (trials keep no checkpoints); Tune keeps its own files in the home."""
    forward = forwarder(job_id)
    sweep = spec.pop("sweep")
    storage_path = str(Path(home.path) / "ray_results")
    common = {
        "spec": spec,
        "bundle": bundle,
        "storage_path": storage_path,
        "name": f"labtrain-job-{job_id}",
        "job_id": job_id,
        "home": home,
        "max_retries": resilience.max_retries,
    }
    try:
        if sweep["kind"] == "tune":
            result = _search(job_id, spec, sweep, slots, storage_path, forward, common)
        else:
            result = _curve(job_id, spec, sweep, slots, storage_path, forward, common)
    except Exception as exc:
        forward({"kind": "error", "error": str(exc) if isinstance(exc, SweepError) else f"{type(exc).__name__}: {exc}"})
        raise
    forward({"kind": "result", "metrics": result})


class SweepError(RuntimeError):
    """A search or curve that ended without what it was for (no trial finished, no point)."""


def _tuner(trainable_config: dict, tune_config, progress: Progress, storage_path: str, name: str):
    from ray import tune

    tune_config.trial_dirname_creator = lambda trial: trial.trial_id  # "<experiment>_<n>": see trial_index
    # the trial's driver stays on the head (it writes a curve point's share of the snapshot into the
    # home, and its Train controller goes where it is): workers carry only the trials' Train workers
    return tune.Tuner(
        tune.with_resources(trial_driver, {"CPU": 0, "memory": TRIAL_MEMORY, **ON_THE_HEAD}),
        param_space=trainable_config,
        tune_config=tune_config,
        run_config=tune.RunConfig(
            name=name, storage_path=storage_path, verbose=0, callbacks=[_tune_callback(progress)]
        ),
    )


def _search(job_id: int, spec: dict, sweep: dict, slots: int, storage_path: str, forward, common: dict) -> dict:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    space, trials, budget = sweep["space"], sweep["trials"], sweep.get("budget_s")
    names = list(space)
    epochs = (
        max(space["epochs"]["choices"])
        if "epochs" in space
        else spec["params"].get("epochs", TrainParams.model_fields["epochs"].default)
    )
    dims = {}
    for name, d in space.items():
        if "choices" in d:
            dims[name] = tune.choice(d["choices"])
        else:
            dims[name] = (tune.loguniform if d["log"] else tune.uniform)(d["low"], d["high"])
    progress = Progress(forward, trials, epochs, lambda c: ", ".join(f"{n}={_fmt(c['params'][n])}" for n in names))
    progress.log(
        f"parameter search: {trials} trials over {describe_space(space)}; at most {slots} at once; "
        f"ASHA stops poor trials after 1 epoch or more" + (f"; time budget {budget:g} s" if budget else "")
    )
    started = time.monotonic()
    # max_t past the last epoch: ASHA stops a trial that reaches max_t at once, which would cut off
    # the test evaluation and the model's save that follow a trial's last epoch.
    scheduler = ASHAScheduler(time_attr="epoch", max_t=epochs + 1, grace_period=1, reduction_factor=2)
    grid = _tuner(
        {**common, "params": dims, "deadline": time.time() + budget if budget else None},
        tune.TuneConfig(
            metric="best_f1",
            mode="max",
            num_samples=trials,
            max_concurrent_trials=slots,
            scheduler=scheduler,
            # the request's seed draws the trials' parameters: the same request, the same
            # trials; a search algorithm of one's own must limit the trials at once itself
            search_alg=BasicVariantGenerator(max_concurrent=slots, random_state=spec["params"].get("seed", 0)),
        ),
        progress,
        storage_path,
        f"labtrain-job-{job_id}",
    ).fit()
    seconds = time.monotonic() - started
    rows = []
    for result in grid:
        index = trial_index(Path(result.path).name)
        folder = Path(spec["output_dir"]) / "trials" / f"{index:02d}"
        metrics = result.metrics or {}
        row = {
            "trial": index,
            "params": {n: result.config["params"][n] for n in names},
            "epochs": metrics.get("epoch"),
            "val_f1": metrics.get("best_f1"),
        }
        if (folder / "metrics.json").exists():
            row["end"] = "finished"
        elif result.error is not None or (folder / "failure.txt").exists():
            reason = (
                (folder / "failure.txt").read_text() if (folder / "failure.txt").exists() else last_line(result.error)
            )
            row["end"] = "failed: " + " ".join(reason.split())[:200]
        elif (folder / BUDGET_SPENT).exists():
            row["end"] = (folder / BUDGET_SPENT).read_text()
        else:
            row["end"] = "stopped early (ASHA)"
        rows.append(row)
    rows.sort(key=lambda r: r["trial"])
    finished = [r for r in rows if r["end"] == "finished"]
    if finished:
        max(finished, key=lambda r: (r["val_f1"] or 0.0, -r["trial"]))["best"] = True
    progress.log("")
    progress.log(
        f"parameter search, {len(rows)} trials in {seconds:.0f} s (* = best validation F1, its model is kept):"
    )
    for line in trials_table(rows, names).splitlines():
        progress.log(line)
    if not finished:
        failed = [r for r in rows if r["end"].startswith("failed")]
        if failed:
            raise SweepError(f"no trial of the search finished: {failed[0]['end']}")
        raise SweepError(
            "no trial of the search finished"
            + (f" within the time budget of {budget:g} s; give it more time" if budget else "")
        )
    (best,) = [r for r in rows if r.get("best")]
    source = Path(spec["output_dir"]) / "trials" / f"{best['trial']:02d}"
    _adopt(source, Path(spec["output_dir"]))
    progress.log(
        f"best: trial {best['trial']} ({progress.describe({'params': best['params']})}), "
        f"validation F1 {best['val_f1']:.3f}"
    )
    test = json.loads((Path(spec["output_dir"]) / "metrics.json").read_text())
    test = test.get("entity", test)
    return {
        "micro": test.get("micro"),
        "macro": test.get("macro"),
        "seconds": round(seconds, 1),
        "tuning": {
            "space": describe_space(space),
            "slots": slots,
            "budget_s": budget,
            "trials": rows,
            "best_trial": best["trial"],
            "best_params": best["params"],
        },
    }


def _adopt(trial: Path, output: Path) -> None:
    """The best trial's files become the job's (its model, metrics and training log)."""
    for item in trial.iterdir():
        target = output / item.name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        shutil.move(str(item), str(target))


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _curve(job_id: int, spec: dict, sweep: dict, slots: int, storage_path: str, forward, common: dict) -> dict:
    from ray import tune

    points, seeds = sweep["points"], sweep["seeds"]
    runs = [[p, s] for p in points for s in range(seeds)]
    epochs = spec["params"].get("epochs", TrainParams.model_fields["epochs"].default)
    progress = Progress(
        forward, len(runs), epochs, lambda c: f"{c['point'][0]} % of the train part, seed {c['point'][1]}"
    )
    progress.log(
        f"train-curve: {', '.join(f'{p} %' for p in points)} of the train part x {seeds} seed(s), "
        f"the same test part; at most {slots} at once"
    )
    started = time.monotonic()
    _tuner(
        {**common, "point": tune.grid_search(runs)},
        tune.TuneConfig(num_samples=1, max_concurrent_trials=slots),
        progress,
        storage_path,
        f"labtrain-job-{job_id}",
    ).fit()
    out = Path(spec["output_dir"])
    curve, failures = [], []
    for percent in points:
        f1, tasks = [], 0
        for seed in range(seeds):
            folder = out / "points" / f"{percent:03d}-seed{seed}"
            if (folder / "metrics.json").exists():
                metrics = json.loads((folder / "metrics.json").read_text())
                micro = metrics.get("entity", metrics).get("micro")
                if micro:
                    f1.append(micro["f1"])
            elif (folder / "failure.txt").exists():
                failures.append(f"{percent} % seed {seed}: {(folder / 'failure.txt').read_text()[:200]}")
            if (folder / "snapshot.parquet").exists():
                import pyarrow.parquet as pq

                split = pq.read_table(folder / "snapshot.parquet", columns=["task_id", "split"]).to_pylist()
                tasks = len({r["task_id"] for r in split if r["split"] == "train"})
        curve.append(CurvePoint(percent, tasks, f1))
    seconds = time.monotonic() - started
    if not any(p.f1 for p in curve):
        raise SweepError("no point of the curve finished" + (f": {failures[0]}" if failures else ""))
    line = verdict(curve)
    progress.log("")
    progress.log(f"train-curve in {seconds:.0f} s (test F1, micro; the same test part for every point):")
    for text in curve_table(curve).splitlines():
        progress.log(text)
    for failure in failures:
        progress.log(f"failed: {failure}")
    progress.log(f"verdict: {line}")
    save_curve_png(curve, out / "curve.png", f"train-curve: {spec['type']} ({spec.get('embeddings')})", line)
    table = [{"percent": p.percent, "tasks": p.tasks, "f1": p.f1, "mean": p.mean, "spread": p.spread} for p in curve]
    (out / "curve.json").write_text(json.dumps({"points": table, "verdict": line, "seeds": seeds}, indent=2))
    return {
        "seconds": round(seconds, 1),
        "curve": {"points": table, "verdict": line, "seeds": seeds, "slots": slots, "failures": failures},
    }
