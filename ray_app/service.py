"""Start, detach and stop the labtrain service: a Ray head (or a joined cluster), the storage
actor and the Ray Serve app."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx

from labtrain.errors import Conflict, LabtrainError
from ray_app.settings import APP_NAME, JOB_MANAGER, NAMESPACE, STORAGE_ACTOR, read_service, service_file

log = logging.getLogger(__name__)

# What Ray 2.60 raises when a new node's raylet has not registered within its fixed 30 s
# (`raylet_start_wait_time_s` in ray/_private/node.py, not configurable): a loaded machine outlasts it.
RAY_STARTUP_TIMED_OUT = "The current node timed out during startup"
RAY_STARTS = 3


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_service(home: Path) -> dict | None:
    service = read_service(home)
    if service and pid_alive(service["pid"]):
        return service
    return None


def session_processes(sid: int) -> list[int]:
    """The pids of the processes in session `sid` (field 6 of /proc/PID/stat)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[3]) == sid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def reap_leftovers(home: Path) -> list[int]:
    """After a service of this home was killed (SIGKILL, OOM): Ray's processes die with it, but a
    few of its agents can linger. A detached service leads its own session, so whatever is left
    in that session is stopped. Returns their pids."""
    service = read_service(home)
    if not service or pid_alive(service["pid"]) or not service.get("session_leader"):
        return []
    left = session_processes(service["pid"])
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if left:
        log.warning("stopped %d processes left by the killed service %d", len(left), service["pid"])
    return left


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise Conflict(f"port {port} on {host} is already in use; choose another with --port") from None


@contextmanager
def _free_agent_port(local: bool):
    """A head that `ray.init` starts puts its dashboard agent, which Ray job submission goes through,
    on Ray's default port 52365, and `ray.init` has no argument to move it: a second service on the
    machine (or any Ray node holding the port) would start without job submission. While the head
    starts, its parameters' default is a free port instead (Ray's `RayParams`, which `ray.init` looks
    up when it builds them)."""
    from ray._private import parameter

    if not local:
        yield
        return
    base = parameter.RayParams
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]

    class RayParams(base):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("dashboard_agent_listen_port", free)
            super().__init__(*args, **kwargs)

    parameter.RayParams = RayParams
    try:
        yield
    finally:
        parameter.RayParams = base


def run_service(
    home: Path,
    host: str,
    port: int,
    num_cpus: int | None,
    address: str | None,
    on_ready=None,
    autoscaling_config: str | None = None,
    artifacts: str | None = None,
) -> None:
    """Run the service in this process until SIGTERM or SIGINT."""
    # Ray 2.60 turns token auth on for a local head; say so explicitly. Ray reads the mode
    # when it is imported, so this must come first.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray
    from ray import serve
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from ray_app.api.app import LabtrainApi
    from ray_app.job_worker import last_line
    from ray_app.jobs import JobManager
    from ray_app.storage_actor import StorageActor

    home.mkdir(parents=True, exist_ok=True)
    other = running_service(home)
    if other:
        raise Conflict(
            f"labtrain is already serving {other['url']} from {home} (pid {other['pid']}); run `labtrain stop` first"
        )
    reap_leftovers(home)
    _check_port_free(host, port)
    if artifacts:
        from storage.artifacts import ArtifactStore

        ArtifactStore(artifacts).check()  # a store this node cannot write is refused before anything starts
    # "local": a head of our own, never the cluster a `ray start` on this machine left in /tmp/ray
    with _free_agent_port(local=not address):
        context = ray.init(
            address=address or "local",
            num_cpus=None if address else num_cpus,
            namespace=NAMESPACE,
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            log_to_driver=False,
        )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        node = ray.get_runtime_context().get_node_id()
        if not any(n["NodeID"] == node and "node:__internal_head__" in n["Resources"] for n in ray.nodes()):
            raise LabtrainError(
                "labtrain serve must run on the head node of the Ray cluster: the API, the catalog and "
                "the job manager stay there, so that worker nodes only train and can be retired"
            )
        storage = StorageActor.options(
            name=STORAGE_ACTOR,
            namespace=NAMESPACE,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
        ).remote(str(home))
        try:
            admin_token = ray.get(storage.ensure_admin_token.remote())
        except ray.exceptions.RayError as exc:
            raise LabtrainError(f"could not open the catalog in {home}: {last_line(exc)}") from None
        # Everything the job manager starts (trainings, Ray Train's controllers and their placement-group
        # cleaners) inherits this cluster's address: Ray's state API, which the cleaner calls, otherwise
        # guesses the cluster and gives up when another Ray cluster runs on the machine.
        jobs = JobManager.options(
            name=JOB_MANAGER,
            namespace=NAMESPACE,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
            runtime_env={"env_vars": {"RAY_ADDRESS": context.address_info["gcs_address"]}},
        ).remote(str(home), storage, autoscaling_config, artifacts)
        try:
            interrupted = ray.get(jobs.start.remote())
        except ray.exceptions.RayError as exc:
            raise LabtrainError(f"could not start the job manager: {last_line(exc)}") from None
        if interrupted:
            log.warning("marked %d jobs of an earlier service as failed (interrupted)", len(interrupted))
        serve.start(http_options={"host": host, "port": port}, proxy_location="HeadOnly")
        serve.run(LabtrainApi.bind(), name=APP_NAME, route_prefix="/")
        dashboard = context.dashboard_url or ""
        info = {
            "pid": os.getpid(),
            "url": f"http://{host}:{port}",
            "dashboard_url": dashboard if dashboard.startswith("http") else f"http://{dashboard}",
            "home": str(home),
            "ray_address": context.address_info.get("address"),
            "ray_logs": str(Path(context.address_info["session_dir"]) / "logs"),  # what a failure report reads
            "artifacts": artifacts,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "session_leader": os.getsid(0) == os.getpid(),
        }
        service_file(home).write_text(json.dumps(info, indent=2))
        if on_ready:
            on_ready(info, admin_token)
        while not stop.wait(1.0):
            pass
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            current = read_service(home)
            if current and current.get("pid") == os.getpid():
                service_file(home).unlink(missing_ok=True)


