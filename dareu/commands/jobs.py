"""Ray jobs: `dareu submit [--address URL] [--wait] -- dareu unlearn ...`, `dareu status [JOB]`, `dareu logs JOB`.

`submit` sends any dareu command to a Ray cluster as a job (Ray's job submission API, `ray[default]`),
with this checkout as the job's working directory (uploaded, so every node runs the same code) and a
runtime environment; it prints the job id and how to follow it. `--wait` follows the logs to the end
and exits with the job's exit code (0 when it succeeded). Inside the job, `dareu unlearn` joins the
cluster through RAY_ADDRESS, which Ray sets for it.

Paths in the submitted command are read on the cluster, in the job's copy of the working directory:
use absolute paths on storage every node sees (NFS, a mounted bucket) for --world, --out, and the rest.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import shlex
import sys
import time
from pathlib import Path

from dareu.cli import build_parser, command_module, unknown_command
from dareu.errors import DareUError

DEFAULT_ADDRESS = "http://127.0.0.1:8265"  # the head's dashboard, where Ray's job server listens
EXCLUDES = [".git", ".venv", "runs", "**/__pycache__", ".pytest_cache", "*.egg-info", "build", "dist"]
PATH_FLAGS = {"--world", "--out", "--attributor", "--model", "--config"}
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}

EPILOG = """examples:
  dareu submit --address http://HEAD:8265 --wait -- dareu unlearn --world /shared/w --method dareu \\
      --attributor /shared/att --out /shared/runs/dareu
  dareu submit -- dareu unlearn ... --resume      # resubmit a stopped run: it resumes from its last checkpoint
  dareu status raysubmit_XYZ                       # or `dareu status` to list jobs
  dareu logs raysubmit_XYZ --follow
