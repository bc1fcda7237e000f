"""Seconds per RL step (GRPO, RLOO, PPO) against a loss-based step (NPO + retain NLL) at the same batch,
and the share of each RL step spent in rollout, scoring and update. In-process, no Ray, CPU.

    python benchmarks/rl_speed.py --world runs/world --attributor runs/attributor [--steps 10] [--out rl_speed.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


class Timer:
    def __init__(self):
        self.total = 0.0

    def wrap(self, fn):
        def timed(*a, **kw):
            start = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                self.total += time.perf_counter() - start

        return timed


def rl_step_times(learner: str, world: Path, attributor: str, steps: int) -> dict:
    from attribution import load_attributor
    from dareu.data import load_world
    from dareu.modeling import load_model, load_tokenizer
    from dareu.unlearn import build_unlearn_data
    from rl.launch import load_dareu_config
    from rl.learners import AttributionReward, build_learner

    cfg = load_dareu_config([f"learner={learner}", f"max_steps={steps}", "eval_every=0", "save_steps=100000"])
    data = load_world(world)
    rows = list(data["forget10"])
    tok = load_tokenizer(str(world / "models" / "target"))
    model = load_model(str(world / "models" / "target"), dtype=torch.float32)
    att = load_attributor(attributor)
    scoring, rollout = Timer(), Timer()
    reward = AttributionReward(scoring.wrap(att.score), att.owners, sorted({r["owner"] for r in rows}), cfg)
    reward.use_plausibility(model, tok, rows)
    unlearn_data = build_unlearn_data(data, tok, "forget10", templates="idk")
    start = time.perf_counter()
    if learner == "ppo":
        import tempfile

        import rl.ppo_loop as loop
        from rl.curves import CurveTracker

        loop.sample = rollout.wrap(loop.sample)
        tmp = Path(tempfile.mkdtemp())
        loop.run_ppo(cfg, model, tok, rows, reward, unlearn_data, CurveTracker(tmp, lambda m: {}, 0.95, 0),
                     tmp / "ck", None)
    else:
        import tempfile

        trainer = build_learner(cfg, model, tok, reward, rows, unlearn_data, tempfile.mkdtemp())
        trainer._generate = rollout.wrap(trainer._generate)  # TRL's generation entry point
        trainer.train()
    total = time.perf_counter() - start
    per_step = total / steps
    return {"learner": learner, "seconds_per_step": per_step, "rollout_share": rollout.total / total,
            "scoring_share": scoring.total / total, "update_share": 1 - (rollout.total + scoring.total) / total,
            "completions_per_step": cfg.batch_size}


def loss_step_time(world: Path, steps: int, batch_size: int) -> dict:
    from dareu.data import load_world
    from dareu.modeling import load_model, load_tokenizer
    from dareu.objectives import OBJECTIVES, retain_loss
    from dareu.unlearn import build_unlearn_data, make_reference

    data = load_world(world)
    tok = load_tokenizer(str(world / "models" / "target"))
    model = load_model(str(world / "models" / "target"), dtype=torch.float32)
    ref = make_reference(model)
    npo = OBJECTIVES.get("npo")(beta=0.1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batches = build_unlearn_data(data, tok, "forget10", templates="idk").batches(batch_size, seed=0)
    start = time.perf_counter()
    for _ in range(steps):
        b = next(batches)
        loss = npo.forget_loss(model, b["forget"], ref=ref)[0] + retain_loss(model, b["retain"], kind="nll")[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {"learner": "npo+retain (loss-based)", "seconds_per_step": (time.perf_counter() - start) / steps,
            "rollout_share": 0.0, "scoring_share": 0.0, "update_share": 1.0, "completions_per_step": batch_size}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", default="runs/world")
    p.add_argument("--attributor", default="runs/demo/attributor")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--learners", default="grpo,rloo,ppo")
    p.add_argument("--out", default="rl_speed.json")
    args = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = [rl_step_times(name, Path(args.world), args.attributor, args.steps) for name in args.learners.split(",")]
    rows.append(loss_step_time(Path(args.world), args.steps, rows[0]["completions_per_step"]))
    print(f"{'learner':28s} {'s/step':>8s} {'rollout':>8s} {'scoring':>8s} {'update':>8s}")
    for r in rows:
        print(f"{r['learner']:28s} {r['seconds_per_step']:8.3f} {r['rollout_share']:8.0%} {r['scoring_share']:8.0%} "
              f"{r['update_share']:8.0%}")
    Path(args.out).write_text(json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
