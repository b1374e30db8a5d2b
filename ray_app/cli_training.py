"""`labtrain train | status | logs | cancel | history | models | predict | cluster | settings | script`: the
training commands of the CLI, each a thin call of the HTTP API."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any, Literal, get_args, get_origin

from labtrain.errors import LabtrainError
from ray_app.client import ApiClient
from trainers.spec import TrainParams

ENDED = ("succeeded", "failed", "cancelled")


def training_body(args: argparse.Namespace) -> dict:
    params = {name: getattr(args, name, None) for name in TrainParams.model_fields}
    selection = {
        "tags": [t for t in (args.tags or "").split(",") if t] or None,
        "reviewed_only": args.reviewed_only,
        "validation_split": args.validation_split,
        "split_seed": args.split_seed,
        "test_tag": args.test_tag,
        "train_tag": args.train_tag,
    }
    body = {
        "types": args.type,
        "embeddings": args.embeddings,
        "params": {k: v for k, v in params.items() if v is not None},
        "selection": {k: v for k, v in selection.items() if v is not None},
        "deploy": args.deploy,
        "gpu": args.gpu,
        "backend": args.backend,
    }
    if getattr(args, "max_retries", None) is not None:
        body["max_retries"] = args.max_retries
    if getattr(args, "cpus", None) is not None:
        body["cpus"] = args.cpus
    if getattr(args, "tune", None):
        body["tune"] = {"trials": tune_trials(args.tune), "space": args.tune_space, "budget": args.tune_budget}
    if getattr(args, "points", None) is not None or getattr(args, "curve", False):
        body["curve"] = {"points": args.points, "seeds": args.seeds}
    if getattr(args, "script", None):
        body.update(script=args.script, script_version=args.script_version)
        body.update(
            {
                k: v
                for k, v in (("script_time_limit_s", args.script_time_limit), ("script_memory_mb", args.script_memory))
                if v is not None
            }
        )
    return body


def tune_trials(text: str) -> int:
    """`--tune trials=8` (or `--tune 8`)."""
    value = text.split("=", 1)[1] if text.startswith("trials=") else text
    if not value.isdigit() or int(value) < 1:
        raise LabtrainError(f"--tune {text}: give the number of trials, e.g. --tune trials=8")
    return int(value)


def cmd_curve(args: argparse.Namespace, client: ApiClient) -> Any:
    args.curve, args.submit, args.address = True, False, None
    return cmd_train(args, client)


def print_sweep(job: dict) -> None:
    """A search's trial table or a curve's points and verdict, from the job's metrics."""
    metrics = job.get("metrics") or {}
    if "tuning" in metrics:
        from trainers.sweep import trials_table

        tuning = metrics["tuning"]
        names = list(tuning["best_params"])
        print(f"parameter search over {tuning['space']}:")
        print(trials_table(tuning["trials"], names))
        print(
            f"best: trial {tuning['best_trial']} "
            + ", ".join(
                f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in tuning["best_params"].items()
            )
        )
    if "curve" in metrics:
        from trainers.sweep import CurvePoint, curve_table

        curve = metrics["curve"]
        print(curve_table([CurvePoint(p["percent"], p["tasks"], p["f1"]) for p in curve["points"]]))
        print(f"verdict: {curve['verdict']}")
        print(f"plot: GET /api/trainings/{job['training_id']}/curve.png")


def cmd_train(args: argparse.Namespace, client: ApiClient) -> Any:
    if args.address and not args.submit:
        raise LabtrainError("--address goes with --submit (the Ray dashboard to submit the job to)")
    training = client.post(
        f"/api/projects/{args.name}/trainings", json={**training_body(args), "submit": bool(args.submit)}
    )
    if not args.json:
        print_data_notes(training)
    if args.submit:
        submit_ray_jobs(client, training, args.address)
    if args.follow:
        training = follow(client, training["id"], quiet=args.json)
    if args.json:
        return training
    print(
        f"training {training['id']} of {training['project']}: {training['status']} "
        f"({', '.join(j['type'] for j in training['jobs'])})"
    )
    if args.follow:
        _print_jobs(training)
        for job in training["jobs"]:
            print_sweep(job)
        if training["status"] != "succeeded":
            failed = [
                f"{j['type']}: {j['reason']}" for j in training["jobs"] if j["status"] == "failed" and j["reason"]
            ]
            raise LabtrainError(f"training {training['id']} {training['status']}" + "".join(f"; {f}" for f in failed))
    else:
        print(f"follow it with: labtrain status {training['id']} | labtrain logs {training['id']} -f")
    return None


