"""Run folders: the one guard every command passes before it writes, and the status file that tells done from
crashed.

Every folder a command writes carries `dareu-run.json` ({"kind": ...}). The guard, `claim_run_dir`, lets a command
write into a folder only when it is missing, empty, or a DareU folder of the same kind: `--overwrite` replaces
only such a folder (never one DareU did not make), and `--resume` only continues one. Folders made before the
marker existed are recognised by the files each kind writes.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from dareu.errors import DareUError

MARKER = "dareu-run.json"
# kind -> the file a folder of that kind held before the marker existed (first match wins)
LEGACY_SIGNS: dict[str, tuple[str, ...]] = {
    "demo": ("demo_config.json",),
    "world": ("prepare_config.json",),
    "attributor": ("attributor.json",),
    "compare": ("report.md",),
    "geffect": ("geffect.json",),
    "unlearn": ("config.yaml", "status.json"),
    "eval": ("eval.json",),
    "dataset": ("dataset_dict.json",),
}


def run_kind(folder: str | Path) -> str | None:
    """The kind of DareU folder `folder` is (unlearn, world, attributor, eval, compare, demo, geffect, dataset),
    or None when DareU did not make it."""
    folder = Path(folder)
    marker = folder / MARKER
    if marker.is_file():
        try:
            return str(json.loads(marker.read_text())["kind"])
        except (ValueError, KeyError, TypeError):
            return None
    for kind, signs in LEGACY_SIGNS.items():
        if all((folder / s).is_file() for s in signs):
            return kind
    return None


def _is_empty(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


def claim_run_dir(out: str | Path, kind: str, *, overwrite: bool = False, resume: bool = False,
                  reuse: bool = False) -> tuple[Path, bool]:
    """Check (before any work) that a `kind` command may write `out`, and mark it. Returns (folder, existed):
    `existed` is True when `out` already holds a run of this kind that the caller continues.

    - missing or empty: created and marked;
    - a DareU folder of this kind: `overwrite` deletes and recreates it, `resume` (or `reuse`, for commands whose
      stages are cached, like prepare and compare) continues it, neither is an error;
    - anything else (a file, a folder DareU did not make, a run of another kind): refused, never touched."""
    out = Path(out)
    flag = "--out"
    if overwrite and resume:
        raise DareUError("--overwrite and --resume contradict each other; pass one")
    if out.exists() and not out.is_dir():
        raise DareUError(f"{flag} {out} is a file, not a folder; choose another {flag}")
    if _is_empty(out):
        if resume:
            raise DareUError(f"--resume: {out} holds no run to continue; drop --resume to start one there")
        _mark(out, kind)
        return out, False
    found = run_kind(out)
    if found is None:
        raise DareUError(f"{flag} {out} is not empty and was not made by DareU; DareU never writes into or deletes "
                         f"such a folder, choose another {flag}")
    if found != kind:
        raise DareUError(f"{flag} {out} holds a DareU {found} folder, not a {kind} one; choose another {flag}")
    if overwrite:
        shutil.rmtree(out)
        _mark(out, kind)
        return out, False
    if resume or reuse:
        if not (out / MARKER).is_file():
            _mark(out, kind)
        return out, True
    raise DareUError(f"{flag} {out} already holds a {kind} run; pass --resume to continue it, --overwrite to "
                     f"replace it, or choose another {flag}")


def _mark(out: Path, kind: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / MARKER, {"kind": kind, "created": time.time()})


def changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts (what a resumed or reused run changed)."""
    keys = set(old) | set(new)
    out = []
    for k in sorted(keys, key=str):
        if isinstance(old.get(k), dict) and isinstance(new.get(k), dict):
            out += changed_keys(old[k], new[k], f"{prefix}{k}.")
        elif old.get(k) != new.get(k):
            out.append(f"{prefix}{k}")
    return out


def check_same_config(saved: dict, asked: dict, where: Path, what: str = "--resume") -> None:
    """A resumed run continues with the config it was started with; a changed setting is refused, named."""
    diff = changed_keys(saved, asked)
    if diff:
        shown = ", ".join(f"{k} ({_get(saved, k)!r} -> {_get(asked, k)!r})" for k in diff[:4])
        more = f" and {len(diff) - 4} more" if len(diff) > 4 else ""
        raise DareUError(f"{what}: {where} was started with other settings: {shown}{more}; resume with the same "
                         "method, flags and overrides, or start a new run with another --out")


def _get(d: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def write_json(path: str | Path, data: Any) -> None:
    """Write atomically, so a killed process never leaves half a file."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float))
    tmp.replace(path)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def set_status(run_dir: str | Path, state: str, **extra: Any) -> None:
    """status.json: running / done / failed, so a crash is never mistaken for success."""
    write_json(Path(run_dir) / "status.json", {"state": state, "time": time.time(), **extra})


@contextlib.contextmanager
def running(run_dir: str | Path):
    """status.json says "running" while the block runs and "failed" (with the reason) if it raises; the caller
    marks it done with what it produced."""
    set_status(run_dir, "running")
    try:
        yield
    except BaseException as err:
        set_status(run_dir, "failed", reason=f"{type(err).__name__}: {str(err)[:300]}")
        raise


def get_status(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "status.json"
    return read_json(path) if path.exists() else {"state": "missing"}
