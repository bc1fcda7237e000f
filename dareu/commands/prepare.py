"""`dareu prepare --out W`: world, tokenizer, base/target/retain models and the quality table."""

from __future__ import annotations

import argparse
from pathlib import Path

from dareu.commands.common import add_config_flags, config_epilog, console
from dareu.config import load_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    from dareu.prepare import PrepareConfig

    p.add_argument("--out", default="runs/world", help="world folder to write (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace a folder built with another config")
    add_config_flags(p, PrepareConfig)
    p.epilog = config_epilog(PrepareConfig)


def run(args: argparse.Namespace) -> int:
    from dareu.prepare import PrepareConfig, prepare
    from dareu.quality import render

    cfg = load_config(PrepareConfig, args.config, args.overrides)
    out = console()
    table = prepare(cfg, args.out, overwrite=args.overwrite, console=out)
    render(table, out)
    out.print(f"wrote {Path(args.out) / 'prepare.json'} ({table['seconds']['total']:.0f}s)")
    return 0 if table["all_ok"] else 1
