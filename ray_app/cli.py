"""`labtrain`: the command line. Each command parses its arguments and calls the HTTP API
(or, for `serve` / `stop`, the service functions); it prints a table, or JSON with --json."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labtrain.errors import LabtrainError
from ray_app.cli_embeddings import add_embeddings_commands
from ray_app.cli_labelstudio import add_commands as add_label_studio_commands
from ray_app.cli_training import add_commands
from ray_app.client import ApiClient, export_with_inlined_images
from ray_app.settings import DEFAULT_HOST, DEFAULT_PORT, api_token, api_url, home_dir
from storage.members import parse_member


def _client(args: argparse.Namespace) -> ApiClient:
    home = home_dir(args.home)
    return ApiClient(args.url or api_url(home), args.token or api_token(home))


def _table(rows: list[dict], columns: list[str]) -> str:
    cells = [[str(r.get(c, "")) if r.get(c) is not None else "-" for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


# --- service ------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> Any:
    from ray_app.service import run_service, start_detached

    home = home_dir(args.home)
    if args.detach:
        argv = ["serve", "--home", str(home), "--host", args.host, "--port", str(args.port)]
        argv += ["--num-cpus", str(args.num_cpus)] if args.num_cpus else []
        argv += ["--address", args.address] if args.address else []
        argv += ["--autoscaling-config", args.autoscaling_config] if args.autoscaling_config else []
        argv += ["--artifacts", args.artifacts] if args.artifacts else []
        info = start_detached(home, argv)
        _announce(info, api_token(home), args.json)
        return None
    # Detached, this process's output is serve.log: the token stays in the admin_token file only.
    shown = (lambda token: None) if os.environ.get("LABTRAIN_DETACHED") else (lambda token: token)
    run_service(
        home,
        args.host,
        args.port,
        args.num_cpus,
        args.address,
        on_ready=lambda info, token: _announce(info, shown(token), args.json),
        autoscaling_config=args.autoscaling_config,
        artifacts=args.artifacts,
    )
    return None


def _announce(info: dict, token: str | None, as_json: bool) -> None:
    if as_json:
        print(json.dumps({**info, "admin_token": token}), flush=True)
        return
    print(
        f"labtrain API      {info['url']}/api   (OpenAPI: {info['url']}/docs)\n"
        f"Ray dashboard     {info['dashboard_url']}\n"
        f"admin token       {token or 'in ' + str(Path(info['home']) / 'admin_token')}\n"
        f"home              {info['home']}\n"
        f"stop with         labtrain stop{'' if info['home'] == str(home_dir(None)) else ' --home ' + info['home']}",
        flush=True,
    )


def cmd_stop(args: argparse.Namespace) -> Any:
    from ray_app.service import stop_service

    stopped = stop_service(home_dir(args.home))
    if args.json:
        return {"stopped": stopped is not None, "service": stopped}
    print(f"stopped labtrain (pid {stopped['pid']})" if stopped else "no labtrain service was running")
    return None


# --- users, projects, members, config -------------------------------------------------------------


def cmd_users(args: argparse.Namespace) -> Any:
    client = _client(args)
    if args.action == "add":
        if not args.name:
            raise LabtrainError("users add needs a user NAME")
        answer = client.post("/api/users", json={"name": args.name, "is_admin": args.admin})
        return answer if args.json else print(f"user {answer['name']} created; token (shown once): {answer['token']}")
    users = client.get("/api/users")
    return users if args.json else print(_table(users, ["name", "is_admin", "created_at"]))


def cmd_project(args: argparse.Namespace) -> Any:
    client = _client(args)
    if args.action != "list" and not args.name:
        raise LabtrainError(f"project {args.action} needs a project NAME")
    if args.action == "create":
        if not args.config:
            raise LabtrainError("project create needs --config FILE (a Label Studio labeling config, XML)")
        body = {"name": args.name, "config": Path(args.config).read_text(), "language": args.language}
        project = client.post("/api/projects", json=body)
    elif args.action == "show":
        project = client.get(f"/api/projects/{args.name}")
    else:
        projects = client.get("/api/projects")
        return (
            projects
            if args.json
            else print(_table(projects, ["name", "language", "tasks", "completions", "training_types"]))
        )
    if args.json:
        return project
    print(
        f"project {project['name']} ({project['language']}): {project['tasks']} tasks, "
        f"{project['completions']} completions ({project['submitted_completions']} submitted); "
        f"training types: {', '.join(project['training_types']) or 'none'}"
    )
    return None


def cmd_import(args: argparse.Namespace) -> Any:
    raw = export_with_inlined_images(Path(args.file), Path(args.images_dir) if args.images_dir else None)
    answer = _client(args).post(
        f"/api/projects/{args.name}/import", content=raw, headers={"Content-Type": "application/json"}
    )
    if args.json:
        return answer
    print(
        f"imported {answer['tasks']} tasks, {answer['completions']} completions "
        f"({', '.join(answer['formats'])}): {answer['inserted']} new, {answer['updated']} updated, "
        f"{answer['unchanged']} unchanged; {answer['images']} images"
    )
    if answer.get("active_learning_training"):
        print(
            f"active learning started training {answer['active_learning_training']} "
            f"(labtrain status {answer['active_learning_training']})"
        )
    return None


def cmd_members(args: argparse.Namespace) -> Any:
    client = _client(args)
    path = f"/api/projects/{args.name}/members"
    if args.set or args.remove:
        members = [parse_member(spec) for spec in args.set or []]
        body = {"set": [m.__dict__ for m in members], "remove": args.remove or []}
        answer = client.put(path, json=body)
    else:
        answer = client.get(path)
    return answer if args.json else print(_table(answer, ["username", "role", "priority"]))


def cmd_config(args: argparse.Namespace) -> Any:
    client = _client(args)
    path = f"/api/projects/{args.name}/config"
    answer = client.put(path, json={"config": Path(args.set).read_text()}) if args.set else client.get(path)
    if args.json:
        return answer
    if args.show or not (args.set or args.summary):
        print(answer["config"])
    if args.set or args.summary:
        print(json.dumps(answer["summary"], indent=2), file=sys.stdout if args.summary else sys.stderr)
    return None


# --- selection --------------------------------------------------------------------------------------


def cmd_select(args: argparse.Namespace) -> Any:
    body = {
        "tags": [t for t in (args.tags or "").split(",") if t] or None,
        "reviewed_only": args.reviewed_only,
        "validation_split": args.validation_split,
        "split_seed": args.split_seed,
        "test_tag": args.test_tag,
        "train_tag": args.train_tag,
    }
    client = _client(args)
    if args.snapshot:
        manifest = client.post(f"/api/projects/{args.name}/snapshots", json={**body, "types": args.type})
        if args.json:
            return manifest
        for training_type, file in manifest["files"].items():
            print(f"{training_type:<15} {file['rows']:>7} tasks  {file['path']}")
        return None
    answer = client.post(f"/api/projects/{args.name}/selection", json={**body, "limit": args.limit})
    if args.json:
        return answer
    print(_table(answer["tasks"], ["task_id", "completion_id", "author", "split", "reason"]))
    print(
        f"\n{answer['tasks_selected']} of {answer['tasks_in_project']} tasks selected: "
        f"{answer['train']} train, {answer['test']} test"
    )
    for training_type, labels in answer["label_counts"].items():
        rows = [
            {"type": training_type, "label": lab, **n, "total": n["train"] + n["test"]} for lab, n in labels.items()
        ]
        print("\n" + _table(rows, ["type", "label", "train", "test", "total"]))
    for warning in answer["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    return None


# --- parser -----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", help="labtrain home (default: $LABTRAIN_HOME or ~/.labtrain)")
    common.add_argument("--url", help="API URL (default: $LABTRAIN_URL, else the local service)")
    common.add_argument("--token", help="bearer token (default: $LABTRAIN_TOKEN, else the admin token)")
    common.add_argument("--json", action="store_true", help="machine-readable answer on stdout")

    parser = argparse.ArgumentParser(
        prog="labtrain",
        description="Train NLP models from the completions of an annotation project, on Ray. "
        "Reads LABTRAIN_URL and LABTRAIN_TOKEN.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, func: Callable, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    p = command("serve", cmd_serve, "start Ray (local head, or join --address) and the labtrain API")
    p.add_argument("--host", default=DEFAULT_HOST)
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray head (default: all)")
    p.add_argument("--address", help="join this Ray cluster instead of starting a local head (run it on the head)")
    p.add_argument(
        "--autoscaling-config",
        metavar="FILE",
        help="the node types the cluster's autoscaler may add (its launcher YAML or KubeRay RayCluster); "
        "default: the config of the head's own autoscaler",
    )
    p.add_argument(
        "--artifacts",
        metavar="URI",
        help="keep models and epoch checkpoints where every node reaches them: s3://bucket/prefix, "
        "gs://bucket/prefix or a path mounted on every node (credentials from the environment)",
    )
    p.add_argument("--detach", action="store_true", help="run in the background; return once it answers")
    command("stop", cmd_stop, "stop the service started with `labtrain serve`")

    p = command("users", cmd_users, "list users, or add one and print its token (admin only)")
    p.add_argument("action", choices=["list", "add"], nargs="?", default="list")
    p.add_argument("name", nargs="?")
    p.add_argument("--admin", action="store_true")

    p = command("project", cmd_project, "create, list or show projects")
    p.add_argument("action", choices=["create", "list", "show"])
    p.add_argument("name", nargs="?")
    p.add_argument("--config", help="labeling config file (Label Studio XML)")
    p.add_argument("--language", default="en")

    p = command("import", cmd_import, "import a Generative AI Lab or Label Studio export (JSON)")
    p.add_argument("name")
    p.add_argument("file")
    p.add_argument("--images-dir", help="where task images named by path are (default: the export's folder)")

    p = command("members", cmd_members, "list or set project members: NAME:ROLE[:PRIORITY]")
    p.add_argument("name")
    p.add_argument("--set", action="append", metavar="NAME:ROLE[:PRIORITY]")
    p.add_argument("--remove", action="append", metavar="NAME")

    p = command("config", cmd_config, "show or replace a project's labeling config")
    p.add_argument("name")
    p.add_argument("--show", action="store_true", help="print the XML")
    p.add_argument("--set", metavar="FILE", help="replace the config with this XML file")
    p.add_argument("--summary", action="store_true", help="print the training types and labels it offers")

    p = command("select", cmd_select, "preview which completion of which task a training would use")
    p.add_argument("name")
    p.add_argument("--tags", help="only tasks with one of these tags (comma-separated)")
    p.add_argument("--reviewed-only", action="store_true", help="only tasks with a reviewer-accepted completion")
    p.add_argument("--validation-split", type=float, help="share of tasks for test (default 0.2)")
    p.add_argument(
        "--split-seed", type=int, default=0, help="which tasks the validation split draws (train takes the same flag)"
    )
    p.add_argument("--test-tag", help="tasks with this tag are the test set")
    p.add_argument("--train-tag", help="tasks with this tag are the train set (others are left out)")
    p.add_argument("--limit", type=int, help="list at most this many tasks")
    p.add_argument("--snapshot", action="store_true", help="write the Parquet snapshot (one file per type)")
    p.add_argument("--type", action="append", help="with --snapshot: only these training types")

    def client_command(name: str, func: Callable, help_text: str) -> argparse.ArgumentParser:
        return command(name, lambda args: func(args, _client(args)), help_text)

    add_commands(client_command)
    add_label_studio_commands(client_command)
    add_embeddings_commands(client_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        answer = args.func(args)
    except LabtrainError as exc:
        print(f"labtrain: error: {exc}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        print(f"labtrain: error: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return 1
    if answer is not None:
        print(json.dumps(answer, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
