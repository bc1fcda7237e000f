"""`dareu demo [--fast] [--out runs/demo]`: the whole pipeline on the embedded world, ending in the comparison table.

world + models (dareu prepare) -> attribution model (dareu train-attributor) -> DareU and the baselines
(dareu unlearn) -> the same evaluation for all (dareu eval) -> report.json/.md and plots (dareu compare).
Every stage is cached in the output folder, so a re-run with nothing changed only re-reads results.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from dareu.cli import main as cli
from dareu.commands.common import add_config_flags, config_epilog, console
from dareu.config import CONFIGS_DIR, field, load_config, to_dict
from dareu.errors import DareUError
from dareu.runs import changed_keys, claim_run_dir, read_json, write_json


@dataclass
class DemoConfig:
    prepare_config: str = field("configs/prepare/default.yaml", help="Config of the world and its models.")
    prepare_overrides: list[str] = field(default_factory=lambda: ["retain_splits=[forget10]"],
                                         help="key=value overrides of the prepare config (the demo needs forget10 only).")
    split: str = field("forget10", help="Forget split to unlearn.")
    attributor_kind: str = field("tfidf", help="Attribution model for DareU's reward: llm or tfidf.")
    attributor_overrides: list[str] = field(default_factory=list, help="key=value overrides of train-attributor.")
    methods: list[str] = field(default_factory=lambda: ["dareu", "ga", "graddiff", "npo", "simnpo", "flat", "satimp"],
                               help="Methods compared (dareu = RL de-attribution).")
    dareu_overrides: list[str] = field(default_factory=list, help="key=value overrides of configs/methods/dareu.yaml.")
    baseline_overrides: list[str] = field(default_factory=list,
                                          help="key=value overrides applied to every loss-based method.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None, help="demo folder (default: runs/demo, or runs/demo-fast with --fast)")
    p.add_argument("--fast", action="store_true", help="the tiny world and short runs (about a minute on 2 cores)")
    p.add_argument("--overwrite", action="store_true", help="start over a demo folder made with other settings "
                                                             "(its world is kept when the world's settings match)")
    add_config_flags(p, DemoConfig)
    p.epilog = config_epilog(DemoConfig)


def run(args: argparse.Namespace) -> int:
    path = args.config or CONFIGS_DIR / "demo" / ("fast.yaml" if args.fast else "default.yaml")
    cfg = load_config(DemoConfig, path, args.overrides)
    demo_pipeline(cfg, args.out or ("runs/demo-fast" if args.fast else "runs/demo"), console=console(),
             overwrite=args.overwrite)
    return 0


def _resolve(path: str) -> Path:
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    # "configs/..." names a shipped config, wherever the package is installed
    return CONFIGS_DIR / p.relative_to("configs") if p.parts[:1] == ("configs",) else CONFIGS_DIR.parent / p


# what a demo writes into its folder; starting over deletes these and nothing else
DEMO_ENTRIES = ("world", "attributor", "runs", "collected", "references", "report.json", "report.md", "pareto.png",
                "attribution.png", "demo_config.json")


def check_demo_out(out: Path, cfg: DemoConfig, overwrite: bool) -> None:
    """A demo folder is reused only with the settings it was made with: its cached attributor and runs
    would silently stand for other settings. `overwrite` starts it over, keeping the world when its own
    settings did not change (`prepare` checks those itself). A folder that is not a demo is never touched."""
    import shutil


    out, existed = claim_run_dir(out, "demo", reuse=True)
    saved = out / "demo_config.json"
    if not existed or not saved.is_file():
        return
    old, new = read_json(saved), to_dict(cfg)
    if old == new:
        return
    diff = changed_keys(old, new)
    if not overwrite:
        raise DareUError(f"--out {out} holds a demo made with other settings (differs in {', '.join(diff[:4])}); "
                         "pass --overwrite to start it over or choose another --out")
    keep_world = all(old.get(k) == new.get(k) for k in ("prepare_config", "prepare_overrides"))
    for name in DEMO_ENTRIES:
        path = out / name
        if path.exists() and not (keep_world and name == "world"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def demo_pipeline(cfg: DemoConfig, out: str | Path, console=None, overwrite: bool = False) -> dict:
    from dareu.commands.compare import compare
    from dareu.prepare import PrepareConfig, prepare
    from dareu.quality import render

    say = console.print if console is not None else print
    out = Path(out)
    check_demo_out(out, cfg, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "demo_config.json", to_dict(cfg))
    start = time.time()
    stages: dict[str, float] = {}
    prep_cfg = load_config(PrepareConfig, _resolve(cfg.prepare_config), cfg.prepare_overrides)

    t = time.time()
    say("[demo] 1/3 world and models (dareu prepare)")
    table = prepare(prep_cfg, out / "world", console=console)
    if console is not None:
        render(table, console)
    stages["prepare"] = time.time() - t

    t = time.time()
    attributor = out / "attributor"
    if not (attributor / "report.json").is_file():
        say(f"[demo] 2/3 attribution model ({cfg.attributor_kind})")
        code = cli(["train-attributor", "--world", str(out / "world"), "--kind", cfg.attributor_kind,
                    "--out", str(attributor), "--overwrite", *cfg.attributor_overrides])
        if code == 2:
            raise DareUError("training the attribution model failed; see the line above")
    else:
        say(f"[demo] 2/3 attribution model: reusing {attributor}")
    stages["attributor"] = time.time() - t

    t = time.time()
    say(f"[demo] 3/3 {', '.join(cfg.methods)} on {cfg.split}, evaluated alike (dareu compare)")
    overrides = {m: list(cfg.baseline_overrides) for m in cfg.methods if m != "dareu"}
    overrides["dareu"] = list(cfg.dareu_overrides)
    report = compare(str(out / "world"), cfg.split, cfg.methods, out, str(attributor), method_overrides=overrides,
                     console=console, kind="demo")
    stages["compare"] = time.time() - t
    report["stages_seconds"] = {**stages, "total": time.time() - start}
    write_json(out / "report.json", report)
    say((out / "report.md").read_text())
    say(f"[demo] wrote {out / 'report.json'}, report.md, pareto.png, attribution.png ({time.time() - start:.0f}s)")
    return report
