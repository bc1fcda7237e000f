"""`dareu attack`: relearning, quantization and probing attacks on an unlearned model, and how much of each
forget owner they bring back.

  dareu attack --world W --model RUN_OR_PATH [--attacks relearn,quant4,...] [--attributor A] --out X
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dareu.commands.common import add_config_flags, config_epilog, console


def add_arguments(p: argparse.ArgumentParser) -> None:
    from dareu.attacks import ATTACKS, AttackConfig

    p.add_argument("--world", required=True, help="world folder (from `dareu prepare`) with its target and retain model")
    p.add_argument("--model", required=True, help="run folder (its model/) or model folder to attack")
    p.add_argument("--split", default="forget10", help="forget split (default: %(default)s)")
    p.add_argument("--attacks", help="comma-separated attacks (default: all); " +
                   "; ".join(f"{n}: {ATTACKS.get(n).help.rstrip('.')}" for n in ATTACKS.names()))
    p.add_argument("--attributor", help="attribution model folder: adds forget_attribution after model attacks")
    p.add_argument("--cache", help="folder for the target's and retain model's attack results (default: <world>/attacks)")
    p.add_argument("--out", required=True, help="folder to write attack.json and report.md into")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--overwrite", action="store_true", help="replace an existing --out attack folder")
    mode.add_argument("--resume", action="store_true", help="continue a killed attack run in --out (finished attacks "
                                                            "are kept)")
    add_config_flags(p, AttackConfig)
    p.epilog = config_epilog(AttackConfig)


def run(args: argparse.Namespace) -> int:
    from attribution import load_attributor
    from dareu.attacks import AttackConfig, run_attack
    from dareu.config import load_config
    from dareu.data import check_world
    check_world(args.world)  # a missing world is the first thing to say
    overrides = [*args.overrides, *([f"attacks=[{args.attacks}]"] if args.attacks else [])]
    cfg = load_config(AttackConfig, args.config, overrides)
    out = console()
    attributor = load_attributor(args.attributor) if args.attributor else None
    run_attack(args.model, args.world, args.split, args.out, cfg, attributor, overwrite=args.overwrite,
               resume=args.resume, cache_dir=args.cache, say=out.print)
    out.print((Path(args.out) / "report.md").read_text())
    return 0
