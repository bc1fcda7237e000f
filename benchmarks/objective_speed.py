"""Seconds per optimizer step of every registered objective at the same batch, on CPU.

One step = the objective's forward passes (forget, retain, template and reference ones, as the method
needs), backward, and an AdamW update: what `dareu unlearn` pays per step beyond the Trainer's own
bookkeeping, which is the same for every method.

    .venv/bin/python benchmarks/objective_speed.py --world runs/world [--batch-size 8] [--steps 10]
        [--threads 1] [--out runs/bench/objective_speed.json]

The world is only read.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", default="runs/world", help="world folder from `dareu prepare` (default: %(default)s)")
    p.add_argument("--split", default="forget10")
    p.add_argument("--model", help="model to time (default: WORLD/models/target)")
    p.add_argument("--batch-size", type=int, default=8, help="forget QA per step, each with one retain QA")
    p.add_argument("--steps", type=int, default=10, help="timed steps per method (after --warmup untimed ones)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", default="runs/bench/objective_speed.json", help="JSON to write (default: %(default)s)")
    args = p.parse_args()

    import copy

    import torch
    from rich.console import Console
    from rich.table import Table

    from dareu.data import load_world
    from dareu.modeling import load_model, load_tokenizer
    from dareu.objectives import OBJECTIVES
    from dareu.unlearn import build_unlearn_data, make_reference

    if args.threads:
        from dareu import threads

        threads.pin(args.threads, "--threads", user=True)
    model_path = args.model or str(Path(args.world) / "models" / "target")
    tok = load_tokenizer(model_path)
    base = load_model(model_path, dtype=torch.float32)
    data = build_unlearn_data(load_world(args.world), tok, args.split, "auto", "idk")
    batches = data.batches(args.batch_size, seed=0)
    fixed = [next(batches) for _ in range(args.warmup + args.steps)]  # the same batches for every method

    rows = []
    for name in OBJECTIVES.names():
        obj = OBJECTIVES.get(name)()
        model = copy.deepcopy(base).train()
        ref = make_reference(model) if obj.needs_reference else None
        opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-5)
        calls = []  # top-level forward passes of the model and of a frozen reference copy, counted once
        hooks = [m.register_forward_pre_hook(lambda *a, calls=calls: calls.append(1))
                 for m in {id(model): model, id(getattr(ref, "module", model)): getattr(ref, "module", model)}.values()]
        times = []
        for i, batch in enumerate(fixed):
            if i == 1:
                for h in hooks:
                    h.remove()
            start = time.perf_counter()
            loss, _ = obj.loss(model, batch, ref)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if i >= args.warmup:
                times.append(time.perf_counter() - start)
        forwards = len(calls)
        rows.append({"method": name, "seconds_per_step": statistics.median(times), "min": min(times),
                     "max": max(times), "needs_reference": obj.needs_reference, "needs_retain": obj.needs_retain,
                     "needs_templates": obj.needs_templates, "forward_passes": int(forwards)})
        del model, ref, opt

    ga = next(r["seconds_per_step"] for r in rows if r["method"] == "ga")
    table = Table(title=f"objective speed: {Path(model_path).name}, batch {args.batch_size} forget "
                        f"(+{args.batch_size} retain), {torch.get_num_threads()} thread(s), median of {args.steps} steps")
    for col in ("method", "s/step", "x GA", "forward passes", "reference", "retain", "templates"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in sorted(rows, key=lambda r: r["seconds_per_step"]):
        table.add_row(r["method"], f"{r['seconds_per_step']:.3f}", f"{r['seconds_per_step'] / ga:.2f}",
                      str(r["forward_passes"]), "yes" if r["needs_reference"] else "", "yes" if r["needs_retain"] else "",
                      "yes" if r["needs_templates"] else "")
    Console(width=120).print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": model_path, "batch_size": args.batch_size, "steps": args.steps,
                               "threads": torch.get_num_threads(), "device": "cpu", "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
