"""`dareu compare --world W --split forget10 --methods dareu,ga,npo,... --attributor A --out C`."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--world", required=True, help="world folder (from `dareu prepare`)")
    p.add_argument("--split", default="forget10", help="forget split (default: %(default)s)")
    p.add_argument("--methods", default="dareu,ga,graddiff,npo,simnpo,flat,satimp",
                   help="comma-separated methods to run or collect (default: %(default)s)")
    p.add_argument("--attributor", default=None, help="attribution model: DareU's reward and the forget_attribution column")
    p.add_argument("--run", action="append", default=[], metavar="METHOD=DIR",
                   help="use an existing run folder for METHOD instead of training it (repeatable)")
    p.add_argument("--out", required=True, help="comparison folder: report.json, report.md, pareto.png, attribution.png")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing comparison folder (collected --run folders are only read, never written)")
    p.add_argument("overrides", nargs="*", metavar="METHOD:key=value",
                   help="per-method overrides, e.g. npo:train.max_steps=50 dareu:max_steps=100")


def run(args: argparse.Namespace) -> int:
    from dareu.commands.common import console
    from dareu.compare import compare
    from dareu.errors import DareUError

    runs = {}
    for item in args.run:
        if "=" not in item:
            raise DareUError(f"--run {item!r} is not METHOD=DIR")
        method, path = item.split("=", 1)
        runs[method] = path
    overrides: dict[str, list[str]] = {}
    for item in args.overrides:
        if ":" not in item.split("=", 1)[0]:
            raise DareUError(f"override {item!r} must name its method, e.g. npo:train.max_steps=50")
        method, kv = item.split(":", 1)
        overrides.setdefault(method, []).append(kv)
    methods = [m for m in args.methods.split(",") if m]
    out = console()
    compare(args.world, args.split, methods, args.out, args.attributor, runs, overrides, console=out,
            overwrite=args.overwrite)
    out.print((__import__("pathlib").Path(args.out) / "report.md").read_text())
    return 0
