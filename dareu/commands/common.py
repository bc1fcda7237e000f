"""Flags shared by several commands."""

from __future__ import annotations

import argparse

from dareu.config import describe


def add_config_flags(p: argparse.ArgumentParser, cls: type, default_config: str | None = None) -> None:
    """--config and key=value overrides; the help's example is a real key of `cls`, with its default."""

    key, default, _ = describe(cls)[0]
    p.add_argument("--config", default=default_config, help="YAML config file (default: %(default)s)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help=f"config overrides, e.g. {key}={default} (every key is listed below)")


def config_epilog(cls) -> str:
    return "config keys (key=value):\n" + "\n".join(f"  {k} = {d!r}\n      {h}" for k, d, h in describe(cls))


def console():
    from rich.console import Console

    # no markup: messages like "[compare] running npo" and file paths print as written
    return Console(highlight=False, markup=False)
