"""The tiny world's `dareu prepare` idle, beside one busy process with DareU's own thread choice, and beside it
with two threads forced (`--threads 2`, what torch picks by itself on 2 cores). The goal: beside a busy
process within 1.3x of idle, with no setting by the user.

    .venv/bin/python benchmarks/threads_under_load.py [--out runs/bench/threads_under_load.json]

Each build goes to a fresh temporary folder; the busy process is a Python loop, killed afterwards.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DAREU = [sys.executable, "-m", "dareu.cli"]


def build(out: Path, busy: bool, extra: list[str]) -> float:
    loop = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        start = time.time()
        subprocess.run([*DAREU, "prepare", "--config", str(REPO / "configs" / "prepare" / "tiny.yaml"), "--out",
                        str(out), *extra], check=True, capture_output=True)
        return time.time() - start
    finally:
        if loop is not None:
            loop.kill()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench/threads_under_load.json", help="JSON to write (default: %(default)s)")
    args = p.parse_args()
    cases = {"idle": (False, []), "busy, DareU's choice": (True, []), "busy, --threads 2": (True, ["--threads", "2"])}
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, (busy, extra)) in enumerate(cases.items()):
            seconds[name] = build(Path(tmp) / f"w{i}", busy, extra)
    idle = seconds["idle"]
    print(f"{'case':<24} {'seconds':>8} {'x idle':>7}")
    for name, s in seconds.items():
        print(f"{name:<24} {s:>8.1f} {s / idle:>7.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"seconds": seconds, "ratio_to_idle": {k: v / idle for k, v in seconds.items()},
                                          "goal": "busy, DareU's choice <= 1.3x idle"}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
