"""Flags shared by several commands."""

from __future__ import annotations

import argparse


def add_config_flags(p: argparse.ArgumentParser, default_config: str | None = None) -> None:
    p.add_argument("--config", default=default_config, help="YAML config file (default: %(default)s)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. world.seed=3")


def config_epilog(cls) -> str:
    from dareu.config import describe

    return "config keys (key=value):\n" + "\n".join(f"  {k} = {d!r}\n      {h}" for k, d, h in describe(cls))


def console():
    from rich.console import Console

    return Console(highlight=False)
