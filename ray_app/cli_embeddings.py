"""`labtrain embeddings list | add | show | remove`: the embeddings trainings choose from, labtrain's
own and the encoders users register, each a thin call of the HTTP API."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labtrain.errors import LabtrainError
from ray_app.client import ApiClient

PATH = "/api/embeddings"


def cmd_embeddings(args: argparse.Namespace, client: ApiClient) -> Any:
    if args.action == "add":
        if not args.name or not args.source:
            raise LabtrainError("usage: labtrain embeddings add NAME SOURCE [--language xx ...] [--description TEXT]")
        encoder = client.post(
            PATH,
            json={
                "name": args.name,
                "source": local_source(args.source),
                "languages": args.language or [],
                "description": args.description or "",
            },
        )
        return encoder if args.json else print(f"registered {describe(encoder)}; train with --embeddings {args.name}")
    if args.action in ("show", "remove"):
        if not args.name:
            raise LabtrainError(f"usage: labtrain embeddings {args.action} NAME")
        if args.action == "show":
            encoder = client.get(f"{PATH}/{args.name}")
            return encoder if args.json else print(describe(encoder))
        encoder = client.delete(f"{PATH}/{args.name}")
        return encoder if args.json else print(f"removed encoder {args.name} and labtrain's copy of it")
    listed = client.get(PATH)
    if args.json:
        return listed
    for e in listed["built_in"]:
        print(f"{e['name']:<20} built in   {', '.join(e['types'])}  [{', '.join(e['languages'])}]  {e['description']}")
    for e in listed["registered"]:
        print(f"{e['name']:<20} registered {describe(e)}")
    return None


def local_source(source: str) -> str:
    """A folder given relative to where the command runs, made absolute (the service reads it); a URI
    or a hub id as it is."""
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else source


def describe(e: dict) -> str:
    languages = ", ".join(e["languages"]) or "languages not given"
    return (
        f"{e['name']}: {e['architecture']} ({e['model_type']}), {e['parameters'] / 1e6:.1f} M parameters, "
        f"{e['layers']} layers, hidden {e['hidden_size']}, max length {e['max_length']}, "
        f"{'cased' if e['cased'] else 'uncased'} {e['tokenizer']}, [{languages}], license {e['license'] or 'unknown'}"
    )


def add_embeddings_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command(
        "embeddings",
        cmd_embeddings,
        "the embeddings trainings use: list | add NAME SOURCE (a model folder, s3:// or gs:// URI, or hub "
        "id) | show NAME | remove NAME",
    )
    p.add_argument("action", choices=["list", "add", "show", "remove"], nargs="?", default="list")
    p.add_argument("name", nargs="?", help="the encoder's name (add, show, remove)")
    p.add_argument("source", nargs="?", help="add: a folder in Hugging Face layout, a store URI or a hub id")
    p.add_argument("--language", action="append", help="add: a language it serves (ISO code; repeat)")
    p.add_argument("--description", help="add: what it is, for the Train page's drop-down")
