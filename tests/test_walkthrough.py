"""The README's walk-through, run as written (its `labtrain` lines, in order) against the session's
service on the example project the clone ships: every training it starts succeeds with the
defaults a user gets, and the import counts it shows are what the CLI prints."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests.conftest import HANG_S

REPO = Path(__file__).resolve().parents[1]


def walkthrough() -> list[tuple[str, list[str]]]:
    """The walk-through's `labtrain` commands, each with the comment lines shown under it."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Five-minute walk-through", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    commands: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("#   ") and commands:
            commands[-1][1].append(line[4:])
        for part in line.split("#", 1)[0].split(";"):
            if part.strip().startswith("labtrain "):
                commands.append((part.strip(), []))
    return commands


def test_the_readme_walkthrough_runs_as_written_on_the_shipped_example(service):
    commands = walkthrough()
    assert commands[0][0].startswith("labtrain project create clinic --config examples/clinical/config.xml")
    env = {**os.environ, "LABTRAIN_URL": service.url, "LABTRAIN_TOKEN": service.token}
    training_id = None
    for command, shown in commands:
        if command == "labtrain stop":  # the session's service outlives this test
            continue
        argv = shlex.split(command)[1:]
        if argv[:1] == ["logs"] and training_id is not None:
            argv = ["logs", str(training_id)]  # the README's service is new: its training is 1
        done = subprocess.run(
            [sys.executable, "-m", "ray_app.cli", *argv, "--home", str(service.home)],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=HANG_S,
        )
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        if argv[0] == "import":
            assert done.stdout.strip().splitlines() == shown, (command, done.stdout)
        if argv[0] == "train":
            assert "warning:" not in done.stderr, done.stderr  # warnings come before the result, if any
            first = done.stdout.splitlines()[0]
            assert re.match(r"training (\d+) of clinic: succeeded \(ner, assertion, classification\)", first), first
            training_id = int(first.split()[1])
            assert len(re.findall(r"succeeded", done.stdout)) == 4, done.stdout  # the training and its 3 jobs
    assert training_id is not None