"""


def _address_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default=None,
                   help=f"the cluster's job server, http://HEAD:8265 (default: RAY_API_SERVER_ADDRESS, "
                        f"RAY_ADDRESS, else {DEFAULT_ADDRESS})")


def add_submit_arguments(p: argparse.ArgumentParser) -> None:
    _address_flag(p)
    p.add_argument("--wait", action="store_true", help="follow the job's logs to its end; exit with its exit code")
    p.add_argument("--working-dir", default=None,
                   help="folder uploaded as the job's working directory (default: this DareU checkout)")
    p.add_argument("--no-working-dir", action="store_true",
                   help="upload nothing: run the dareu installed on the cluster (e.g. the docker/ images)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment variable of the job (repeatable), e.g. --env HF_HUB_OFFLINE=1")
    p.add_argument("--num-cpus", type=float, default=None, help="CPUs reserved for the job's driver process")
    p.add_argument("--num-gpus", type=float, default=None, help="GPUs reserved for the job's driver process "
                   "(the learner and actors reserve their own through the placement config)")
    # dest "argv": the CLI keeps the subcommand's name in args.command
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- dareu COMMAND ...", help="-- then the dareu command to run, e.g. "
                   "-- dareu unlearn --world W ...")
    p.epilog = EPILOG


def add_status_arguments(p: argparse.ArgumentParser) -> None:
    _address_flag(p)
    p.add_argument("job", nargs="?", default=None, help="job id (raysubmit_...); without it, list the jobs")


def add_logs_arguments(p: argparse.ArgumentParser) -> None:
    _address_flag(p)
    p.add_argument("job", help="job id (raysubmit_...)")
    p.add_argument("--follow", action="store_true", help="keep printing until the job ends")


def resolve_address(address: str | None) -> str:
    return address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS


@contextlib.contextmanager
def _without(*names: str):
    """Ray's client lets RAY_ADDRESS override an explicit address; we resolve it ourselves instead."""
    saved = {n: os.environ.pop(n) for n in names if n in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def client(address: str | None):
    """A JobSubmissionClient for `address`; an address nobody answers on is one clear line."""
    import logging

    url = resolve_address(address)
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError:
        raise DareUError("dareu submit/status/logs need Ray's jobs API: pip install 'ray[default]'") from None
    logging.getLogger("ray.dashboard.modules.job.sdk").setLevel(logging.WARNING)  # no "WebSocket closed" lines
    try:
        with _without("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"):
            return JobSubmissionClient(url)
    except ConnectionError:
        raise DareUError(f"no Ray cluster answers at {url}; start a head (`ray start --head`, see docker/README.md) "
                         "or pass --address http://HEAD:8265") from None
    except (ValueError, RuntimeError) as err:
        raise DareUError(f"cannot use Ray address {url!r}: {str(err).splitlines()[0]}") from None


def find_job(c, job: str):
    """The job's JobDetails, or None when the job server does not know it."""
    try:
        return c.get_job_info(job)
    except RuntimeError as err:
        if "does not exist" in str(err) or "404" in str(err):
            return None
        raise


def _job_info(c, job: str, url: str):
    try:
        info = find_job(c, job)
    except RuntimeError as err:
        raise DareUError(f"job server at {url}: {str(err).splitlines()[0]}") from None
    if info is None:
        raise DareUError(f"no job {job!r} on {url}; list the jobs with `dareu status --address {url}`")
    return info


def _flag(address: str | None) -> str:
    return f" --address {address}" if address else ""


def _command(args: argparse.Namespace) -> list[str]:
    """The dareu command after `--`, parsed here so a typo fails before anything is uploaded."""
    command = list(args.argv)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise DareUError("nothing to submit: write `dareu submit [--wait] -- dareu unlearn --world W ...`")
    if command[0] != "dareu":
        raise DareUError(f"dareu submit runs dareu commands (`-- dareu unlearn ...`); got {command[0]!r}")
    if len(command) > 1 and command[1] in ("submit", "status", "logs"):
        raise DareUError(f"`dareu {command[1]}` talks to the cluster from your machine; run it here, not as a job")

    unknown = unknown_command(command[1:])
    if unknown:
        raise DareUError(f"the command after --: {unknown.split('error: ', 1)[1]}")
    try:
        inner = build_parser(command[1:]).parse_args(command[1:])
    except SystemExit as stop:
        if not stop.code:  # --help: printed here; nothing worth a job
            raise DareUError("the command after -- asks for help (printed above); nothing was submitted") from None
        raise DareUError(f"the command after -- does not parse (see above): {shlex.join(command)}") from None
    check = getattr(command_module(inner.command), "check_config", None)
    if check is not None:  # a bad method, key or value fails here, not inside the job
        check(inner)
    for flag, value in itertools.pairwise(command):
        if flag in PATH_FLAGS and not os.path.isabs(value):
            print(f"dareu submit: warning: {flag} {value} is relative: on the cluster it resolves inside the job's "
                  "copy of the working directory; use an absolute path on shared storage", file=sys.stderr)
    return command


def entrypoint(command: list[str]) -> str:
    """The job's shell command: the submitter's own environment's bin folder first on PATH, so the job runs the
    same `dareu` even when the submitter's venv is not activated (a node without that folder uses its own)."""
    bin_dir = os.path.dirname(sys.executable)
    return f"PATH={shlex.quote(bin_dir)}:\"$PATH\" {shlex.join(command)}"


def runtime_env(args: argparse.Namespace) -> dict:
    env: dict = {"env_vars": {}}
    for pair in args.env:
        if "=" not in pair:
            raise DareUError(f"--env {pair!r} is not KEY=VALUE")
        key, value = pair.split("=", 1)
        env["env_vars"][key] = value
    if not args.no_working_dir:
        checkout = Path(__file__).resolve().parents[2]
        folder = Path(args.working_dir) if args.working_dir else checkout if (checkout / "pyproject.toml").is_file() \
            else None
        if folder is not None:
            if not folder.is_dir():
                raise DareUError(f"--working-dir {folder} is not a folder")
            env.update(working_dir=str(folder.resolve()), excludes=EXCLUDES)
    return env


def run_submit(args: argparse.Namespace) -> int:
    command = _command(args)
    env = runtime_env(args)
    c = client(args.address)
    url = resolve_address(args.address)
    try:
        job = c.submit_job(entrypoint=entrypoint(command), runtime_env=env, entrypoint_num_cpus=args.num_cpus,
                           entrypoint_num_gpus=args.num_gpus, metadata={"dareu": command[1] if len(command) > 1 else ""})
    except (RuntimeError, ValueError) as err:
        raise DareUError(f"the job server at {url} refused the job: {str(err).splitlines()[0]}") from None
    flag = _flag(args.address)
    print(f"submitted {job} to {url}: {shlex.join(command)}")
    print(f"  follow its logs: dareu logs {job} --follow{flag}")
    print(f"  its status:      dareu status {job}{flag}")
    if not args.wait:
        return 0
    try:
        follow(c, job)
    except KeyboardInterrupt:
        print(f"\nstopped following; {job} keeps running (stop it with `ray job stop {job}{flag}`)", file=sys.stderr)
        return 130
    return report(c, job, url)


def follow(c, job: str) -> None:
    """Print the job's logs as they come, until it ends (Ray's websocket tail)."""
    import asyncio

    async def tail():
        async for chunk in c.tail_job_logs(job):
            print(chunk, end="", flush=True)

    asyncio.run(tail())


def report(c, job: str, url: str) -> int:
    """One line with the job's final status; its exit code (0 = succeeded)."""
    info = _job_info(c, job, url)
    for _ in range(30):  # the status can trail the end of the log stream by a moment
        if str(info.status) in TERMINAL:
            break
        time.sleep(1)
        info = _job_info(c, job, url)
    status = str(info.status)
    code = 0 if status == "SUCCEEDED" else (info.driver_exit_code or 1)
    message = f" ({info.message})" if info.message and status != "SUCCEEDED" else ""
    print(f"job {job} {status}{message}", file=sys.stdout if code == 0 else sys.stderr)
    return code


def run_status(args: argparse.Namespace) -> int:
    c = client(args.address)
    url = resolve_address(args.address)
    if args.job is None:
        jobs = sorted(c.list_jobs(), key=lambda j: j.start_time or 0)
        if not jobs:
            print(f"no jobs on {url}")
        for j in jobs:
            print(f"{j.submission_id or j.job_id}  {j.status!s:9}  {_when(j.start_time)}  {j.entrypoint}")
        return 0
    info = _job_info(c, args.job, url)
    print(f"{args.job}: {info.status}")
    print(f"  command:  {info.entrypoint}")
    print(f"  started:  {_when(info.start_time)}" + (f"   ended: {_when(info.end_time)}" if info.end_time else ""))
    if info.driver_exit_code is not None:
        print(f"  exit code: {info.driver_exit_code}")
    if info.message:
        print(f"  message:  {info.message}")
    return 0


def run_logs(args: argparse.Namespace) -> int:
    c = client(args.address)
    url = resolve_address(args.address)
    _job_info(c, args.job, url)  # an unknown job is one clear line
    if args.follow:
        try:
            follow(c, args.job)
        except KeyboardInterrupt:
            return 130
    else:
        print(c.get_job_logs(args.job), end="")
    return 0


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else "-"
