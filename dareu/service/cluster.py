"""The Ray side of the service: where jobs run, how a request becomes one, and what Ray says about it.

Each attempt of a request is a Ray job with the submission id `dareu-<request>-<attempt>`, recorded in the store
*before* it is submitted: a server killed between the two finds the job by that id when it starts again, so a
request is never submitted twice and never lost.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dareu.commands.jobs import entrypoint, find_job
from dareu.errors import DareUError
from dareu.ports import free_port

# Ray job status -> request state (STOPPED is "cancelled" when we stopped it, else the job failed)
STATES = {"PENDING": "queued", "RUNNING": "running", "SUCCEEDED": "done", "FAILED": "failed", "STOPPED": "failed"}


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(f"{url}/api/version", timeout=2)
        return True
    except OSError:
        return False


def head_env() -> dict[str, str]:
    """The environment of a loopback head and of its jobs: this environment's `dareu` and `python` first on PATH;
    Ray 2.60 keeps --node-ip-address=127.0.0.1 only when it believes it cannot form a multi-node cluster."""
    bin_dir = Path(sys.executable).parent
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


@dataclass
class LocalHead:
    """A single-node Ray head on loopback (`ray start --head --block`, in its own session)."""

    address: str    # GCS, for ray.init
    dashboard: str  # job server
    proc: subprocess.Popen
    temp: Path

    @classmethod
    def start(cls, cpus: int | None = None, dashboard_port: int | None = None, temp: Path | None = None,
              timeout: float = 180) -> LocalHead:
        """Start a head; every port free unless `dashboard_port` is given (`dareu serve` uses 8265, where the
        next server finds it). Its temp folder is short: Ray puts unix sockets under it."""
        temp = Path(temp or tempfile.mkdtemp(prefix="rh", dir="/tmp"))
        temp.mkdir(parents=True, exist_ok=True)
        port, dash = free_port(), dashboard_port or free_port()
        cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
               f"--port={port}", f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1",
               f"--num-cpus={cpus or os.cpu_count() or 1}", "--num-gpus=0", f"--temp-dir={temp}",
               "--disable-usage-stats", "--object-store-memory=300000000",
               f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}"]
        with open(temp / "head.log", "a") as log:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(cmd, env=head_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        head = cls(f"127.0.0.1:{port}", f"http://127.0.0.1:{dash}", proc, temp)
        deadline = time.time() + timeout
        while not answers(head.dashboard):
            if proc.poll() is not None or time.time() > deadline:
                head.stop(keep_log=True)
                raise DareUError(f"the local Ray head did not start (see {temp / 'head.log'}); start one with "
                                 "`ray start --head` and pass its job server address")
            time.sleep(0.5)
        return head

    def stop(self, keep_log: bool = False) -> None:
        """SIGTERM to `ray start --block` stops what it started; anything left in its session is killed by id.
        (`ray stop` would stop every Ray on the machine.)"""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)  # it may drain for up to 30 s; what is left is killed below
            except subprocess.TimeoutExpired:
                pass
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                pid, sid = int(stat.parent.name), int(stat.read_text().rsplit(")", 1)[1].split()[3])
            except (OSError, ValueError, IndexError):
                continue
            if sid == self.proc.pid and pid != os.getpid():
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        if not keep_log:
            shutil.rmtree(self.temp, ignore_errors=True)


class Jobs:
    """Submit, inspect and stop the service's Ray jobs on one cluster."""

    def __init__(self, address: str, job_cpus: float = 0.0):
        from dareu.commands.jobs import client, resolve_address

        self.address = resolve_address(address)
        self.client = client(address)
        self.job_cpus = job_cpus

    def submit(self, job: str, folder: Path) -> None:
        """Run the request in `folder` as job `job` (this environment's python; the folder on storage the
        cluster sees). Already submitted under that id: nothing to do."""
        if self.info(job) is not None:
            return
        command = entrypoint([sys.executable, "-m", "dareu.service.job", str(folder)])
        self.client.submit_job(entrypoint=command, submission_id=job, entrypoint_num_cpus=self.job_cpus,
                               runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}},
                               metadata={"dareu": "request", "folder": str(folder)})

    def info(self, job: str):
        """Ray's JobDetails of `job`, or None when the cluster does not know it (never submitted, or the cluster
        was restarted)."""
        return find_job(self.client, job)

    def stop(self, job: str) -> None:
        try:
            self.client.stop_job(job)
        except RuntimeError:
            pass  # already ended

    def logs(self, job: str) -> str:
        try:
            return self.client.get_job_logs(job)
        except RuntimeError:
            return ""
