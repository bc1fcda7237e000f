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


def method_config(method: str, overrides: list[str] | None = None, config: str | None = None,
                  flags: dict | None = None):
    """The typed config of one unlearning run: DareU (RL, `rl.config.DareUConfig`) or a loss-based method.
    Layers: the method's shipped YAML <- `config` (a YAML file) <- `flags` <- key=value `overrides`; an unknown
    key or a bad value is one DareUError. The CLI, `compare` and the service all build runs through here."""
    if method == "dareu":
        from rl.launch import load_dareu_config

        return load_dareu_config(overrides, config, flags)
    from dareu.unlearn import load_run_config

    return load_run_config(method, overrides, config, flags)


def train(cfg, out, *, overwrite: bool = False, resume: bool = False, console=None) -> dict:
    """Run the unlearning `cfg` (from `method_config`) into the run folder `out`; returns the run's summary."""
    if cfg.method == "dareu":
        from rl.launch import run_unlearn as run_rl

        return run_rl(cfg, out, overwrite=overwrite, resume=resume)
    from dareu.unlearn import run_unlearn

    return run_unlearn(cfg, out, overwrite=overwrite, resume=resume, console=console)
