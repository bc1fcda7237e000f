"""`dareu serve`: the de-attribution service, an HTTP API over Ray jobs (see dareu/service/)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import sys
import tempfile
from pathlib import Path

from dareu.errors import DareUError

EPILOG = """examples:
  dareu serve --store runs/service                       # a local Ray head is started if none answers
  dareu serve --ray-address http://HEAD:8265 --store /shared/service --token-file /etc/dareu/token
  TOKEN=$(cat runs/service/token)
  curl -H "Authorization: Bearer $TOKEN" localhost:8000/v1/requests
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ray-address", default=None,
                   help="the cluster's job server, http://HEAD:8265 (default: RAY_ADDRESS, else a local head at "
                        "http://127.0.0.1:8265, started if none answers there)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, loopback only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    p.add_argument("--store", default="dareu-store", help="folder of the request store and of every request's "
                   "files; on storage the cluster's nodes see (default: %(default)s)")
    p.add_argument("--token-file", default=None, help="file holding the bearer token (default: DAREU_TOKEN, else "
                   "<store>/token, created with a random token)")
    p.add_argument("--max-running", type=int, default=1, help="requests on the cluster at once; the rest wait in "
                   "the service's queue, oldest first (default: %(default)s: one 2-core machine trains one model at a "
                   "time well; raise it on a cluster)")
    p.add_argument("--job-cpus", type=float, default=0.0, help="CPUs the job's driver reserves on the cluster "
                   "(default: %(default)s; the RL learner and actors reserve their own through the placement config)")
    p.epilog = EPILOG


def read_token(store: Path, token_file: str | None, say) -> str:
    if token_file:
        path = Path(token_file)
        if not path.is_file():
            raise DareUError(f"--token-file {token_file} does not exist; write a token into it (e.g. "
                             "`openssl rand -hex 24 > FILE`)")
        token = path.read_text().strip()
    elif os.environ.get("DAREU_TOKEN"):
        token = os.environ["DAREU_TOKEN"].strip()
    else:
        path = store / "token"
        if not path.is_file():
            path.write_text(secrets.token_hex(24) + "\n")
            path.chmod(0o600)
            say(f"wrote a new token to {path}")
        token = path.read_text().strip()
        say(f"token: {path}")
    if len(token) < 16:
        raise DareUError("the token is shorter than 16 characters; use a long random one (`openssl rand -hex 24`)")
    return token


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from dareu.commands.common import console
    from dareu.commands.jobs import DEFAULT_ADDRESS as LOCAL_DASHBOARD  # where `ray start --head` serves jobs
    from dareu.service.app import Service, create_app
    from dareu.service.cluster import Jobs, LocalHead, answers
    from dareu.service.store import Store

    say = console().print
    if args.max_running < 1:
        raise DareUError(f"--max-running {args.max_running}: give 1 or more")
    if not 0 < args.port < 65536:
        raise DareUError(f"--port {args.port}: give a port between 1 and 65535")
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    store_dir = Path(args.store)
    if store_dir.exists() and not store_dir.is_dir():
        raise DareUError(f"--store {store_dir} is a file; give a folder")
    if store_dir.is_dir() and any(store_dir.iterdir()) and not (store_dir / "requests.db").is_file():
        raise DareUError(f"--store {store_dir} is not empty and holds no request store; choose another folder")
    store_dir.mkdir(parents=True, exist_ok=True)
    token = read_token(store_dir, args.token_file, say)
    address = args.ray_address or os.environ.get("RAY_ADDRESS")
    if address is None and not answers(LOCAL_DASHBOARD):
        # its own session: it outlives a killed server (its jobs keep running), and the next server finds it here
        LocalHead.start(dashboard_port=8265, temp=Path(tempfile.mkdtemp(prefix="dareu-ray", dir="/tmp")))
        say(f"started a local Ray head ({LOCAL_DASHBOARD}); it keeps running after the server stops: `ray stop` "
            "ends it")
    jobs = Jobs(address or LOCAL_DASHBOARD, args.job_cpus)
    store = Store(store_dir)
    if not loopback:
        say(f"warning: listening on {args.host}, not loopback: anyone who can reach it and holds the token can "
            "submit jobs", file=sys.stderr)
    say(f"dareu serve: http://{args.host}:{args.port} (docs /docs), store {store.folder}, Ray {jobs.address}, "
        f"{args.max_running} request(s) at a time")
    uvicorn.run(create_app(Service(store, jobs, token, args.max_running)), host=args.host, port=args.port, log_level="warning")
    return 0
