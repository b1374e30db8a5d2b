"""`labtrain link | push`: a project linked to Label Studio, each a thin call of the HTTP API."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from labtrain.errors import LabtrainError
from ray_app.client import ApiClient


def cmd_link(args: argparse.Namespace, client: ApiClient) -> Any:
    path = f"/api/projects/{args.name}/link"
    if args.unlink:
        client.delete(path)
        return {"unlinked": args.name} if args.json else print(f"{args.name} is no longer linked to Label Studio")
    if args.sync:
        answer = client.post(path + "/sync")
        return (
            answer
            if args.json
            else print(
                f"synced {args.name}: {answer['tasks']} tasks, {answer['completions']} "
                f"annotations ({answer['inserted']} new, {answer['updated']} updated, "
                f"{answer.get('deleted', 0)} deleted)"
            )
        )
    if not args.label_studio:
        link = client.get(path)
        return link if args.json else _print_link(link)
    missing = [flag for flag, value in (("--ls-project", args.ls_project), ("--ls-token", args.ls_token)) if not value]
    if missing:
        raise LabtrainError(f"link: {' and '.join(missing)} go with --label-studio")
    link = client.post(
        path,
        json={
            "label_studio": args.label_studio,
            "ls_project": args.ls_project,
            "ls_token": args.ls_token,
            "connect": args.connect,
            "backend_url": args.backend_url,
            "language": args.language,
        },
    )
    if args.json:
        return link
    imported = link["imported"]
    print(
        f"linked {args.name} to Label Studio project {link['ls_project']} ({link['label_studio_title']}) at "
        f"{link['url']}: {imported['tasks']} tasks, {imported['completions']} annotations"
    )
    print(f"ML backend URL    {link['backend_url']}")
    print(f"basic auth        user {link['backend_user']}, password {link['backend_password']} (shown this once)")
    print(
        "connected         "
        + (
            "yes: Label Studio calls it, and its webhook keeps the catalog in sync"
            if link["ml_backend_id"]
            else "no (add --connect to register it in Label Studio)"
        )
    )
    return None


def _print_link(link: dict) -> None:
    print(f"{link['project']} is linked to Label Studio project {link['ls_project']} at {link['url']}")
    print(f"ML backend URL    {link['backend_url']}   state: {link.get('backend_state') or 'not connected'}")
    print(
        f"last sync         {link['last_sync'] or 'never'} ({link['last_sync_tasks'] or 0} tasks)"
        + (f"; last error: {link['last_error']}" if link.get("last_error") else "")
    )


def cmd_push(args: argparse.Namespace, client: ApiClient) -> Any:
    last: dict = {}
    for line in client.stream_lines(f"/api/projects/{args.name}/link/push", method="POST", json={"model": args.model}):
        last = json.loads(line)
        if "error" in last:
            raise LabtrainError(f"push stopped after {last['done']} of {last['total']} tasks: {last['error']}")
        if not args.json:
            total = max(1, last["total"] - last["skipped"])
            filled = int(20 * last["done"] / total)
            end = "" if sys.stderr.isatty() else "\n"
            print(
                ("\r" if sys.stderr.isatty() else "") + f"push [{'#' * filled}{'.' * (20 - filled)}] {last['done']}/"
                f"{last['total'] - last['skipped']} tasks",
                end=end,
                file=sys.stderr,
                flush=True,
            )
    if args.json:
        return last
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(
        f"wrote {last.get('done', 0)} predictions of {last.get('model_version')} into Label Studio; "
        f"{last.get('skipped', 0)} tasks already had them"
    )
    return None


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command(
        "link",
        cmd_link,
        "link a project to a Label Studio project (labtrain as its ML backend), or show, sync or remove the link",
    )
    p.add_argument("name")
    p.add_argument("--label-studio", metavar="URL", help="Label Studio's URL")
    p.add_argument("--ls-project", type=int, metavar="ID", help="the project's id in Label Studio")
    p.add_argument(
        "--ls-token",
        default=os.environ.get("LABEL_STUDIO_API_KEY"),
        help="a Label Studio API token (default: $LABEL_STUDIO_API_KEY)",
    )
    p.add_argument(
        "--connect", action="store_true", help="register labtrain as the project's ML backend in Label Studio"
    )
    p.add_argument(
        "--backend-url",
        help="the URL Label Studio reaches labtrain's backend at (default: the service's URL + /ml/NAME)",
    )
    p.add_argument("--language", default="en", help="the language of a project the link creates")
    p.add_argument("--sync", action="store_true", help="pull the linked project again")
    p.add_argument("--unlink", action="store_true", help="forget the link")

    p = command("push", cmd_push, "write a model's predictions for every task of the linked Label Studio project")
    p.add_argument("name")
    p.add_argument("--model", help="the model (default: the project's deployed models)")
