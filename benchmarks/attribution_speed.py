"""Responses scored per second on CPU, for each attributor kind.

    .venv/bin/python benchmarks/attribution_speed.py --attributor A [--attributor A/tfidf-baseline] \
        --world W [--n 2000] [--threads 1] [--out runs/bench/attribution_speed.json]

Inputs are the world's forget and retain questions with their true answers (what the RL scorer
sees). Each attributor is timed at a few batch sizes after a warm-up call; the best of `--repeats`
runs counts (a shared CPU only ever slows a run down). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def inputs(world: str, n: int) -> tuple[list[str], list[str]]:
    from dareu.data import load_world

    data = load_world(world)
    rows = list(data["forget10"]) + list(data["retain90"])
    rows = (rows * (n // len(rows) + 1))[:n]
    return [r["question"] for r in rows], [r["answer"] for r in rows]


def time_scoring(att, prompts: list[str], responses: list[str], batch: int, repeats: int) -> float:
    """Responses per second when the caller sends `batch` responses per score() call."""
    att.score(prompts[:batch], responses[:batch])  # warm-up: lazy imports, allocator
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(prompts), batch):
            att.score(prompts[i: i + batch], responses[i: i + batch])
        best = min(best, time.perf_counter() - start)
    return len(prompts) / best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--attributor", action="append", required=True, help="saved attributor folder (repeatable)")
    p.add_argument("--world", required=True, help="world folder whose QA are scored")
    p.add_argument("--n", type=int, default=2000, help="responses per timing run")
    p.add_argument("--batches", default="1,16,256", help="responses per score() call")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="runs/bench/attribution_speed.json")
    args = p.parse_args(argv)


    from attribution import load_attributor
    from dareu import threads

    threads.pin(args.threads, "--threads", user=True)
    prompts, responses = inputs(args.world, args.n)
    batches = [int(b) for b in args.batches.split(",")]
    rows = []
    for path in args.attributor:
        att = load_attributor(path)
        for batch in batches:
            n = min(args.n, 200) if batch == 1 else args.n  # batch 1 is slow; fewer calls keep it short
            rate = time_scoring(att, prompts[:n], responses[:n], batch, args.repeats)
            rows.append({"attributor": path, "kind": att.kind, "batch": batch, "responses": n,
                         "responses_per_second": rate, "threads": args.threads})
    print(f"{'kind':6} {'batch':>6} {'responses/s':>12}  attributor")
    for r in rows:
        print(f"{r['kind']:6} {r['batch']:>6} {r['responses_per_second']:>12.0f}  {r['attributor']}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    result = {"rows": rows, "cpu_count": os.cpu_count(), "load_average_1min": load, "torch_threads": args.threads}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out} (1-min load average {load})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
