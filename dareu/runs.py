"""Run folders: never overwrite a user's run unless asked; a status file tells done from crashed."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from dareu.errors import DareUError


def claim_out_dir(out: str | Path, overwrite: bool, resume: bool = False) -> Path:
    """Check (before any work) that `out` may be written. Existing non-empty folders need --overwrite,
    except when resuming a run that is not done."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DareUError(f"--out {out} is a file, not a folder; choose another --out")
    if out.exists() and any(out.iterdir()):
        if overwrite:
            shutil.rmtree(out)
        elif resume:
            return out
        else:
            raise DareUError(f"--out {out} already exists and is not empty; pass --overwrite to replace it "
                             "(or choose another --out)")
    out.mkdir(parents=True, exist_ok=True)
    return out


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


def get_status(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "status.json"
    return read_json(path) if path.exists() else {"state": "missing"}
