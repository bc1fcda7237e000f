"""Evaluate a model: `evaluate_model` on one in memory (the RL learner calls it every N steps),
`run_eval` on a saved model or run folder (what `dareu eval` runs), with the retain reference found or
computed and cached."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

from dareu.data import (
    check_benchmark,
    check_forget_split,
    check_same_data,
    get_split,
    load_benchmark,
    load_world,
    split_key,
    world_data_key,
)
from dareu.errors import DareUError
from dareu.evaluation.config import VALUE_FIELDS, EvalConfig
from dareu.evaluation.context import EvalContext, Steps, role_split, row_ids
from dareu.evaluation.reference import (
    META,
    Reference,
    cache_valid,
    check_reference,
    check_retain_model,
    model_key,
    read_logs,
)
from dareu.evaluation.suite import METRICS, ORDER, entry
from dareu.runs import claim_run_dir, write_json

# Rates shown beside the retain model's own rate (its chance level).
REFERENCED = ("fact_leakage", "fact_leakage_sampled", "fact_leakage_paraphrased", "fact_leakage_sampled_paraphrased")


DEFAULT_EVAL = EvalConfig()  # shared default; evaluation never changes its config
WORLD_EVAL = "eval.yaml"  # a world's own evaluation settings (a TOFU world's answers are longer than the generator's)


def world_eval_config(world: str | Path | None, overrides: list[str] | None = None, path: str | None = None,
                      fast: bool = False) -> EvalConfig:
    """The evaluation settings of a world: defaults <- its `eval.yaml` (written by `dareu prepare` when the world
    needs other settings) <- `path` <- key=value `overrides`; `fast` on top (the in-training subset)."""
    from dareu.config import load_config, read_yaml

    base = {}
    if world is not None and (Path(world) / WORLD_EVAL).is_file():
        base = read_yaml(Path(world) / WORLD_EVAL)
    return load_config(EvalConfig, path, [*(overrides or []), *(["fast=true"] if fast else [])], base=base)

def plan(cfg: EvalConfig, attributor=None, seed2: bool = False, judge: bool = False) -> list[str]:
    """The metrics to compute, inputs included, in eval.json order."""
    wanted = cfg.wanted()
    usable = [n for n in ORDER if (attributor is not None or not METRICS.get(n).attributor)
              and (judge or not METRICS.get(n).judge) and (seed2 or n != "noise_ceiling")]
    if not cfg.metrics:  # defaults (all, or the fast set) leave out what has no input
        wanted = [n for n in (wanted or usable) if n in usable]
    chosen: set[str] = set()

    def add(name: str) -> None:
        m = METRICS.get(name)  # unknown names: one line listing the registered ones
        if m.attributor and attributor is None:
            raise DareUError(f"metric {name} needs an attribution model; pass --attributor PATH")
        if m.judge and not judge:
            raise DareUError(f"metric {name} needs the model before fine-tuning as its judge; pass --judge-model PATH "
                             "(a world's models/base is used by default)")
        chosen.add(name)
        for dep in m.needs:
            add(dep)

    for name in wanted:
        add(name)
    if seed2 and "forget_quality" in chosen:  # free, and reported beside every forget quality
        chosen.add("noise_ceiling")
    return [n for n in ORDER if n in chosen]


def check_inputs(data, split: str, names: list[str]) -> None:
    """Every split the planned metrics read must exist (one clear line before any work)."""
    check_forget_split(split)
    for role in dict.fromkeys(r for n in names for r in METRICS.get(n).roles):
        get_split(data, role_split(role, split))


def evaluate_model(model, tok, data, split: str, *, retain_logs: dict | None = None, attributor=None,
                   cfg: EvalConfig = DEFAULT_EVAL, engine=None, seed2_logs: dict | None = None, judge=None) -> dict:
    """Evaluate an in-memory model on `split`: the eval dict `{metric: {agg_value, value_by_index}}`.

    `retain_logs` (the retain model's eval dict for the same split) gives forget quality, PrivLeak,
    Tug-of-War and the fact-leakage reference; `seed2_logs` (the second retain seed's) the noise ceiling.
    `EvalConfig(fast=True)` computes only forget quality, model utility, fact leakage (greedy + sampled)
    and forget attribution, for learning curves. `judge` (model, tokenizer), the model before fine-tuning,
    adds fluency."""
    from dareu.evaluation.logs import to_eval

    names = plan(cfg, attributor, seed2=seed2_logs is not None, judge=judge is not None)
    check_inputs(data, split, names)
    forget_ids = row_ids(list(get_split(data, split)))
    # open-unlearning's logs work too (a few names differ)
    retain_logs = None if retain_logs is None else to_eval(retain_logs, "retain logs")
    seed2_logs = None if seed2_logs is None else to_eval(seed2_logs, "second-seed retain logs")
    for logs, what in ((retain_logs, "retain logs"), (seed2_logs, "second-seed retain logs")):
        if logs is not None:
            check_reference(logs, forget_ids, split, what)
    ref = Reference(retain_logs, seed2_logs)
    steps = Steps(cfg.progress and sys.stderr.isatty())
    ctx = EvalContext(model, tok, data, split, cfg, engine=engine, attributor=attributor, steps=steps, judge=judge)
    if attributor is not None:
        ctx.owner_columns  # noqa: B018 - checks the owners before any generation
    has_facts = any(r.get("fact") for r in ctx.rows("forget"))
    results: dict[str, dict] = {}
    with steps:
        for name in names:
            m = METRICS.get(name)
            if m.derived:
                continue
            if m.facts and not has_facts:
                results[name] = entry(None, note="this benchmark has no `fact` column")
                continue
            results[name] = m.compute(ctx)
    return finish(results, names, ref)


def finish(results: dict, names: list[str], ref: Reference) -> dict:
    """Add the derived metrics (from entries and the retain logs) and the retain reference rates."""
    for name in names:
        m = METRICS.get(name)
        if m.derived and all(d in results for d in m.needs):
            results[name] = m.compute(results, ref)
    return ordered(attach_references(results, ref))


def attach_references(results: dict, ref: Reference) -> dict:
    """Put the retain model's rate beside each fact-leakage rate (the chance level of guessing facts)."""
    for name in REFERENCED:
        if name in results and ref.retain is not None and name in ref.retain:
            results[name]["retain_reference"] = ref.retain[name]["agg_value"]
    return results


def ordered(results: dict) -> dict:
    """Headline metrics first (the table's order), then the rest in registration order."""
    from dareu.evaluation.report import HEADLINE

    order = [n for n, _ in HEADLINE] + ORDER
    return {n: results[n] for n in dict.fromkeys(order) if n in results} | \
        {n: v for n, v in results.items() if n not in order}


# -- saved models ----------------------------------------------------------------------------------------------
def load_for_eval(model_dir: str):
    """Model (float32 on CPU, its own dtype on GPU) and tokenizer of a folder, as every evaluation loads them."""
    import torch

    from dareu.modeling import load_model, load_tokenizer

    tok = load_tokenizer(model_dir)
    model = load_model(model_dir, dtype=None if torch.cuda.is_available() else torch.float32)
    return model.to("cuda" if torch.cuda.is_available() else "cpu"), tok


def _engine(model_dir: str, cfg: EvalConfig):
    from dareu.generation import VLLMGenerator, vllm_available

    if cfg.backend == "hf" or (cfg.backend == "auto" and not vllm_available()):
        return None
    if not vllm_available():
        raise DareUError("backend=vllm needs a GPU and the vllm extra (pip install 'dareu[vllm]')")
    return VLLMGenerator(model_dir, seed=cfg.seed)


def reference_config(cfg: EvalConfig) -> EvalConfig:
    """The retain model is always evaluated in full (every metric but attribution), with the same values."""
    return replace(cfg, metrics=[], fast=False)


def cached_logs(model_dir: str, data, split: str, cfg: EvalConfig, folder: Path, say=print) -> dict:
    """The eval dict of a reference model, from `folder` when it was computed with the same weights and
    settings, else computed now and written there."""

    values = {**{k: getattr(cfg, k) for k in VALUE_FIELDS}, "split_key": split_key(data, split)}
    key = model_key(model_dir)
    if cache_valid(folder, key, values):
        return read_logs(folder / "eval.json")
    say(f"computing reference logs of {model_dir} (cached in {folder})")
    start = time.time()
    model, tok = load_for_eval(model_dir)
    logs = evaluate_model(model, tok, data, split, cfg=reference_config(cfg), engine=_engine(model_dir, cfg))
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "eval.json", logs)
    write_json(folder / META, {"model": str(model_dir), "model_key": key, "split": split, "config": values,
                               "seconds": time.time() - start})
    return logs


def reference_logs(world: str | Path, split: str, cfg: EvalConfig | None = None, cache_dir: str | Path | None = None,
                   say=print) -> Reference:
    """The retain model's logs (and the second seed's, when the world has it) of a world, computed once
    and cached in `<world>/eval/` (or `cache_dir`): what the RL learner passes to `evaluate_model`."""

    world = Path(world)
    check_forget_split(split)
    data = load_world(world)
    if cfg is None:
        cfg = world_eval_config(world)
    cache = Path(cache_dir) if cache_dir else world / "eval"
    found = {}
    for name in (f"retain-{split}", f"retain-{split}-seed2"):
        path = world / "models" / name
        if path.is_dir():
            check_retain_model(path, split, check_forget_split(split))
            found[name] = cached_logs(str(path), data, split, cfg, cache / name, say)
    if f"retain-{split}" not in found:
        raise DareUError(f"world {world} has no retain model for {split}; build it with `dareu prepare` (retain_splits)")
    return Reference(found[f"retain-{split}"], found.get(f"retain-{split}-seed2"))


def _world_dir(world_or_benchmark: str) -> Path | None:
    p = Path(world_or_benchmark)
    return p if (p / "models").is_dir() or (p / "data").is_dir() else None


def _cache_name(model_dir: str) -> str:
    p = Path(model_dir)
    return p.parent.name if p.name == "model" else p.name


def run_eval(model_path: str, world_or_benchmark: str, split: str, out_dir: str | Path,
             attributor=None, *, cfg: EvalConfig | None = None, retain_model: str | None = None,
             retain_logs: str | None = None, cache_dir: str | None = None, overwrite: bool = False,
             console=None, benchmark_path: str | None = None, judge_model: str | None = None) -> dict:
    """Evaluate a saved model (or run folder) and write `out_dir/eval.json` (+ eval_meta.json).

    The reference is `retain_logs` when given, else the logs of `retain_model` (default: the world's
    `models/retain-<split>`), computed and cached under `cache_dir` (default `<world>/eval/`) when missing.
    The world's `retain-<split>-seed2`, when present, gives the noise ceiling. `attributor` is a loaded
    attribution model (`attribution.load_attributor`, or anything with `owners` and `score`); its `path`, when
    it has one, is recorded in eval_meta.json. `judge_model` (default: the world's `models/base`, the model before
    it learned the owners) scores the fluency of the generated forget answers. `cfg` defaults to the world's own
    settings (`world_eval_config`)."""
    from dareu.evaluation.report import render
    from dareu.modeling import check_model_path, load_tokenizer, resolve_model_dir

    say = console.print if console is not None else print
    start = time.time()
    # 1. everything that can be wrong, before any model is loaded
    retain_split = check_forget_split(split)
    check_benchmark(world_or_benchmark, benchmark_path)  # a missing world is the first thing to say
    model_dir = resolve_model_dir(model_path)
    check_model_path(model_dir)
    load_tokenizer(model_dir)  # a model folder without its tokenizer fails here, in one line
    data = load_benchmark(world_or_benchmark, benchmark_path)
    world = _world_dir(world_or_benchmark)
    if cfg is None:
        cfg = world_eval_config(world)
    if judge_model is None and world is not None and (world / "models" / "base").is_dir():
        judge_model = str(world / "models" / "base")
    if judge_model is not None:
        check_model_path(resolve_model_dir(judge_model), "--judge-model")
    names = plan(cfg, attributor, seed2=True, judge=judge_model is not None)
    check_inputs(data, split, names)
    forget_ids = row_ids(list(get_split(data, split)))
    if attributor is not None:
        check_same_data(getattr(attributor, "benchmark", {}).get("data_key"), world,
                        f"attributor {getattr(attributor, 'path', '')}".strip(), "train one on this world")
        EvalContext(None, None, data, split, cfg, attributor=attributor).owner_columns  # noqa: B018
    ref_logs = ref_dir = seed2_dir = None
    if retain_logs:
        ref_logs = _convert(read_logs(retain_logs, "--retain-logs"), f"--retain-logs {retain_logs}")
        check_reference(ref_logs, forget_ids, split, f"--retain-logs {retain_logs}")
    else:
        ref_dir = resolve_model_dir(retain_model) if retain_model else (
            str(world / "models" / f"retain-{split}") if world else None)
        if ref_dir is None:
            raise DareUError(f"no retain model for forget quality on {world_or_benchmark}: pass --retain-logs FILE (e.g. "
                             f"open-unlearning's TOFU_EVAL.json of the {retain_split} model) or --retain-model PATH")
        if not Path(ref_dir).exists() and not retain_model:
            raise DareUError(f"the world has no retain model for {split} ({ref_dir}); build it with `dareu prepare` "
                             "(retain_splits) or pass --retain-model / --retain-logs")
        check_model_path(ref_dir, "--retain-model")
        check_retain_model(ref_dir, split, retain_split)
        if world is not None and not retain_model and (world / "models" / f"retain-{split}-seed2").is_dir():
            seed2_dir = str(world / "models" / f"retain-{split}-seed2")
    out, _ = claim_run_dir(out_dir, "eval", overwrite=overwrite)

    # 2. the references (cached), then the model
    default_cache = Path.home() / ".cache" / "dareu" / "eval" / Path(world_or_benchmark).name
    cache = Path(cache_dir) if cache_dir else (world / "eval" if world else default_cache)
    if ref_logs is None:
        ref_logs = cached_logs(ref_dir, data, split, cfg, cache / _cache_name(ref_dir), say)
    seed2_logs = cached_logs(seed2_dir, data, split, cfg, cache / _cache_name(seed2_dir), say) if seed2_dir else None
    model, tok = load_for_eval(model_dir)
    judge = load_for_eval(resolve_model_dir(judge_model)) if judge_model is not None else None
    results = evaluate_model(model, tok, data, split, retain_logs=ref_logs, attributor=attributor, cfg=cfg,
                             engine=_engine(model_dir, cfg), seed2_logs=seed2_logs, judge=judge)
    write_json(out / "eval.json", results)
    write_json(out / META, {"model": str(model_dir), "benchmark": str(world_or_benchmark),
                            "data_key": world_data_key(world), "split": split,
                            "retain": retain_logs or ref_dir, "retain_seed2": seed2_dir,
                            "attributor": getattr(attributor, "path", None), "judge": judge_model, "config": {k: getattr(cfg, k) for k in VALUE_FIELDS},
                            "seconds": time.time() - start})
    if console is not None:
        render(results, console, title=f"eval: {model_path} on {split}")
    return results


def _convert(logs: dict, source: str) -> dict:
    from dareu.evaluation.logs import to_eval

    return to_eval(logs, source)
