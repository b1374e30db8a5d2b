"""Real multi-node Ray clusters on this machine, for the cluster tests: a head started with
`ray start --head` (optionally with Ray's fake multi-node autoscaler), worker nodes each in a mount
namespace of its own (`unshare --mount`, a tmpfs over the paths it must not see), and
`labtrain serve --address` on the head. Every process is started in a session of its own and
stopped by the pids of that session: never `ray stop`, which would end every cluster here."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ray_app.service import RAY_STARTS, RAY_STARTUP_TIMED_OUT, session_processes

RAY = [sys.executable, "-m", "ray.scripts.scripts"]  # the `ray` command of this environment
HANG_S = 1800


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def agent_port() -> list[str]:
    """A free port for the node's dashboard agent. Ray's default, 52365, is the one port an embedded
    `labtrain serve` (ray.init) cannot move: a test cluster that held it would leave a service started
    beside it without Ray job submission."""
    return ["--dashboard-agent-listen-port", str(free_port())]


def unshare_available() -> str | None:
    """Why worker nodes cannot get a mount namespace of their own here, or None."""
    if shutil.which("unshare") is None:
        return "no unshare command"
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"unshare --mount fails: {probe.stderr.strip()}"


def fake_autoscaler_config(gcs_port: int, node_types: dict, idle_timeout_s: float) -> dict:
    """A config for Ray's fake multi-node provider (its own example.yaml is not in the wheel)."""
    return {
        "cluster_name": "labtrain-test",
        "max_workers": sum(t["max_workers"] for t in node_types.values()),
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": f"127.0.0.1:{gcs_port}",
        },
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            **{name: {"node_config": {}, "min_workers": 0, **spec} for name, spec in node_types.items()},
        },
        "head_node_type": "ray.head.default",
        "auth": {},
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": idle_timeout_s / 60,
        "docker": {},
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
    }


