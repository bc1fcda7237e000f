"""How many CPU threads torch uses: chosen by DareU unless the user says.

On a shared CPU, more threads than free cores make OpenMP threads spin against each other: a tiny
world's `prepare` took 131 s beside one busy process with two threads and 61 s with one. And a
~1M-parameter model gains nothing from a second thread at all; a 135M one does, when a core is free.

The choice, first that applies: `--threads N` (every command) or a config's `threads` key -> the
`DAREU_THREADS` environment variable -> `OMP_NUM_THREADS` (also how Ray gives an actor its CPUs) -> one
thread for a model under SMALL_MODEL parameters -> the cores other processes leave free. Every model DareU
loads re-checks it (`fit`), and a changed choice is said once on stderr."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch

SMALL_MODEL = 20_000_000  # parameters; below this one thread is as fast as two (and much faster under load)


@dataclass(frozen=True)
class Choice:
    threads: int
    why: str


_pinned: Choice | None = None
_said: Choice | None = None


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def busy_elsewhere(window: float = 0.2) -> float:
    """Cores other processes kept busy over the last `window` seconds (this one's own use left out)."""
    import time

    import psutil

    me = psutil.Process()
    psutil.cpu_percent(None)
    me.cpu_percent(None)
    time.sleep(window)
    total = psutil.cpu_percent(None) / 100 * (os.cpu_count() or 1)
    return max(0.0, total - me.cpu_percent(None) / 100)


def from_user() -> Choice | None:
    """The user's or the launcher's choice, if any (a pin, DAREU_THREADS, OMP_NUM_THREADS)."""
    if _pinned is not None:
        return _pinned
    for var in ("DAREU_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "")
        if value.strip().isdigit() and int(value) > 0:
            return Choice(int(value), var)
    return None


def choose(n_params: int | None) -> Choice:
    """The thread count for a model of `n_params` parameters (None: not known yet)."""
    told = from_user()
    if told is not None:
        return told
    if n_params is not None and n_params < SMALL_MODEL:
        return Choice(1, f"a {n_params / 1e6:.1f}M-parameter model gains nothing from a second thread")
    cores = usable_cores()
    free = max(1, min(cores, round(cores - busy_elsewhere())))
    size = f"a {n_params / 1e6:.0f}M-parameter model" if n_params else "no model yet"
    return Choice(free, f"{size}; {free} of {cores} cores free of other processes")


def apply(choice: Choice) -> Choice:
    global _said
    torch.set_num_threads(choice.threads)
    if choice != _said:
        print(f"[dareu] torch threads: {choice.threads} ({choice.why}; --threads N or DAREU_THREADS=N to set)",
              file=sys.stderr)
        _said = choice
    return choice


def pin(n: int, why: str, user: bool = False) -> Choice:
    """Fix the thread count for the rest of this process: `user=True` for --threads; a config key (prepare's
    `threads`, a Ray actor's CPUs) yields to the user's --threads or DAREU_THREADS."""
    global _pinned
    told = from_user()
    if not user and told is not None and told.why != "OMP_NUM_THREADS":
        return apply(told)
    _pinned = Choice(n, why)
    return apply(_pinned)


def fit(model) -> Choice:
    """Choose for a loaded model (what `load_model` calls); GPU runs leave torch's default."""
    if next(model.parameters()).is_cuda:
        return Choice(torch.get_num_threads(), "GPU")
    return apply(choose(sum(p.numel() for p in model.parameters())))
