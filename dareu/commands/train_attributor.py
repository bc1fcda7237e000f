"""`dareu train-attributor`: train, calibrate and validate an attribution model of data owners.

    dareu train-attributor --world W --kind llm|tfidf --out A [--backbone PATH_OR_ID] [--lora]
                           [--benchmark tofu|PATH [--benchmark-path DIR]] [--overwrite] [--config YAML]
                           [key=value ...]

Writes A/ (the model and attributor.json), A/report.json (heldout_accuracy, proxy, checks, test
report, calibration), A/samples.jsonl (every probe with its true-owner probability) and, with
--kind llm, the TF-IDF baseline in A/tfidf-baseline/.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dareu.commands.common import add_config_flags, config_epilog, console
from dareu.config import CONFIGS_DIR, load_config, save_config
from dareu.data import load_benchmark
from dareu.errors import DareUError
from dareu.runs import claim_run_dir, running, set_status

CONFIG_DIR = CONFIGS_DIR / "attribution"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from attribution.config import AttributorConfig

    p.add_argument("--world", default=None, help="world folder (from `dareu prepare`): its data, its base model as "
                                                 "backbone, its target/retain models for the proxy probes")
    p.add_argument("--benchmark", default=None, help="'tofu' or a DatasetDict folder to train on instead of the "
                                                     "world's data")
    p.add_argument("--benchmark-path", default=None, help="local copy of the TOFU dataset repository (with "
                                                          "--benchmark tofu): its JSON Lines files, as on the hub")
    p.add_argument("--kind", choices=("llm", "tfidf"), default=None, help="attributor kind (default: the config's, llm)")
    p.add_argument("--backbone", default=None, help="causal LM folder or HF id for kind=llm (default: W/models/target)")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters (peft) instead of every weight")
    p.add_argument("--out", required=True, help="attributor folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    add_config_flags(p, AttributorConfig)
    p.epilog = ("default --config: configs/attribution/<kind>.yaml\n\n" + config_epilog(AttributorConfig))


def load_run_config(args: argparse.Namespace):
    from attribution.config import AttributorConfig

    overrides = list(args.overrides or [])
    kind = args.kind
    if kind is None:  # a kind=... override or the config file may name it
        kind = next((o.split("=", 1)[1] for o in overrides if o.startswith("kind=")), "llm")
    path = args.config
    if path is None and (CONFIG_DIR / f"{kind}.yaml").is_file():
        path = CONFIG_DIR / f"{kind}.yaml"
    flags = [f"kind={args.kind}"] if args.kind else []
    if args.backbone:
        flags.append(f"llm.backbone={args.backbone}")
    if args.lora:
        flags.append("llm.lora=true")
    return load_config(AttributorConfig, path, overrides + flags)


def run(args: argparse.Namespace) -> int:
    from attribution.report import render
    from attribution.train import prepare_run, train_attributor

    cfg = load_run_config(args)
    if args.world is None and args.benchmark is None:
        raise DareUError("give --world W (a folder from `dareu prepare`) or --benchmark tofu|PATH")
    if args.world is not None and not Path(args.world).exists():
        raise DareUError(f"world folder {args.world} does not exist; build it with `dareu prepare --out {args.world}`")
    dataset = load_benchmark(args.benchmark or args.world, args.benchmark_path)
    plan = prepare_run(cfg, dataset, args.benchmark or args.world, args.world)  # every input check, before work
    out_dir, _ = claim_run_dir(args.out, "attributor", overwrite=args.overwrite)
    save_config(cfg, out_dir / "config.yaml")
    out = console()
    with running(out_dir):
        report = train_attributor(plan, out_dir, log=out.print)
    set_status(out_dir, "done")
    render(report, out)
    out.print(f"wrote {out_dir} and {out_dir / 'report.json'} ({report['seconds']:.0f}s)")
    failed = [key for key, check in report.get("checks", {}).items() if not check.get("ok")]
    if failed:  # like `dareu prepare`: a model that misses a bar is written, but the exit code says so
        out.print(f"validation bars missed: {', '.join(failed)}")
        return 1
    return 0
