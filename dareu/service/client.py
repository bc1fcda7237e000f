"""Talking to `dareu serve` from Python: a `dareu serve` process over a Ray head, and its JSON requests.

    server = ServeProcess(head.dashboard, store, token).start()
    status, body = server.request("POST", "/v1/requests", {"world": W, "owners": [...], "method": "npo"})
    server.stop()

The benchmarks (`service_chain.py`, `service_load.py`) and the service tests use it; stdlib HTTP only, so a client
needs nothing beyond DareU.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from dareu.errors import DareUError

ANONYMOUS = ""  # pass as `token` to send a request without the Authorization header


class ServeProcess:
    """`dareu serve` in its own process (so it can be killed like a crashed server), on loopback at `port`."""

    def __init__(self, ray_address: str, store: str | Path, token: str, port: int | None = None):
        from dareu.ports import free_port

        self.ray_address, self.store, self.token = ray_address, Path(store), token
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.store.parent / f"{self.store.name}-serve-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> ServeProcess:
        """Start the server and wait until /health answers; its output goes to `self.log`."""
        from dareu.service.cluster import head_env

        self.store.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log, "a")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen([sys.executable, "-m", "dareu.cli", "serve", "--ray-address", self.ray_address,
                                      "--store", str(self.store), "--port", str(self.port)],
                                     env=head_env() | {"DAREU_TOKEN": self.token}, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise DareUError(f"dareu serve exited with code {self.proc.returncode}: "
                                 f"{self.log.read_text()[-2000:]}")
            try:
                if self.request("GET", "/health", token=ANONYMOUS)[0] == 200:
                    return self
            except OSError:
                time.sleep(0.3)
        raise DareUError(f"dareu serve did not answer within {timeout:.0f} s; see {self.log}")

    def request(self, method: str, path: str, body: dict | None = None, token: str | None = None):
        """(HTTP status, parsed JSON or text) of one request, with this server's token unless `token` says another
        (ANONYMOUS: none)."""
        token = self.token if token is None else token
        req = urllib.request.Request(self.url + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {token}"} if token else {})})
        try:
            with urllib.request.urlopen(req, timeout=60) as res:
                status, text = res.status, res.read().decode()
        except urllib.error.HTTPError as err:
            status, text = err.code, err.read().decode()
        try:
            return status, json.loads(text)
        except json.JSONDecodeError:
            return status, text

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would (its Ray jobs keep running)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.running():
            self.proc.terminate()
            self.proc.wait(timeout=30)
