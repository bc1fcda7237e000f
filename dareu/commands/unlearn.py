"""`dareu unlearn --world W --method NAME --split forget10 --out R`: loss-based unlearning (or RL with --method dareu)."""

from __future__ import annotations

import argparse
from pathlib import Path

from dareu.commands.common import console
from dareu.errors import DareUError

EPILOG = """method parameters are keys params.<name> (defaults and their sources: configs/methods/<method>.yaml);
an unknown method name lists the registered ones.
examples:
  dareu unlearn --world W --method npo --split forget10 --out runs/npo
  dareu unlearn --world W --method flat --out runs/flat params.divergence=kl train.learning_rate=1e-4
  dareu unlearn --world W --method npo --out runs/npo --resume      # continue a killed run
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from dareu.config import describe
    from dareu.unlearn.config import DataSettings, LoraSettings, TrainSettings

    p.add_argument("--world", required=True, help="world folder made by `dareu prepare`")
    p.add_argument("--method", required=True, help="unlearning objective (ga, npo, flat, satimp, ...) or dareu (RL)")
    p.add_argument("--split", default="forget10", help="forget split (default: %(default)s)")
    p.add_argument("--model", default=None, help="model, model folder or run folder to unlearn (default: W/models/target)")
    p.add_argument("--max-steps", type=int, default=None, help="optimizer steps (overrides train.max_steps)")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters (lora.enabled=true); the saved model is merged")
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--config", default=None, help="method YAML to use instead of configs/methods/<method>.yaml")
    p.add_argument("--attributor", default=None, help="attribution model folder (--method dareu only)")
    p.add_argument("--learner", default=None, help="RL learner (--method dareu only)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. params.beta=0.2")
    rows = [f"  {section}.{key} = {default!r}\n      {help_text}"
            for section, cls in (("train", TrainSettings), ("lora", LoraSettings), ("data", DataSettings))
            for key, default, help_text in describe(cls)]
    p.epilog = EPILOG + "config keys (key=value; configs/methods/<method>.yaml overrides these defaults):\n" + \
        "\n".join(rows)


def cli_flags(args: argparse.Namespace) -> dict:
    """The config values the flags set (they override the method YAML; key=value overrides them)."""
    flags: dict = {"world": args.world, "split": args.split,
                   "model": args.model or str(Path(args.world) / "models" / "target")}
    if args.max_steps is not None:
        flags["train"] = {"max_steps": args.max_steps}
    if args.lora:
        flags["lora"] = {"enabled": True}
    return flags


def run(args: argparse.Namespace) -> int:
    from dareu.modeling import set_threads

    set_threads()
    if args.method == "dareu":
        from rl.launch import run_unlearn as run_rl

        return run_rl(args)
    if args.overwrite and args.resume:
        raise DareUError("--overwrite and --resume contradict each other; pass one")
    if args.attributor or args.learner:
        raise DareUError("--attributor and --learner apply to --method dareu only; loss-based methods take none")
    from dareu.unlearn import load_run_config, run_unlearn

    cfg = load_run_config(args.method, args.overrides, args.config, cli_flags(args))
    out = console()
    summary = run_unlearn(cfg, args.out, overwrite=args.overwrite, resume=args.resume, console=out)
    before, after = summary.get("before", {}), summary.get("after", {})
    for key in sorted(set(before) | set(after)):
        out.print(f"  {key}: {before.get(key, float('nan')):.4f} -> {after.get(key, float('nan')):.4f}")
    out.print(f"wrote {Path(args.out) / 'model'} ({summary.get('steps')} steps, {summary.get('seconds')}s)")
    return 0
