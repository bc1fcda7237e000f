"""Measure at the saved checkpoints of a `dareu unlearn` run (the official code's workflow), no training.

Step 0 is the run's starting model (`model` in its config.yaml); step N is R/checkpoints/checkpoint-N.
The objective, its parameters, the world, the split and the templates come from the run's config.
"""

from __future__ import annotations

import re
from pathlib import Path

from dareu.config import read_yaml
from dareu.data import check_forget_split, load_world
from dareu.errors import DareUError
from dareu.geffect.config import GEffectConfig

_CKPT = re.compile(r"^checkpoint-(\d+)$")


def run_checkpoints(run_dir: Path, start_model: str) -> dict[int, str]:
    """step -> model folder: 0 -> the starting model, N -> checkpoints/checkpoint-N (complete ones only)."""
    found = {0: start_model}
    folder = run_dir / "checkpoints"
    if folder.is_dir():
        for child in folder.iterdir():
            match = _CKPT.match(child.name)
            if match and (child / "config.json").is_file():
                found[int(match.group(1))] = str(child)
    return dict(sorted(found.items()))


def plan_from_run(cfg: GEffectConfig, run_dir: str, steps: list[int] | None, params: list[str] | None = None,
                  method: str | None = None):
    """A Plan whose steps are checkpoints of the run in `run_dir` (default: every checkpoint it kept)."""
    from transformers import AutoConfig

    from dareu.geffect.groups import group_names, num_blocks, select_groups
    from dareu.geffect.run import Plan, check_instance_ids
    from dareu.modeling import check_model_path, resolve_model_dir
    from dareu.unlearn import load_run_config
    from dareu.unlearn.data import load_templates

    run = Path(run_dir)
    if not (run / "config.yaml").is_file():
        raise DareUError(f"--run {run_dir} is not a `dareu unlearn` run folder (no config.yaml)")
    raw = read_yaml(run / "config.yaml")
    if "method" not in raw and "learner" not in raw:
        raise DareUError(f"--run {run_dir} is not a `dareu unlearn` run folder (its config.yaml names no method)")
    if "method" not in raw:
        raise DareUError(f"--run {run_dir} is an RL (dareu) run; its checkpoints are not supported yet. Measure "
                         "DareU's loss from a model instead: --method dareu --model M")
    if method and method != raw["method"]:
        raise DareUError(f"--method {method} but the run {run_dir} used {raw['method']}; drop --method")
    run_cfg = load_run_config(raw["method"], [f"params.{p}" for p in params or []], config=run / "config.yaml")
    if run_cfg.lora.enabled:
        raise DareUError(f"--run {run_dir} trained LoRA adapters; its checkpoints hold adapters only (not supported "
                         f"yet): measure its merged model with --model {run_dir}/model")
    start = resolve_model_dir(run_cfg.model or str(Path(run_cfg.world) / "models" / "target"))
    check_model_path(start)
    available = run_checkpoints(run, start)
    chosen = sorted(set(steps)) if steps else list(available)
    missing = [s for s in chosen if s not in available]
    if missing:
        raise DareUError(f"step {missing[0]} is beyond the run's checkpoints: {run / 'checkpoints'} has steps "
                         f"{', '.join(map(str, available))} (0 = the starting model); keep more with "
                         "train.save_steps / train.save_total_limit")
    data = load_world(run_cfg.world)
    retain_split = check_forget_split(run_cfg.split)
    check_instance_ids(cfg, data, run_cfg.split, retain_split)
    groups = group_names(num_blocks(AutoConfig.from_pretrained(start)))
    obj = run_cfg.params
    templates = run_cfg.data.templates if obj.needs_templates else None
    if templates:
        load_templates(data, templates)
    cfg.steps, cfg.max_steps = chosen, max(chosen)
    return Plan(cfg, run_cfg.method, obj, data, run_cfg.split, retain_split, start, chosen, max(chosen), groups,
                select_groups(cfg.layers, groups), templates, None, checkpoints={s: available[s] for s in chosen},
                world=run_cfg.world)


def load_weights(model, path: str) -> None:
    """Put a checkpoint's weights into `model` in place (the measured Parameter objects stay the same)."""
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(path, dtype=next(model.parameters()).dtype)
    model.load_state_dict(saved.state_dict())
