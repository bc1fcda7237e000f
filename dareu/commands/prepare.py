"""`dareu prepare --out W`: world, tokenizer, base/target/retain models and the quality table.

`dareu prepare --benchmark tofu --data DIR --model M --out W`: the same layout from a local TOFU copy and a
pretrained chat model (dareu.prepare_tofu).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dareu.commands.common import add_config_flags, config_epilog, console
from dareu.config import CONFIGS_DIR, load_config
from dareu.errors import DareUError

TOFU_DEFAULT_CONFIG = CONFIGS_DIR / "prepare" / "tofu_cpu.yaml"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from dareu.prepare import PrepareConfig
    from dareu.prepare_tofu import TofuPrepareConfig

    p.add_argument("--out", default="runs/world", help="world folder to write (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace a folder built with another config")
    p.add_argument("--benchmark", choices=["tofu"], default=None,
                   help="build the world from a benchmark instead of the generator: tofu (needs --data and --model; "
                        f"--config defaults to {TOFU_DEFAULT_CONFIG.relative_to(CONFIGS_DIR.parent)})")
    p.add_argument("--data", default=None, help="with --benchmark tofu: a local copy of locuslab/TOFU in the hub's "
                                                "layout (full.json, forget01_perturbed.json, ...)")
    p.add_argument("--model", default=None, help="with --benchmark tofu: a local pretrained chat model folder "
                                                 "(the base, fine-tuned into target and retain models)")
    add_config_flags(p, PrepareConfig)
    p.epilog = (config_epilog(PrepareConfig) + "\n\nwith --benchmark tofu, "
                + config_epilog(TofuPrepareConfig))


def run(args: argparse.Namespace) -> int:
    from dareu.quality import render

    if args.benchmark == "tofu":
        return _run_tofu(args)
    if args.data is not None or args.model is not None:
        raise DareUError("--data and --model go with --benchmark tofu; the generated world needs neither")
    from dareu.prepare import PrepareConfig, prepare

    cfg = load_config(PrepareConfig, args.config, args.overrides)
    out = console()
    table = prepare(cfg, args.out, overwrite=args.overwrite, console=out)
    render(table, out)
    out.print(f"wrote {Path(args.out) / 'prepare.json'} ({table['seconds']['total']:.0f}s)")
    return 0 if table["all_ok"] else 1


def _run_tofu(args: argparse.Namespace) -> int:
    from dareu.prepare_tofu import TofuPrepareConfig, prepare_tofu
    from dareu.quality import render

    for flag, value in (("--data", args.data), ("--model", args.model)):
        if value is None:
            raise DareUError(f"--benchmark tofu needs {flag} (a local TOFU copy and a pretrained chat model folder)")
    cfg = load_config(TofuPrepareConfig, args.config or TOFU_DEFAULT_CONFIG, args.overrides)
    out = console()
    table = prepare_tofu(cfg, args.data, args.model, args.out, overwrite=args.overwrite, console=out)
    render(table, out)
    out.print(f"wrote {Path(args.out) / 'prepare.json'} ({table['seconds']['total']:.0f}s)")
    return 0 if table["all_ok"] else 1
