"""`dareu world --out DIR`: only the dataset of the world (no models)."""

from __future__ import annotations

import argparse

from dareu.commands.common import add_config_flags, config_epilog
from dareu.config import load_config
from dareu.runs import claim_run_dir
from dareu.world import WorldConfig, save_world


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="folder for the DatasetDict (save_to_disk)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    add_config_flags(p, WorldConfig)
    p.epilog = config_epilog(WorldConfig)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(WorldConfig, args.config, args.overrides)
    out, _ = claim_run_dir(args.out, "dataset", overwrite=args.overwrite)
    save_world(cfg, out)  # beside the run marker; load_from_disk ignores it
    print(f"wrote {out}")
    return 0