def start_detached(home: Path, argv: list[str], hang_s: float = 1800) -> dict:
    """Start `labtrain serve` in the background; return its service info once it answers. It waits
    as long as the service starts (a loaded machine can take minutes to bring up Ray and Serve) and
    fails when the service exits first; `hang_s` only catches a start that hangs. A start that Ray
    itself gave up on (its fixed 30 s wait for the new node's raylet, outlasted on a loaded machine)
    is started again, up to RAY_STARTS times."""
    home.mkdir(parents=True, exist_ok=True)
    other = running_service(home)
    if other:
        raise Conflict(f"labtrain is already serving {other['url']} from {home} (pid {other['pid']})")
    log_path = home / "serve.log"
    attempt = 1
    while True:
        since = log_path.stat().st_size if log_path.exists() else 0
        proc = _spawn_serve(argv, log_path)
        service = _wait_until_it_answers(home, proc, hang_s)
        if service:
            return service
        with open(log_path, "rb") as f:
            f.seek(since)
            said = f.read().decode(errors="replace")
        if RAY_STARTUP_TIMED_OUT not in said or attempt == RAY_STARTS:
            tail = "\n".join(said.splitlines()[-15:])
            raise LabtrainError(f"labtrain serve exited with code {proc.returncode}; end of {log_path}:\n{tail}")
        attempt += 1
        with open(log_path, "a") as f:  # the exited process's Ray processes (fate-shared) went with it
            f.write(f"labtrain: Ray gave up starting its node; starting again ({attempt} of {RAY_STARTS})\n")


def _spawn_serve(argv: list[str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ray_app.cli", *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "LABTRAIN_DETACHED": "1"},
        )


def _wait_until_it_answers(home: Path, proc: subprocess.Popen, hang_s: float) -> dict | None:
    """The service info once `proc` answers; None when it exited first."""
    deadline = time.monotonic() + hang_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None
        service = read_service(home)
        if service and service.get("pid") == proc.pid:
            try:
                if httpx.get(service["url"] + "/api/health", timeout=2).status_code == 200:
                    return service
            except httpx.HTTPError:
                pass
        time.sleep(0.5)
    proc.terminate()
    raise LabtrainError(f"labtrain serve did not answer within {hang_s:.0f} s; see {home / 'serve.log'}")


def stop_service(home: Path, timeout_s: float = 60) -> dict | None:
    """Stop the service of this home, if one runs; return what was stopped."""
    service = running_service(home)
    if not service:
        service_file(home).unlink(missing_ok=True)
        return None
    os.kill(service["pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(service["pid"]):
            break
        time.sleep(0.3)
    else:
        os.kill(service["pid"], signal.SIGKILL)
    service_file(home).unlink(missing_ok=True)
    return service
