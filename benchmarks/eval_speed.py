"""Seconds for a full forget10 evaluation on CPU (goal: <= 60 s on 2 cores), for the fast in-training mode,
and for the one-off retain reference logs; plus the figures the evaluation must show on the world:
retain FQ against itself, the second seed's (noise ceiling), the target's FQ, fact leakage and utility.

    .venv/bin/python benchmarks/eval_speed.py --world runs/world [--threads 1] [--out runs/bench/eval_speed.json]

The world is only read: reference logs go to --cache (a temporary folder by default).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROWS = ["forget_quality", "model_utility", "forget_truth_ratio", "forget_rouge", "retain_rouge", "fact_leakage",
        "fact_leakage_sampled", "fact_leakage_paraphrased", "privleak", "tug_of_war"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", default="runs/world", help="world folder from `dareu prepare` (default: %(default)s)")
    p.add_argument("--split", default="forget10")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, one per core)")
    p.add_argument("--cache", help="folder for the reference logs (default: a fresh temporary folder = cold start)")
    p.add_argument("--out", default="runs/bench/eval_speed.json", help="JSON to write (default: %(default)s)")
    args = p.parse_args()

    import torch
    from rich.console import Console
    from rich.table import Table

    from dareu.data import load_world
    from dareu.evaluation import EvalConfig, cached_logs, evaluate_model
    from dareu.evaluation.runner import load_for_eval

    if args.threads:
        from dareu import threads

        threads.pin(args.threads, "--threads", user=True)
    console = Console(width=120)
    world, split = Path(args.world), args.split
    models = {name: world / "models" / name for name in ("target", f"retain-{split}", f"retain-{split}-seed2")}
    missing = [str(m) for m in models.values() if not m.is_dir()]
    if missing:
        console.print(f"missing models: {', '.join(missing)}; build the world with `dareu prepare --out {world}`")
        return 2
    data = load_world(world)
    cfg = EvalConfig(progress=False)
    cache = Path(args.cache or tempfile.mkdtemp(prefix="dareu-eval-cache-"))
    seconds: dict[str, float] = {}

    t = time.time()
    retain_logs = cached_logs(str(models[f"retain-{split}"]), data, split, cfg, cache / f"retain-{split}",
                              console.print)
    seconds["reference retain (cold, incl. load)"] = time.time() - t
    t = time.time()
    seed2_logs = cached_logs(str(models[f"retain-{split}-seed2"]), data, split, cfg, cache / f"retain-{split}-seed2",
                             console.print)
    seconds["reference seed2 (cold, incl. load)"] = time.time() - t

    results, kw = {}, {"retain_logs": retain_logs, "seed2_logs": seed2_logs}
    for name, path in models.items():
        model, tok = load_for_eval(str(path))
        t = time.time()
        results[name] = evaluate_model(model, tok, data, split, cfg=cfg, **kw)
        seconds[f"full eval {name}"] = time.time() - t
        if name == "target":
            t = time.time()
            fast = EvalConfig(fast=True, progress=False)
            results["target (fast)"] = evaluate_model(model, tok, data, split, cfg=fast, **kw)
            seconds["fast eval target"] = time.time() - t

    table = Table(title=f"evaluation on {world} / {split} ({torch.get_num_threads()} torch threads)")
    table.add_column("metric")
    for name in results:
        table.add_column(name, justify="right")
    for row in ROWS:
        table.add_row(row, *[_fmt(r.get(row, {}).get("agg_value")) for r in results.values()])
    table.add_row("fact_leakage, retain ref.", *[_fmt(r.get("fact_leakage", {}).get("retain_reference"))
                                                 for r in results.values()])
    table.add_row("noise_ceiling", *[_fmt(r.get("noise_ceiling", {}).get("agg_value")) for r in results.values()])
    console.print(table)
    timing = Table(title="seconds (CPU)")
    timing.add_column("what")
    timing.add_column("seconds", justify="right")
    for what, s in seconds.items():
        timing.add_row(what, f"{s:.1f}")
    console.print(timing)

    target, retain = results["target"], results[f"retain-{split}"]
    mu_ratio = target["model_utility"]["agg_value"] / retain["model_utility"]["agg_value"]
    checks = {
        "retain FQ against itself == 1": retain["forget_quality"]["agg_value"] == 1.0,
        "seed2 FQ (noise ceiling) > 0.1": results[f"retain-{split}-seed2"]["forget_quality"]["agg_value"] > 0.1,
        "target FQ < 0.01": target["forget_quality"]["agg_value"] < 0.01,
        "target fact leakage > 0.9 and > retain's": target["fact_leakage"]["agg_value"] > max(
            0.9, target["fact_leakage"]["retain_reference"]),
        "target MU within 5% of retain's": abs(mu_ratio - 1) <= 0.05,
        "full eval <= 60 s": seconds["full eval target"] <= 60,
    }
    for what, ok in checks.items():
        console.print(f"  {'[green]ok[/green]' if ok else '[red]FAIL[/red]'} {what}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = {name: {k: r[k]["agg_value"] for k in ROWS + ["noise_ceiling"] if k in r} for name, r in results.items()}
    out.write_text(json.dumps({"world": str(world), "split": split, "threads": torch.get_num_threads(),
                               "seconds": seconds, "figures": summary, "model_utility_ratio": mu_ratio,
                               "checks": checks}, indent=2))
    console.print(f"wrote {out}")
    return 0


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.2e}" if v != 0 and abs(v) < 1e-3 else f"{v:.3f}"


if __name__ == "__main__":
    sys.exit(main())
