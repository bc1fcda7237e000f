"""`dareu demo [--fast] [--out runs/demo]`: the whole pipeline on the embedded world."""

from __future__ import annotations

import argparse

from dareu.commands.common import add_config_flags, config_epilog


def add_arguments(p: argparse.ArgumentParser) -> None:
    from dareu.demo import DemoConfig

    p.add_argument("--out", default=None, help="demo folder (default: runs/demo, or runs/demo-fast with --fast)")
    p.add_argument("--fast", action="store_true", help="the tiny world and short runs (about a minute on 2 cores)")
    p.add_argument("--overwrite", action="store_true", help="start over a demo folder made with other settings "
                                                             "(its world is kept when the world's settings match)")
    add_config_flags(p, DemoConfig)
    p.epilog = config_epilog(DemoConfig)


def run(args: argparse.Namespace) -> int:
    from dareu.commands.common import console
    from dareu.config import load_config
    from dareu.config import CONFIGS_DIR
    from dareu.demo import DemoConfig, run_demo

    path = args.config or CONFIGS_DIR / "demo" / ("fast.yaml" if args.fast else "default.yaml")
    cfg = load_config(DemoConfig, path, args.overrides)
    run_demo(cfg, args.out or ("runs/demo-fast" if args.fast else "runs/demo"), console=console(),
             overwrite=args.overwrite)
    return 0