@dataclass
class WorkerNode:
    pid: int  # leads the node's session
    ip: str
    log: Path

    def node_id(self, deadline_s: float = HANG_S) -> str:
        """The node's Ray id, from its raylet's command line."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            for pid in session_processes(self.pid):
                try:
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
                except OSError:
                    continue
                found = [a.split("=", 1)[1] for a in argv if a.startswith("--node_id=")]
                if found:
                    return found[0]
            time.sleep(0.5)
        raise AssertionError(f"worker node {self.ip} has no raylet; see {self.log}")

    def kill(self) -> None:
        """The node is lost: every process of it killed at once (its raylet, its workers)."""
        _kill_session(self.pid)


@dataclass
class RayCluster:
    folder: Path
    port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    head_pid: int | None = None
    workers: list[WorkerNode] = field(default_factory=list)
    extra_env: dict = field(default_factory=dict)

    @property
    def temp_dir(self) -> str:
        return f"/tmp/lt-ray-{self.port}"  # short: Ray's socket paths live under it

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict:
        """The environment of this cluster's processes and of the clients that join it."""
        env = {
            **os.environ,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.token,
            # a killed node is declared dead after ~3 s, not ~15 s (Ray's GCS: 3 missed checks 1 s apart)
            "RAY_health_check_period_ms": "1000",
            "RAY_health_check_failure_threshold": "3",
            **self.extra_env,
        }
        for key in ("RAY_ADDRESS", "LABTRAIN_URL", "LABTRAIN_TOKEN"):
            env.pop(key, None)
        return env

    def start_head(self, autoscaling: dict | None = None) -> None:
        """A head without CPUs (as the cloud configs have it); with `autoscaling` node types, Ray's
        fake multi-node autoscaler adds and retires worker nodes of those types."""
        self.folder.mkdir(parents=True, exist_ok=True)
        # a temp dir of its own: `ray start` writes the cluster's address there, where a later
        # `ray.init()` of this machine would otherwise find it
        command = [
            *RAY,
            "start",
            "--head",
            "--block",
            "--num-cpus",
            "0",
            "--node-ip-address",
            "127.0.0.1",
            "--temp-dir",
            self.temp_dir,
            "--port",
            str(self.port),
            "--dashboard-port",
            str(free_port()),
            *agent_port(),
            "--disable-usage-stats",
            "--object-store-memory",
            str(400 * 2**20),
        ]
        env = self.env()
        if autoscaling:
            config = self.folder / "autoscaling.yaml"
            config.write_text(
                yaml.safe_dump(
                    fake_autoscaler_config(self.port, autoscaling["node_types"], autoscaling["idle_timeout_s"])
                )
            )
            command += ["--autoscaling-config", str(config)]
            env.update(RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1")
        log = self.folder / "head.log"
        for _ in range(RAY_STARTS):
            since = log.stat().st_size if log.exists() else 0
            self.head_pid = self._spawn(command, env, log)
            if _started(log, since, self.head_pid):
                self._wait_for_nodes(1)
                return
            _kill_session(self.head_pid)  # `ray start` gave up (Ray waits 30 s for its raylet to register)
            self.head_pid = None
        raise AssertionError(f"the head did not start in {RAY_STARTS} tries; see {log}")

    def add_worker(self, num_cpus: int, hidden: list[Path], ip: str, resources: dict | None = None) -> WorkerNode:
        """A worker node in a mount namespace of its own, with a fresh tmpfs over each of `hidden`:
        it shares no disk with the head there (the service's home above all)."""
        mounts = " && ".join(f"mount -t tmpfs tmpfs {p}" for p in hidden)
        start = [
            *RAY,
            "start",
            "--address",
            self.address,
            "--block",
            "--num-cpus",
            str(num_cpus),
            "--node-ip-address",
            ip,
            *agent_port(),
            "--disable-usage-stats",
            "--object-store-memory",
            str(300 * 2**20),
        ]
        if resources:
            start += ["--resources", json.dumps(resources)]
        script = (mounts + " && " if mounts else "") + "exec " + " ".join(f"'{a}'" for a in start)
        log = self.folder / f"worker-{ip}.log"
        wanted = len(self.alive_nodes()) + 1
        for _ in range(RAY_STARTS):
            since = log.stat().st_size if log.exists() else 0
            node = WorkerNode(self._spawn(["unshare", "--mount", "sh", "-c", script], self.env(), log), ip, log)
            self.workers.append(node)
            # `ray start` says when its raylet has registered; until then nothing here asks the cluster
            # anything (a probe is a new Ray driver: every second of them starved a starting node on one core)
            if _started(log, since, node.pid) and self._wait_for_nodes(wanted):
                return node
            node.kill()  # `ray start` gave up (Ray waits 30 s for its raylet to register): what it left goes
            self.workers.remove(node)
        raise AssertionError(f"worker node {ip} did not start in {RAY_STARTS} tries; see {log}")

    def alive_nodes(self) -> list[dict]:
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                (
                    f"import json, ray; ray.init(address={self.address!r}, log_to_driver=False); "
                    "print(json.dumps([{'id': n['NodeID'], 'resources': n['Resources']} for n in ray.nodes() if n['Alive']]))"
                ),
            ],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=HANG_S,
        )
        if probe.returncode != 0:
            return []
        return json.loads(probe.stdout.strip().splitlines()[-1])

    def _wait_for_nodes(self, n: int) -> bool:
        """Until the cluster has at least `n` nodes alive."""
        deadline = time.monotonic() + HANG_S
        while time.monotonic() < deadline:
            if len(self.alive_nodes()) >= n:
                return True
            time.sleep(1)
        raise AssertionError(f"the cluster did not reach {n} nodes; see {self.folder}")

    @staticmethod
    def _spawn(command: list[str], env: dict, log: Path) -> int:
        with open(log, "ab") as out:
            return subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
            ).pid

    def stop(self) -> None:
        for node in self.workers:
            node.kill()
        if self.head_pid:
            _kill_session(self.head_pid)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _started(log: Path, since: int, pid: int) -> bool:
    """Whether the `ray start` that writes `log` from byte `since` on says it started (True) or
    exited without saying so (False)."""
    deadline = time.monotonic() + HANG_S
    while time.monotonic() < deadline:
        with open(log, "rb") as f:
            f.seek(since)
            if b"Ray runtime started" in f.read():
                return True
        if ended(pid):
            return False
        time.sleep(0.5)
    return False


