"""An answer that is not the caller's fault still says what went wrong, in JSON: a fault of
labtrain's own is a 500 naming the error, and a catalog or job manager whose process died while
answering (Ray's memory monitor, a crash: Ray restarts it) is a 503 that says to try again."""

from __future__ import annotations

import asyncio
import json

import pytest
from starlette.requests import Request

from ray_app.api.app import domain_error, unexpected_error
from ray_app.service import RAY_STARTS, RAY_STARTUP_TIMED_OUT
from tests.test_placement_groups import run_on_a_cluster_of_its_own


def request(path: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""})


def test_a_fault_of_labtrains_own_is_a_json_500_that_names_the_error():
    answer = asyncio.run(unexpected_error(request("/api/trainings"), KeyError("no such column: reason")))
    assert answer.status_code == 500
    body = json.loads(answer.body)
    assert body["error"] == "internal"
    assert body["detail"] == "labtrain failed answering: KeyError: 'no such column: reason'"


SCRIPT = """
import asyncio, json, os, sys, ray
from ray_app.clients import _call
from labtrain.errors import ServiceUnavailable

ray.init(address="local", num_cpus=1, include_dashboard=False, _temp_dir=sys.argv[1], log_to_driver=False)


@ray.remote(num_cpus=0)
class Catalog:
    def die(self):
        os._exit(1)  # as the memory monitor's SIGKILL or a crash ends it: in the middle of a call


async def main():
    try:
        await _call(Catalog.remote().die)
    except ServiceUnavailable as exc:
        return {"kind": type(exc).__name__, "status": exc.status_code, "detail": str(exc)}
    return {"kind": "nothing raised"}


print(json.dumps(asyncio.run(main())))
"""


@pytest.mark.slow
def test_an_actor_that_dies_while_answering_is_a_503_that_says_to_try_again():
    for attempt in range(1, RAY_STARTS + 1):
        returncode, out, err = run_on_a_cluster_of_its_own(SCRIPT)
        if returncode == 0 or RAY_STARTUP_TIMED_OUT not in err or attempt == RAY_STARTS:
            break
    assert returncode == 0, err[-3000:]
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["kind"] == "ServiceUnavailable"
    assert seen["status"] == 503
    assert "restarted while answering" in seen["detail"] and "try again" in seen["detail"]
    assert "Traceback" not in seen["detail"]

    from labtrain.errors import ServiceUnavailable

    answer = asyncio.run(domain_error(request("/api/projects"), ServiceUnavailable(seen["detail"])))
    assert answer.status_code == 503
    assert json.loads(answer.body) == {"detail": seen["detail"], "error": "ServiceUnavailable"}
