"""Seconds per RL step (GRPO, RLOO, PPO) against a loss-based step (NPO + retain NLL) at the same batch, and
DareU's GRPO step against TRL's own GRPOTrainer step (same reward and settings, no auxiliary terms), with the
share of each RL step spent in rollout, scoring and update. In-process, no Ray, CPU; every row runs `--warmup`
untimed steps first (first-call allocations), then `--steps` timed ones, so the ratios are steady-state ones.

    python benchmarks/rl_speed.py --world runs/world --attributor runs/attributor [--steps 30] [--out rl_speed.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
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
    """One timed run of `learner` (grpo, rloo, ppo; trl-grpo: TRL's own GRPOTrainer with the same reward and
    settings but none of DareU's auxiliary terms) from the world's target, setup excluded."""
    from attribution import load_attributor
    from dareu.data import load_world
    from dareu.modeling import load_model, load_tokenizer
    from rl.launch import load_dareu_config
    from rl.learners import AttributionReward, _trl_kwargs, build_learner, forget_dataset
    from rl.train_loop import aux_data

    plain = learner == "trl-grpo"
    cfg = load_dareu_config([f"learner={'grpo' if plain else learner}", f"max_steps={steps}", "eval_every=0",
                             "save_steps=100000"], flags={"world": str(world.resolve())})
    data = load_world(world)
    rows = list(data["forget10"])
    tok = load_tokenizer(str(world / "models" / "target"))
    model = load_model(str(world / "models" / "target"), dtype=torch.float32)
    att = load_attributor(attributor)
    scoring, rollout = Timer(), Timer()
    reward = AttributionReward(scoring.wrap(att.score), att.owners, sorted({r["owner"] for r in rows}), cfg)
    reward.use_plausibility(model, tok, rows)
    unlearn_data = aux_data(cfg, model, tok, data, "forget10")  # as the product builds them
    tmp = Path(tempfile.mkdtemp())
    if learner == "ppo":
        import rl.ppo_loop as loop
        from rl.curves import CurveTracker

        loop.sample = rollout.wrap(loop.sample)
        start = time.perf_counter()
        loop.run_ppo(cfg, model, tok, rows, reward, unlearn_data, CurveTracker(tmp, lambda m: {}, 0.95, 0),
                     tmp / "ck", None)
    else:
        if plain:
            from trl import GRPOConfig, GRPOTrainer

            trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=GRPOConfig(**_trl_kwargs(cfg, str(tmp))),
                                  train_dataset=forget_dataset(rows, tok), processing_class=tok)
        else:
            trainer = build_learner(cfg, model, tok, reward, rows, unlearn_data, str(tmp))
        trainer._generate = rollout.wrap(trainer._generate)  # TRL's generation entry point
        start = time.perf_counter()
        trainer.train()
    total = time.perf_counter() - start
    return {"learner": learner, "seconds_per_step": total / steps, "rollout_share": rollout.total / total,
            "scoring_share": scoring.total / total, "update_share": 1 - (rollout.total + scoring.total) / total,
            "completions_per_step": cfg.batch_size}


def loss_step_time(world: Path, steps: int, batch_size: int, warmup: int = 0) -> dict:
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
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
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
    p.add_argument("--steps", type=int, default=30, help="timed steps per row")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps run before each row")
    p.add_argument("--learners", default="grpo,trl-grpo,rloo,ppo")
    p.add_argument("--threads", type=int, default=1, help="torch threads (one is the fastest for the world's models)")
    p.add_argument("--out", default="rl_speed.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    world = Path(args.world)
    rows = []
    for name in args.learners.split(","):
        if args.warmup:
            rl_step_times(name, world, args.attributor, args.warmup)
        rows.append(rl_step_times(name, world, args.attributor, args.steps))
    loss = loss_step_time(world, args.steps, rows[0]["completions_per_step"], args.warmup)
    rows.append(loss)
    for r in rows:
        r["x_loss_step"] = r["seconds_per_step"] / loss["seconds_per_step"]
    print(f"{'learner':28s} {'s/step':>8s} {'x loss':>7s} {'rollout':>8s} {'scoring':>8s} {'update':>8s}")
    for r in rows:
        print(f"{r['learner']:28s} {r['seconds_per_step']:8.3f} {r['x_loss_step']:7.2f} {r['rollout_share']:8.0%} "
              f"{r['scoring_share']:8.0%} {r['update_share']:8.0%}")
    by = {r["learner"]: r["seconds_per_step"] for r in rows}
    result = {"threads": args.threads, "steps": args.steps, "warmup": args.warmup, "rows": rows}
    if "grpo" in by and "trl-grpo" in by:
        result["grpo_x_trl_grpo"] = by["grpo"] / by["trl-grpo"]
        print(f"DareU GRPO step / TRL GRPOTrainer step: {result['grpo_x_trl_grpo']:.2f}")
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
