"""A Ray head on loopback for tests: `ray start --head --node-ip-address=127.0.0.1`, started by the `head` fixture
(conftest.py, once per test module) and stopped at its end (only that head: other Ray instances on the machine are left alone)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
HEAD_CPUS = 4  # logical: learner 1 + two rollout workers of 0.5 + room for the scorer and the job drivers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Ray 2.60 swaps --node-ip-address=127.0.0.1 for the machine's routable address unless it believes it
# cannot form a multi-node cluster; this single-node head then stays on loopback end to end.
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def env() -> dict[str, str]:
    # the head's processes (and so its jobs) find this venv's `dareu` and `python` first
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", **LOOPBACK,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


@dataclass
class Head:
    address: str    # GCS, for ray.init
    dashboard: str  # job server, for dareu submit/status/logs
    proc: subprocess.Popen
    temp: Path


def stop_head(head: Head) -> None:
    """SIGTERM to our `ray start --block` stops the processes it started; anything left in its session
    (it was started as a session leader) is killed by id. `ray stop` would stop every Ray on the machine."""
    if head.proc.poll() is None:
        head.proc.send_signal(signal.SIGTERM)
        try:
            head.proc.wait(timeout=5)  # it may drain for up to 30 s; what is left is killed below
        except subprocess.TimeoutExpired:
            pass
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, sid = int(stat.parent.name), int(stat.read_text().rsplit(")", 1)[1].split()[3])
        except (OSError, ValueError, IndexError):
            continue
        if sid == head.proc.pid and pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    shutil.rmtree(head.temp, ignore_errors=True)


def start_head(cpus: int = HEAD_CPUS) -> Head:
    temp = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))  # short: Ray puts unix sockets under it
    port, dash = free_port(), free_port()
    cmd = [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
           f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1", f"--num-cpus={cpus}", "--num-gpus=0",
           f"--temp-dir={temp}", "--disable-usage-stats", "--object-store-memory=300000000",
           f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}"]
    with open(temp / "head.log", "w") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(cmd, env=env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    h = Head(f"127.0.0.1:{port}", f"http://127.0.0.1:{dash}", proc, temp)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(f"{h.dashboard}/api/version", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        stop_head(h)
        pytest.fail(f"the Ray head did not come up: {(temp / 'head.log').read_text()[-2000:]}")
    return h
