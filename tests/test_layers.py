"""The code's layers, read from the source: dependencies point one way (ray_app -> cluster, storage,
trainers -> labtrain), no module imports itself back through others, and the CLI, which only speaks
HTTP, loads none of the service's heavy libraries."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("labtrain", "ray_app", "trainers", "storage", "cluster")
MAY_IMPORT = {  # a package -> the project packages it may import
    "labtrain": set(),
    "trainers": {"labtrain"},
    "storage": {"labtrain"},
    "cluster": {"labtrain"},
    "ray_app": {"labtrain", "trainers", "storage", "cluster"},
}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, name: str) -> set[str]:
    """The project modules a module imports, at its top or inside a function alike."""
    out = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in out if m.split(".")[0] in PACKAGES}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: {m for m in imports(path, name) if m in known and m != name} for name, path in known.items()}


def test_every_package_imports_only_the_layers_below_it():
    wrong = [
        (name, target)
        for name, targets in graph().items()
        for target in targets
        if target.split(".")[0] != name.split(".")[0] and target.split(".")[0] not in MAY_IMPORT[name.split(".")[0]]
    ]
    assert wrong == [], wrong


def test_no_module_imports_itself_back_through_others():
    edges = graph()
    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                cycles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == [], cycles


def loaded_by(imports: str, modules: tuple[str, ...]) -> list[str]:
    """Which of `modules` a fresh interpreter has in sys.modules after `import <imports>`."""
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys, json, {imports}; print(json.dumps(sorted(m for m in {modules!r} if m in sys.modules)))",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_the_cli_loads_neither_duckdb_nor_pyarrow_nor_ray_nor_torch():
    assert loaded_by("ray_app.cli", ("duckdb", "pyarrow", "ray", "torch")) == []


def test_the_service_starts_without_torch_spark_or_sklearn():
    """The serve process, the API replica, the storage actor and the job manager import no model
    library: each service start would pay for it (torch alone adds ~700 MB and seconds)."""
    imports = "ray_app.service, ray_app.api.app, ray_app.jobs, ray_app.storage_actor"
    assert loaded_by(imports, ("torch", "transformers", "pyspark", "sklearn")) == []
