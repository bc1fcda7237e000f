"""`dareu unlearn --world W --method NAME --split forget10 --out R`: loss-based unlearning (or RL with --method dareu)."""

from __future__ import annotations

import argparse
from pathlib import Path

from dareu.commands.common import console, method_config, train
from dareu.config import describe
from dareu.errors import DareUError
from rl.config import DareUConfig

EPILOG = """method parameters are keys params.<name> (defaults and their sources: configs/methods/<method>.yaml);
an unknown method name lists the registered ones.
examples:
  dareu unlearn --world W --method npo --split forget10 --out runs/npo
  dareu unlearn --world W --method flat --out runs/flat params.divergence=kl train.learning_rate=1e-4
  dareu unlearn --world W --method npo --out runs/npo --resume      # continue a killed run
  dareu unlearn --world W --method dareu --attributor A --out runs/dareu max_steps=100
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from dareu.unlearn.config import DataSettings, LoraSettings, TrainSettings

    p.add_argument("--world", required=True, help="world folder made by `dareu prepare`")
    p.add_argument("--method", required=True, help="unlearning objective (ga, npo, flat, satimp, ...) or dareu (RL)")
    p.add_argument("--split", default="forget10", help="forget split (default: %(default)s)")
    p.add_argument("--model", default=None, help="model, model folder or run folder to unlearn (default: W/models/target)")
    p.add_argument("--max-steps", type=int, default=None, help="optimizer steps, >= 1 (overrides train.max_steps, "
                                                               "or max_steps for dareu)")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters (lora.enabled=true); the saved model is merged")
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder (only a DareU run folder)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--config", default=None, help="YAML file layered over configs/methods/<method>.yaml "
                                                  "(its keys override the shipped defaults)")
    p.add_argument("--attributor", default=None, help="attribution model folder (--method dareu only)")
    p.add_argument("--learner", default=None, help="RL learner: grpo, rloo or ppo (--method dareu only)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. params.beta=0.2")
    rows = [f"  {section}.{key} = {default!r}\n      {help_text}"
            for section, cls in (("train", TrainSettings), ("lora", LoraSettings), ("data", DataSettings))
            for key, default, help_text in describe(cls)]
    skip = {"method", "world", "split", "model", "attributor"}  # set by the flags above
    rl_rows = [f"  {key} = {default!r}\n      {help_text}" for key, default, help_text in describe(DareUConfig)
               if key not in skip]
    p.epilog = (EPILOG + "loss-based config keys (key=value; configs/methods/<method>.yaml overrides these "
                "defaults; params.* are the method's own):\n" + "\n".join(rows) +
                "\n\n--method dareu config keys (key=value; defaults from configs/methods/dareu.yaml):\n" +
                "\n".join(rl_rows))


def cli_flags(args: argparse.Namespace) -> dict:
    """The config values the flags set (they override the method YAML; key=value overrides them)."""
    if args.max_steps is not None and args.max_steps < 1:
        raise DareUError(f"--max-steps {args.max_steps}: give a number of steps >= 1")
    model = args.model or str(Path(args.world) / "models" / "target")
    if args.method == "dareu":
        flags: dict = {"world": args.world, "split": args.split, "model": model, "attributor": args.attributor or ""}
        if args.learner:
            flags["learner"] = args.learner
        if args.max_steps is not None:
            flags["max_steps"] = args.max_steps
        if args.lora:
            flags["lora"] = True
        return flags
    if args.attributor or args.learner:
        raise DareUError("--attributor and --learner apply to --method dareu only; loss-based methods take none")
    flags = {"world": args.world, "split": args.split, "model": model}
    if args.max_steps is not None:
        flags["train"] = {"max_steps": args.max_steps}
    if args.lora:
        flags["lora"] = {"enabled": True}
    return flags


def load_config(args: argparse.Namespace):
    """The run's typed config from the flags, --config and key=value: every key and value checked, no file read
    but the YAML (`dareu submit` calls it before uploading a job)."""
    if args.overwrite and args.resume:
        raise DareUError("--overwrite and --resume contradict each other; pass one")
    return method_config(args.method, args.overrides, args.config, cli_flags(args))


check_config = load_config


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    out = console()
    summary = train(cfg, args.out, overwrite=args.overwrite, resume=args.resume, console=out)
    if args.method == "dareu":
        return 0
    before, after = summary.get("before", {}), summary.get("after", {})
    for key in sorted(set(before) | set(after)):
        out.print(f"  {key}: {before.get(key, float('nan')):.4f} -> {after.get(key, float('nan')):.4f}")
    out.print(f"wrote {Path(args.out) / 'model'} ({summary.get('steps')} steps, {summary.get('seconds')}s)")
    return 0