def print_data_notes(training: dict) -> None:
    """The data check's notes (labels the model cannot learn, no test part) and the default embeddings'
    (the project's language), one warning a line."""
    for check in training["data"].get("checks", {}).values():
        for note in check["notes"]:
            print(f"warning: {note}", file=sys.stderr, flush=True)
    for kind, note in (training["request"].get("embeddings_notes") or {}).items():
        print(f"warning: {kind}: {note}", file=sys.stderr, flush=True)


def submit_ray_jobs(client: ApiClient, training: dict, address: str | None) -> None:
    """Submit each job's entry point as a Ray job (Ray's job submission API); if that fails the
    training is cancelled, so that nothing waits for a job that never comes."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    from ray.job_submission import JobSubmissionClient

    address = address or client.get("/api/cluster")["dashboard_url"]
    try:
        jobs = JobSubmissionClient(address)
        for job in training["jobs"]:
            jobs.submit_job(entrypoint=job["entrypoint"], submission_id=job["submission_id"])
            print(f"submitted job {job['job_id']} ({job['type']}) as Ray job {job['submission_id']}", file=sys.stderr)
    except Exception as exc:
        client.post(f"/api/trainings/{training['id']}/cancel")
        raise LabtrainError(f"could not submit to the Ray cluster at {address}: {exc}") from None


def follow(client: ApiClient, training_id: int, quiet: bool = False, every_s: float = 1.0) -> dict:
    """Poll the training until it ends, drawing one progress bar per job on stderr."""
    shown = ""
    while True:
        training = client.get(f"/api/trainings/{training_id}")
        line = "   ".join(_bar(j) for j in training["jobs"])
        if not quiet and line != shown:
            end = "" if sys.stderr.isatty() else "\n"
            # on a terminal the bars redraw one line ("\x1b[K" clears what a longer one left)
            print(
                ("\r" if sys.stderr.isatty() else "") + line + ("\x1b[K" if end == "" else ""),
                end=end,
                file=sys.stderr,
                flush=True,
            )
            shown = line
        if training["status"] in ENDED:
            if not quiet and sys.stderr.isatty():
                print(file=sys.stderr)
            return training
        time.sleep(every_s)


def _bar(job: dict, width: int = 20) -> str:
    done = int(width * job["progress"] / 100)
    epoch = f" epoch {job['epoch']}" if job.get("epoch") else ""
    state = job["status"] if job["status"] != "queued" else (job.get("reason") or "queued")
    return f"{job['type']} [{'#' * done}{'.' * (width - done)}] {job['progress']:5.1f}%{epoch} {state}"


def _f1(job: dict) -> str:
    micro = (job.get("metrics") or {}).get("micro") or job.get("metrics") or {}
    return f"{micro['f1']:.3f}" if isinstance(micro, dict) and "f1" in micro else "-"


def _print_jobs(training: dict) -> None:
    for job in training["jobs"]:
        detail = job.get("model_name") or job.get("reason") or ""
        if job["status"] == "failed":
            detail = f"failed: {job.get('reason') or 'no reason recorded'}"
        print(
            f"  job {job['job_id']:<5} {job['type']:<15} {job['status']:<10} {job['progress']:5.1f}%  "
            f"F1 {_f1(job):<6} {detail}"
        )


def cmd_status(args: argparse.Namespace, client: ApiClient) -> Any:
    training = client.get(f"/api/trainings/{args.id}")
    if args.json:
        return training
    print(
        f"training {training['id']} of {training['project']} ({training['source']}, {training['created_at']}): "
        f"{training['status']}, {training['progress']}%"
    )
    _print_jobs(training)
    return None


def cmd_logs(args: argparse.Namespace, client: ApiClient) -> Any:
    for line in client.stream_lines(f"/api/trainings/{args.id}/logs", params={"follow": args.follow}):
        print(line, flush=True)
    return None


def cmd_cancel(args: argparse.Namespace, client: ApiClient) -> Any:
    training = client.post(f"/api/trainings/{args.id}/cancel")
    return (
        training
        if args.json
        else print(
            f"training {training['id']}: cancel requested "
            f"({', '.join(j['type'] + ' ' + j['status'] for j in training['jobs'])})"
        )
    )


def cmd_history(args: argparse.Namespace, client: ApiClient) -> Any:
    trainings = client.get(f"/api/projects/{args.name}/trainings")
    if args.json:
        return trainings
    for t in trainings:
        rows = t["data"]["rows"]
        print(
            f"{t['id']:<5} {t['created_at'][:19]}  {t['source']:<16} {t['status']:<10} by {t['requested_by']}  "
            f"data: {', '.join(f'{k} {v} tasks' for k, v in rows.items())}"
        )
        _print_jobs(t)
    return None


def cmd_models(args: argparse.Namespace, client: ApiClient) -> Any:
    if args.name:
        model = client.get(f"/api/models/{args.name}")
        if args.json:
            return model
        for m in model["versions"]:
            micro = m["metrics"].get("micro") or {}
            print(
                f"{m['name']:<40} {m['type']:<15} {m['embeddings']:<12} F1 {micro.get('f1', 0):.3f}  "
                f"{m['trained_at'][:19]}{'  deployed' if m['deployed'] else ''}"
            )
        return None
    models = client.get("/api/models")
    if args.json:
        return models
    for m in models:
        micro = m["metrics"].get("micro") or {}
        print(
            f"{m['name']:<40} {m['project']:<20} {m['type']:<15} F1 {micro.get('f1', 0):.3f}"
            f"{'  deployed' if m['deployed'] else ''}"
        )
    return None


def cmd_predict(args: argparse.Namespace, client: ApiClient) -> Any:
    """Pre-annotate texts, or image files (sent as data URIs: the service reads no local paths)."""
    import base64
    import mimetypes
    from pathlib import Path

    if bool(args.text) == bool(args.image):
        raise LabtrainError("give --text (NER, classification) or --image (Visual NER), one or more times")
    if args.text:
        body: dict = {"texts": args.text}
    else:
        images = []
        for name in args.image:
            path = Path(name)
            mime = mimetypes.guess_type(path.name)[0] or "image/png"
            images.append(f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode())
        body = {"images": images}
    return client.post(f"/api/models/{args.model}/predict", json=body)


def cmd_cluster(args: argparse.Namespace, client: ApiClient) -> Any:
    view = client.get("/api/cluster")
    if args.json:
        return view
    total, free = view["total"], view["available"]
    print(
        f"nodes {len(view['nodes'])}; CPU {free['CPU']:g}/{total['CPU']:g} free, GPU {free['GPU']:g}/"
        f"{total['GPU']:g} free, memory {free['memory_gb']:g}/{total['memory_gb']:g} GB free; "
        f"GPU resource available: {'yes' if view['gpu_available'] else 'no'}"
    )
    print(f"dashboard {view.get('dashboard_url')}")
    scaler = view.get("autoscaler") or {}
    if scaler.get("node_types"):
        kinds = ", ".join(
            f"{t['name']} ({' + '.join(f'{v:g} {k}' for k, v in t['resources'].items())}, up to {t['max_workers']})"
            for t in scaler["node_types"]
        )
        print(f"autoscaler node types {kinds}; demand shown: {len(scaler['demand'])} bundle(s) [{scaler['config']}]")
    if view.get("artifacts"):
        print(f"artifact store {view['artifacts']}")
    for r in view["training_servers"]:
        print(
            f"  running job {r['job_id']} ({r['project']} {r['type']}) on {r['bundle']}, license {r['license']}, "
            f"by {r['started_by']} since {r['started_at'][:19]}"
            + (f", node {r['worker_node'][:12]}" if r.get("worker_node") else "")
        )
    for q in view["queue"]:
        print(f"  queued job {q['job_id']} ({q['type']}): {q['reason']}")
    for lic in view["licenses"]:
        print(f"  license {lic['id']}: {', '.join(lic['scopes'])}; {lic['in_use']}/{lic['max_jobs']} in use")
    return None


def cmd_settings(args: argparse.Namespace, client: ApiClient) -> Any:
    path = f"/api/projects/{args.name}/training/settings"
    body: dict = {}
    if args.versioning:
        body["versioning"] = args.versioning == "on"
    if args.active_learning or args.every or args.al_deploy:
        body["active_learning"] = {
            k: v
            for k, v in {
                "enabled": None if args.active_learning is None else args.active_learning == "on",
                "every": args.every,
                "deploy": None if args.al_deploy is None else args.al_deploy == "on",
            }.items()
            if v is not None
        }
    settings = client.put(path, json=body) if body else client.get(path)
    if args.json:
        return settings
    al = settings["active_learning"]
    print(
        f"versioning {'on' if settings['versioning'] else 'off'}; active learning "
        f"{'on' if al['enabled'] else 'off'} (every {al['every']} completions, deploy "
        f"{'on' if al['deploy'] else 'off'})"
    )
    return None


def cmd_script(args: argparse.Namespace, client: ApiClient) -> Any:
    """Upload a custom NER training script, list a project's scripts, or show one's source."""
    from pathlib import Path

    path = f"/api/projects/{args.name}/scripts"
    if args.action == "upload":
        if not args.file:
            raise LabtrainError("usage: labtrain script upload PROJECT FILE [--as NAME]")
        file = Path(args.file)
        script = client.post(path, json={"name": args.script_name or file.stem, "source": file.read_text()})
        return (
            script
            if args.json
            else print(
                f"script {script['name']} version {script['version']} of "
                f"{args.name} (sha256 {script['sha256'][:12]}); train with: labtrain "
                f"train {args.name} --type ner --script {script['name']}"
            )
        )
    if args.action == "show":
        if not args.file:
            raise LabtrainError("usage: labtrain script show PROJECT SCRIPT [--version N]")
        script = client.get(f"{path}/{args.file}", params={"version": args.version} if args.version else None)
        return script if args.json else print(script["source"], end="")
    scripts = client.get(path)
    if args.json:
        return scripts
    for s in scripts:
        print(
            f"{s['name']:<24} v{s['version']:<4} {s['sha256'][:12]}  {s['size']:>7} bytes  by {s['uploaded_by']} "
            f"at {s['uploaded_at'][:19]}"
        )
    return None


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """Register the commands with the main parser's `command(name, func, help)`."""
    p = command("train", cmd_train, "train models of a project (one job per --type); answers with the training id")
    training_arguments(p)
    p.add_argument("--deploy", action="store_true", help="after success, the labeling config names the new model")
    p.add_argument("--submit", action="store_true", help="run each job as a Ray job (Ray's job submission)")
    p.add_argument("--address", help="with --submit: the Ray dashboard, e.g. http://HEAD:8265 (default: the service's)")
    p.add_argument(
        "--tune",
        metavar="trials=N",
        help="search the parameters with Ray Tune: N trials (one --type); the best trial's model is kept",
    )
    p.add_argument(
        "--tune-space",
        help="e.g. lr=1e-5:1e-3:log,dropout=0.1:0.5,batch_size=8|16|32 (default: the "
        "embeddings' learning rate x/10, dropout 0.1:0.5, batch_size 8|16|32)",
    )
    p.add_argument("--tune-budget", help="stop the search after this long, e.g. 30m, 2h, 600s")
    p.add_argument("--script", help="NER: train with this custom script of the project (labtrain script upload)")
    p.add_argument("--script-version", type=int, help="the script's version (default: its latest)")
    p.add_argument("--script-time-limit", type=int, help="seconds before the script is stopped (default 3600)")
    p.add_argument(
        "--script-memory", type=int, help="MB of resident memory past which the script is stopped (default 4096)"
    )

    p = command(
        "curve",
        cmd_curve,
        "train-curve: train one --type on growing shares of the train part, score each "
        "on the same test part, plot it and say whether more annotation will help",
    )
    training_arguments(p)
    p.add_argument("--points", help="percentages of the train part (default 25,50,75,100)")
    p.add_argument("--seeds", type=int, default=1, help="runs per point, each with its own draw (default 1)")
    p.set_defaults(deploy=False)

    p = command(
        "script",
        cmd_script,
        "custom NER training scripts: upload PROJECT FILE [--as NAME] | list PROJECT | show PROJECT SCRIPT",
    )
    p.add_argument("action", choices=["upload", "list", "show"])
    p.add_argument("name", help="the project")
    p.add_argument("file", nargs="?", help="upload: the script file; show: the script's name")
    p.add_argument("--as", dest="script_name", help="upload: the script's name (default: the file's name)")
    p.add_argument("--version", type=int, help="show: this version (default: the latest)")

    p = command("status", cmd_status, "one training's status, progress and jobs")
    p.add_argument("id", type=int)
    p = command("logs", cmd_logs, "a training's log (-f: follow it until the training ends)")
    p.add_argument("id", type=int)
    p.add_argument("-f", "--follow", action="store_true")
    p = command("cancel", cmd_cancel, "cancel a training")
    p.add_argument("id", type=int)
    p = command("history", cmd_history, "every training of a project")
    p.add_argument("name")
    p = command("models", cmd_models, "list models, or one model's versions")
    p.add_argument("name", nargs="?")
    p = command("predict", cmd_predict, "pre-annotate with a model: results in the export's format")
    p.add_argument("model")
    p.add_argument("--text", action="append", help="a text (NER, classification)")
    p.add_argument("--image", action="append", help="an image file (Visual NER)")
    command("cluster", cmd_cluster, "nodes, resources, running training servers, licenses")
    p = command("settings", cmd_settings, "show or change a project's training settings")
    p.add_argument("name")
    p.add_argument("--versioning", choices=["on", "off"])
    p.add_argument("--active-learning", choices=["on", "off"])
    p.add_argument("--every", type=int, help="active learning: retrain every N new completions")
    p.add_argument("--al-deploy", choices=["on", "off"], help="active learning: deploy each new model")


