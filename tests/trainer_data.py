"""Tiny, separable, real projects for trainer tests: imported into a real DuckDB catalog and
snapshotted to Parquet exactly as a training would be."""

from __future__ import annotations

import json
import random
from pathlib import Path

from storage.catalog import Catalog
from storage.selection import SelectionParams

CONFIG = """<View>
  <Labels name="label" toName="text">
    <Label value="PER"/><Label value="LOC"/>
    <Label value="Present" assertion="true"/><Label value="Absent" assertion="true"/>
  </Labels>
  <Relations><Relation value="lives_in"/></Relations>
  <Text name="text" value="$text"/>
  <Choices name="topic" toName="text" choice="single"><Choice value="travel"/><Choice value="health"/></Choices>
</View>"""
MULTI_CONFIG = """<View><Text name="text" value="$text"/>
  <Choices name="symptoms" toName="text" choice="multiple" train="true">
    <Choice value="respiratory"/><Choice value="skin"/>
  </Choices></View>"""
NAMES = ["Anna", "Boris", "Carla", "David", "Elena", "Farid", "Greta", "Hugo", "Ines", "Jonas"]
CITIES = ["Paris", "Berlin", "Madrid", "Lisbon", "Rome", "Oslo", "Vienna", "Prague", "Dublin", "Athens"]


def _span(text: str, word: str, label: str, rid: str) -> dict:
    start = text.index(word)
    return {
        "id": rid,
        "from_name": "label",
        "to_name": "text",
        "type": "labels",
        "value": {"start": start, "end": start + len(word), "text": word, "labels": [label]},
    }


def _task(i: int, text: str, result: list) -> dict:
    return {
        "id": i + 1,
        "data": {"text": text},
        "completions": [
            {"id": 1000 + i, "created_username": "a", "submitted_at": "2024-01-01T00:00:00", "result": result}
        ],
    }


def toy_tasks(n: int, seed: int = 0, names: list[str] = NAMES, cities: list[str] = CITIES) -> list[dict]:
    """Odd tasks: 'NAME lives in CITY' (travel, lives_in); even: 'NAME has [no] fever in CITY'
    (health, fever Present/Absent)."""
    rng = random.Random(seed)
    tasks = []
    for i in range(n):
        name, city = rng.choice(names), rng.choice(cities)
        travel = bool(i % 2)
        negated = rng.random() < 0.5
        text = (
            f"{name} lives in {city} and travels often ."
            if travel
            else f"{name} has {'no ' if negated else ''}fever in {city} ."
        )
        result = [
            _span(text, name, "PER", "p"),
            _span(text, city, "LOC", "l"),
            {
                "id": "c",
                "from_name": "topic",
                "to_name": "text",
                "type": "choices",
                "value": {"choices": ["travel" if travel else "health"]},
            },
        ]
        if travel:
            result.append({"type": "relation", "from_id": "p", "to_id": "l", "labels": ["lives_in"]})
        else:
            result.append(_span(text, "fever", "Absent" if negated else "Present", "a"))
        tasks.append(_task(i, text, result))
    return tasks


def multi_tasks(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    kinds = [(["respiratory"], "a cough"), (["skin"], "a rash"), (["respiratory", "skin"], "a cough and a rash")]
    tasks = []
    for i in range(n):
        labels, words = kinds[i % 3]
        text = f"{rng.choice(NAMES)} reports {words} since {rng.choice(['Monday', 'Friday', 'May'])} ."
        tasks.append(
            _task(
                i,
                text,
                [
                    {
                        "id": "c",
                        "from_name": "symptoms",
                        "to_name": "text",
                        "type": "choices",
                        "value": {"choices": labels},
                    }
                ],
            )
        )
    return tasks


def build_snapshot(home: Path, config: str, tasks: list[dict], split: float = 0.3) -> dict:
    catalog = Catalog(home)
    try:
        catalog.create_project("toy", config, "en", "owner")
        catalog.import_file("toy", json.dumps(tasks).encode())
        manifest = catalog.snapshot("toy", SelectionParams(validation_split=split, split_seed=1), out_dir=home / "snap")
    finally:
        catalog.close()
    return {t: f["path"] for t, f in manifest["files"].items()}
