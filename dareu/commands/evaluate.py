"""`dareu eval`: evaluate a model or run folder on a forget split, or aggregate logs that already exist.

  dareu eval --world W --model M --split forget10 [--attributor A] --out E [--overwrite]
  dareu eval --benchmark tofu --model HF_ID --split forget10 --retain-logs TOFU_EVAL.json --out E
  dareu eval --logs FILE [--retain-logs FILE] --out E
  dareu eval --muse DIR --model M --out E
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dareu.commands.common import add_config_flags, config_epilog, console
from dareu.data import check_benchmark
from dareu.errors import DareUError
from dareu.runs import claim_run_dir, write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    from dareu.evaluation.config import EvalConfig

    src = p.add_mutually_exclusive_group()
    src.add_argument("--world", help="world folder (from `dareu prepare`): data, retain models, reference cache")
    src.add_argument("--benchmark", help="'tofu' (locuslab/TOFU from the hub) or a benchmark folder")
    src.add_argument("--logs", help="aggregate these per-sample logs (open-unlearning TOFU_EVAL.json, TOFU "
                                    "eval_log_aggregated.json or a DareU eval.json) instead of running a model")
    src.add_argument("--muse", help="a MUSE data folder (verbmem/, knowmem/, privleak/): VerbMem, KnowMem, PrivLeak")
    p.add_argument("--benchmark-path", help="local copy of the TOFU dataset repository (with --benchmark tofu): "
                                            "its JSON Lines files, as on the hub")
    p.add_argument("--model", help="run folder (its model/), model folder or HF model id to evaluate")
    p.add_argument("--split", default="forget10", help="forget split (default: %(default)s)")
    p.add_argument("--attributor", help="attribution model folder: adds forget_attribution")
    p.add_argument("--retain-model", help="retain model of the split (default: the world's models/retain-<split>)")
    p.add_argument("--judge-model", help="the model before fine-tuning on the owners, whose likelihood of the generated "
                                         "forget answers is their fluency (default: the world's models/base)")
    p.add_argument("--retain-logs", help="the retain model's logs instead of its model (any format --logs takes)")
    p.add_argument("--retain-seed2-logs", help="with --logs: the second retain seed's logs (noise ceiling)")
    p.add_argument("--cache", help="folder for computed retain logs (default: <world>/eval)")
    p.add_argument("--fast", action="store_true", help="the cheap in-training subset (config key fast=true)")
    p.add_argument("--out", required=True, help="folder to write eval.json into")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    add_config_flags(p, EvalConfig)
    p.epilog = config_epilog(EvalConfig)


def run(args: argparse.Namespace) -> int:
    from attribution import load_attributor
    from dareu.evaluation import aggregate_logs, run_eval
    from dareu.evaluation.report import render
    from dareu.evaluation.runner import world_eval_config
    # the world's own settings (its eval.yaml) <- --config <- key=value
    cfg = world_eval_config(args.world, args.overrides, args.config, fast=args.fast)
    out = console()
    if args.logs:
        if args.model:
            raise DareUError("--logs aggregates existing logs; drop --model (or drop --logs to evaluate the model)")
        results = aggregate_logs(args.logs, args.retain_logs, args.retain_seed2_logs)
        folder, _ = claim_run_dir(args.out, "eval", overwrite=args.overwrite)
        write_json(folder / "eval.json", results)
        render(results, out, title=f"eval: logs {args.logs}")
    elif args.muse:
        results = _muse(args, cfg)
        render(results, out, title=f"MUSE: {args.model}")
    else:
        if not args.model:
            raise DareUError("give --model RUN_OR_PATH to evaluate (or --logs FILE to aggregate existing logs)")
        source = args.world or args.benchmark
        if not source:
            raise DareUError("give --world W (a DareU world) or --benchmark tofu")
        check_benchmark(source, args.benchmark_path)  # a missing world is the first thing to say
        attributor = load_attributor(args.attributor) if args.attributor else None
        results = run_eval(args.model, source, args.split, args.out, attributor, cfg=cfg,
                           retain_model=args.retain_model, retain_logs=args.retain_logs, cache_dir=args.cache,
                           overwrite=args.overwrite, console=out, benchmark_path=args.benchmark_path,
                           judge_model=args.judge_model)
    out.print(f"wrote {Path(args.out) / 'eval.json'}")
    return 0


def _muse(args, cfg) -> dict:
    from dareu.evaluation.muse import evaluate_muse, load_muse
    from dareu.evaluation.reference import read_logs
    from dareu.evaluation.runner import load_for_eval
    from dareu.modeling import check_model_path, load_tokenizer, resolve_model_dir

    if not args.model:
        raise DareUError("--muse needs --model RUN_OR_PATH")
    data = load_muse(args.muse)
    model_dir = resolve_model_dir(args.model)
    check_model_path(model_dir)
    load_tokenizer(model_dir)
    retain = read_logs(args.retain_logs, "--retain-logs") if args.retain_logs else None
    folder, _ = claim_run_dir(args.out, "eval", overwrite=args.overwrite)
    model, tok = load_for_eval(model_dir)
    results = evaluate_muse(model, tok, data, retain_logs=retain, k=cfg.min_k)
    write_json(folder / "eval.json", results)
    return results