def parameter_arguments(p: argparse.ArgumentParser) -> None:
    """A flag per training parameter, from `TrainParams` (its name, type, choices and description);
    a flag left out takes the recipe's default."""
    for name, field in TrainParams.model_fields.items():
        flag, kinds = "--" + name.replace("_", "-"), (field.annotation, *get_args(field.annotation))
        if get_origin(field.annotation) is Literal:
            p.add_argument(flag, choices=get_args(field.annotation), help=field.description)
        elif bool in kinds:
            p.add_argument(flag, type=on_off, metavar="on|off", help=field.description)
        else:
            p.add_argument(flag, type=int if int in kinds else float, help=field.description)


def on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"{text!r}: say on or off")
    return text == "on"


def training_arguments(p: argparse.ArgumentParser) -> None:
    """What `train` and `curve` share: the project, the type, embeddings, parameters, the selection."""
    p.add_argument("name")
    p.add_argument(
        "--type", action="append", required=True, help="ner, assertion, classification, relation, visual_ner"
    )
    p.add_argument(
        "--embeddings",
        help="minilm or bilstm (NER, pytorch), minilm_words (sparknlp), or an encoder registered with "
        "`labtrain embeddings add`; default: each type's first",
    )
    p.add_argument(
        "--backend",
        default="pytorch",
        choices=["pytorch", "sparknlp"],
        help="pytorch (every type) or sparknlp (ner: NerDL, classification: ClassifierDL / MultiClassifierDL)",
    )
    parameter_arguments(p)
    p.add_argument("--validation-split", type=float, help="share of tasks for test (default 0.2)")
    p.add_argument(
        "--split-seed", type=int, help="which tasks the validation split draws, as in `labtrain select` (default 0)"
    )
    p.add_argument("--test-tag", help="tasks with this tag are the test set")
    p.add_argument("--train-tag", help="tasks with this tag are the train set")
    p.add_argument("--tags", help="only tasks with one of these tags (comma-separated)")
    p.add_argument("--reviewed-only", action="store_true")
    p.add_argument(
        "--gpu", "--use-gpu", action="store_true", help="ask for a GPU bundle (1 GPU + 1 CPU): 'Use available GPU'"
    )
    p.add_argument(
        "--cpus",
        type=int,
        help="CPUs of each job's bundle (default 1; a CPU job that runs alone on a cluster without an "
        "autoscaler takes every CPU of the largest node, up to 16)",
    )
    p.add_argument(
        "--max-retries",
        type=int,
        help="start a job again this often when its worker or node is lost "
        "(default 1; from its last epoch with serve --artifacts)",
    )
    p.add_argument("--follow", action="store_true", help="wait, with a progress bar, until it ends")
