"""The Ray side of the service: where jobs run, how a request becomes one, and what Ray says about it.

Each attempt of a request is a Ray job with the submission id `dareu-<request>-<attempt>`, recorded in the store
*before* it is submitted: a server killed between the two finds the job by that id when it starts again, so a
request is never submitted twice and never lost.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from dareu.errors import DareUError

# Ray job status -> request state (STOPPED is "cancelled" when we stopped it, else the job failed)
STATES = {"PENDING": "queued", "RUNNING": "running", "SUCCEEDED": "done", "FAILED": "failed", "STOPPED": "failed"}
LOCAL_DASHBOARD = "http://127.0.0.1:8265"


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(f"{url}/api/version", timeout=2)
        return True
    except OSError:
        return False


def start_local_head(folder: Path, num_cpus: int | None = None, say=print) -> subprocess.Popen:
    """`ray start --head --block` on loopback, job server at 127.0.0.1:8265, in its own session: it outlives a
    killed server (its jobs keep running) and the next server finds it at the same address."""
    folder.mkdir(parents=True, exist_ok=True)
    ray = Path(sys.executable).parent / "ray"
    cmd = [str(ray), "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
           "--dashboard-port=8265", f"--num-cpus={num_cpus or os.cpu_count() or 1}", "--num-gpus=0",
           "--disable-usage-stats"]
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
           "PATH": f"{ray.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with open(folder / "ray-head.log", "a") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 120
    while not answers(LOCAL_DASHBOARD):
        if proc.poll() is not None or time.time() > deadline:
            raise DareUError(f"the local Ray head did not start (see {folder / 'ray-head.log'}); start one with "
                             "`ray start --head` and pass --ray-address http://127.0.0.1:8265")
        time.sleep(0.5)
    say(f"started a local Ray head ({LOCAL_DASHBOARD}; log {folder / 'ray-head.log'}); it keeps running after the "
        "server stops: `ray stop` ends it")
    return proc


class Jobs:
    """Submit, inspect and stop the service's Ray jobs on one cluster."""

    def __init__(self, address: str, job_cpus: float = 1.0):
        from dareu.commands.jobs import client, resolve_address

        self.address = resolve_address(address)
        self.client = client(address)
        self.job_cpus = job_cpus

    def submit(self, job: str, folder: Path) -> None:
        """Run the request in `folder` as job `job` (this environment's python; the folder on storage the
        cluster sees). Already submitted under that id: nothing to do."""
        if self.info(job) is not None:
            return
        command = f"PATH={shlex.quote(os.path.dirname(sys.executable))}:\"$PATH\" " \
                  f"{shlex.quote(sys.executable)} -m dareu.service.job {shlex.quote(str(folder))}"
        self.client.submit_job(entrypoint=command, submission_id=job, entrypoint_num_cpus=self.job_cpus,
                               runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}},
                               metadata={"dareu": "request", "folder": str(folder)})

    def info(self, job: str):
        """Ray's JobDetails of `job`, or None when the cluster does not know it (never submitted, or the cluster
        was restarted)."""
        try:
            return self.client.get_job_info(job)
        except RuntimeError as err:
            if "does not exist" in str(err) or "404" in str(err):
                return None
            raise

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
