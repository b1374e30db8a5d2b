"""schemathesis against the running service's OpenAPI document: every route, the import upload
included, with generated and mutated inputs (its coverage and fuzzing phases) aimed at a real
project, training, model and script. No answer may be a 5xx, every answer must carry a media type
its route documents and fit the route's response schema, and the service stays up."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import HANG_S

# No 5xx; and every answer has a media type its route documents and, when JSON, fits the route's schema
# (its response model, or the 422 one).
CHECKS = "not_a_server_error,content_type_conformance,response_schema_conformance"


def schemathesis_command() -> list[str]:
    """Its console script, or its module with this Python (the test environment sees the
    dependencies through a .pth file, so their scripts are not on its PATH)."""
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "schemathesis.cli"]


def test_schemathesis_finds_no_server_error_or_undocumented_answer_on_any_route(service, trained_project, tmp_path):
    project, training, model = trained_project["project"], trained_project["training"], trained_project["model"]
    config = tmp_path / "schemathesis.toml"
    config.write_text(f'''
[parameters]
"path.name" = "{project}"
"path.training_id" = {training["id"]}
"path.script" = "s"

[[operations]]
include-path-regex = "^/api/models/"
parameters = {{ "path.name" = "{model}" }}
''')
    try:
        run = subprocess.run(
            [
                *schemathesis_command(),
                "--config-file",
                str(config),
                "run",
                f"{service.url}/openapi.json",
                "-H",
                f"Authorization: Bearer {service.token}",
                "--checks",
                CHECKS,
                "--phases",
                "coverage,fuzzing",
                "--workers",
                "1",
                "--max-time",
                "30",
                "--request-timeout",
                "60",
                "--seed",
                "1",
                "--report",
                "junit",
                "--report-dir",
                str(tmp_path / "report"),
            ],
            capture_output=True,
            text=True,
            timeout=HANG_S,
            cwd=tmp_path,
        )
    finally:  # generated requests may have started trainings of the project: stop them
        with service.client() as http:
            for t in http.get(f"/api/projects/{project}/trainings").json():
                if t["status"] in ("queued", "running"):
                    http.post(f"/api/trainings/{t['id']}/cancel")
    output = run.stdout + run.stderr
    generated = re.search(r"(\d+) generated", output)
    assert run.returncode == 0, output[-6000:]
    assert generated and int(generated.group(1)) > 300, output[-3000:]
    print(f"schemathesis: {generated.group(0)} test cases, no 5xx, every answer as documented")
    with service.client() as http:
        operations = sum(len(ops) for ops in http.get("/openapi.json").json()["paths"].values())
        assert f"Tested: {operations}" in output, output[-3000:]
        assert http.get("/api/health").status_code == 200
        assert http.get(f"/api/projects/{project}").status_code == 200