def ended(pid: int) -> bool:
    """Whether the process has exited (gone, or a zombie nobody reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _kill_session(leader: int) -> None:
    for _ in range(3):  # a process may fork while we kill
        left = session_processes(leader)
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


def versitygw() -> Path | None:
    """The S3 server `.ci/setup` builds into the cache (versitygw), if it is there."""
    cache = Path(os.environ.get("LABTRAIN_CACHE", "~/.cache/labtrain")).expanduser()
    found = sorted(cache.glob("versitygw-*/versitygw"))
    return found[-1] if found else None


@dataclass
class S3Server:
    """A real S3 server on loopback: versitygw over a folder, with one access key; stopped by its pid."""

    folder: Path
    port: int = field(default_factory=free_port)
    access_key: str = field(default_factory=lambda: "lt" + secrets.token_hex(8))
    secret_key: str = field(default_factory=lambda: secrets.token_hex(20))
    pid: int | None = None

    def start(self, binary: Path) -> S3Server:
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.pid = RayCluster._spawn(
            [
                str(binary),
                "--port",
                f"127.0.0.1:{self.port}",
                "--access",
                self.access_key,
                "--secret",
                self.secret_key,
                "posix",
                str(data),
            ],
            os.environ.copy(),
            self.folder / "s3.log",
        )
        deadline = time.monotonic() + HANG_S
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            time.sleep(0.2)
        from pyarrow import fs

        store = fs.S3FileSystem(
            access_key=self.access_key,
            secret_key=self.secret_key,
            scheme="http",
            endpoint_override=f"127.0.0.1:{self.port}",
            region="us-east-1",
            allow_bucket_creation=True,
        )
        store.create_dir("labtrain")
        return self

    def uri(self, prefix: str) -> str:
        return f"s3://labtrain/{prefix}?endpoint_override=127.0.0.1:{self.port}&scheme=http&region=us-east-1"

    def env(self) -> dict:
        """The credentials, as every node's environment gives them (never in the URI)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def stop(self) -> None:
        if self.pid:
            _kill_session(self.pid)


BARE_HEAD = """
import signal, sys, time, ray
ray.init(address="local", num_cpus=0, include_dashboard=False, _temp_dir=sys.argv[1])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print(ray.get_runtime_context().gcs_address, flush=True)
while True:
    time.sleep(1)
"""


class AnotherRayCluster:
    """A bare Ray cluster of its own (as a second labtrain home or a notebook would start), in a
    session of its own, stopped by its pids. `latest`: recorded as the machine's latest cluster in
    Ray's default folder, as `ray start` records one: the cluster Ray's "auto" address names there
    (the record before it comes back at `stop`)."""

    def __init__(self, latest: bool = False):
        self.recorded = None  # (the record before this cluster's,) when `latest`
        for attempt in range(1, RAY_STARTS + 1):
            self.temp_dir = Path(tempfile.mkdtemp(prefix="ray-"))  # short: Ray's socket paths have a limit
            with open(self.temp_dir / "head.err", "w") as err:
                self.process = subprocess.Popen(
                    [sys.executable, "-c", BARE_HEAD, str(self.temp_dir)],
                    stdout=subprocess.PIPE,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                    text=True,
                    start_new_session=True,
                )
            self.gcs_address = self.process.stdout.readline().strip()  # its line comes once Ray is up
            if self.gcs_address:
                break
            said = (self.temp_dir / "head.err").read_text(errors="replace")
            self.stop()
            # Ray gives a new node's raylet a fixed 30 s to register: a loaded machine can outlast it
            if RAY_STARTUP_TIMED_OUT not in said or attempt == RAY_STARTS:
                raise AssertionError(f"the second Ray cluster did not start:\n{said[-3000:]}")
        if latest:
            from ray._private.utils import read_ray_address, write_ray_address

            self.recorded = (read_ray_address(),)
            write_ray_address(self.gcs_address)

    def stop(self) -> None:
        _kill_session(self.process.pid)
        self.process.wait(timeout=HANG_S)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        if self.recorded:
            from ray._private.utils import get_ray_address_file, write_ray_address

            (previous,) = self.recorded
            if previous:
                write_ray_address(previous)
            else:
                Path(get_ray_address_file(None)).unlink(missing_ok=True)
