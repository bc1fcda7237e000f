"""The learner's body: what runs inside the Ray Train worker (or in-process for debugging).

Builds the policy, the reward (attribution scorer actor), the auxiliary terms and the learner; runs
it with checkpoints and periodic evaluation; saves the final model and the log into the run folder.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import torch

from dareu.data import load_world
from dareu.runs import write_json
from rl.config import DareUConfig
from rl.curves import CurveTracker
from rl.scorer import RemoteAttributor


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete `checkpoint-N` folder (TRL/transformers naming), or None. TRL writes
    trainer_state.json last (our PPO writes ppo_state.pt into an atomically renamed folder), so a
    folder without either is a save that was killed half-way and is skipped."""
    found = [(int(m.group(1)), p) for p in folder.glob("checkpoint-*")
             if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and p.is_dir()
             and ((p / "trainer_state.json").is_file() or (p / "ppo_state.pt").is_file())]
    return max(found)[1] if found else None


def checkpoint_step(path: Path) -> int:
    return int(path.name.split("-")[1])


def aux_data(cfg: DareUConfig, model, tok, data, split: str, templates: str | None = "idk"):
    """The forget and retain QA of the auxiliary terms: each forget answer's marked tokens (the owner-vs-stranger
    contrast of the starting `model`, or the fact column) and, for stranger_kl, the same QA told of a stranger."""
    from dareu.objectives import OBJECTIVES
    from dareu.unlearn import build_unlearn_data
    from dareu.unlearn.data import strangers_for

    forget_rows = list(data[split])
    marks = None
    if cfg.aux.forget_tokens == "contrast":  # from the starting model, also on resume
        from dareu.unlearn.gain import contrast_labels

        marks = contrast_labels(model, tok, forget_rows, cfg.aux.contrast_threshold, seed=cfg.seed)
    strangers = strangers_for(None if cfg.aux.forget == "none" else OBJECTIVES.get(cfg.aux.forget), forget_rows,
                              cfg.seed)  # stranger_kl: its anchors
    return build_unlearn_data(data, tok, split, templates=templates, marks=marks, strangers=strangers)


def train_loop(config: dict) -> None:
    """Entry point of the Ray Train worker. `config["cfg"]` is the run's typed DareUConfig (Ray pickles it); the
    rest are the resolved paths and the retain model's reference logs."""
    from dareu.evaluation import evaluate_model
    from dareu.evaluation.runner import world_eval_config
    from dareu.modeling import load_model, load_tokenizer
    from rl.learners import AttributionReward, build_learner

    cfg: DareUConfig = config["cfg"]
    run_dir = Path(config["run_dir"])
    from dareu import threads

    # the CPUs Ray gave the learner (OMP_NUM_THREADS in a Ray worker), unless the user said otherwise
    n = int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or config.get("threads", 1)
    threads.pin(max(1, n), "the learner's CPUs (placement.learner.num_cpus)")
    torch.manual_seed(cfg.seed)

    data = load_world(config["world"])
    split = config["split"]
    forget_rows = list(data[split])
    tok = load_tokenizer(config["model"])
    model = load_model(config["model"])
    peft_config = None
    if cfg.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=2 * cfg.lora_r, target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    attributor = RemoteAttributor(config["scorer"])
    forget_owners = sorted({r["owner"] for r in forget_rows})
    reward = AttributionReward(attributor.score, attributor.owners, forget_owners, cfg)
    reward.use_plausibility(model, tok, forget_rows)  # from the starting model, also on resume
    unlearn_data = aux_data(cfg, model, tok, data, split, config.get("templates"))
    if cfg.aux.general != "none":  # the starting model's own answers to general prompts join the retain QA
        unlearn_data.retain = (unlearn_data.retain or []) + general_rows(cfg, model, tok, run_dir)
    retain_logs = config.get("retain_logs")
    eval_cfg = world_eval_config(config["world"], fast=True)

    def evaluate(m):
        res = evaluate_model(m, tok, data, split, retain_logs=retain_logs, attributor=attributor, cfg=eval_cfg)
        return {k: v["agg_value"] for k, v in res.items() if isinstance(v, dict) and "agg_value" in v}

    tracker = CurveTracker(run_dir, evaluate, cfg.utility_floor, cfg.eval_every)
    ckpt_dir = run_dir / "checkpoints"
    resume = latest_checkpoint(ckpt_dir)
    start = time.time()
    if cfg.learner == "ppo":
        from rl.ppo_loop import run_ppo

        model, history = run_ppo(cfg, model, tok, forget_rows, reward, unlearn_data, tracker, ckpt_dir, resume,
                                 peft_config)
    else:
        trainer = build_learner(cfg, model, tok, reward, forget_rows, unlearn_data, ckpt_dir, peft_config)
        if resume is not None:
            trainer.aux_terms.skip(checkpoint_step(resume))
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # one compact progress line per step instead of raw dicts
        trainer.add_callback(_curve_callback(tracker, tok, trainer, cfg.max_steps))
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        model, history = trainer.model, trainer.state.log_history
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    final = run_dir / "model"
    tmp = run_dir / ".tmp-model"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    write_json(run_dir / "trainer_log.json", history)
    write_json(run_dir / "learner.json", {"seconds": time.time() - start, "resumed_from": resume.name if resume else None,
                                           "steps": max([e.get("step", 0) for e in history] + [0])})


def general_rows(cfg: DareUConfig, model, tok, run_dir: Path) -> list[dict]:
    """Encoded (prompt, the starting model's greedy answer) rows for aux.general, generated once per run (before
    the first step, so a resumed run reads the same answers from general.json)."""
    from dareu.data import general_prompts
    from dareu.generation import greedy_pairs
    from dareu.runs import read_json
    from dareu.unlearn.data import encode_rows

    path = run_dir / "general.json"
    if path.is_file():
        pairs = read_json(path)["pairs"]
    else:
        prompts = general_prompts(cfg.aux.general, "aux.general")  # checked against the data by launch.preflight
        pairs = greedy_pairs(model, tok, prompts, cfg.aux.general_max_new_tokens)
        write_json(path, {"source": cfg.aux.general, "pairs": pairs})
    return encode_rows(tok, [{"question": p, "answer": a} for p, a in pairs])


def _curve_callback(tracker, tok, trainer, max_steps: int):
    from transformers import TrainerCallback

    class Curves(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            if state.global_step == 0 and tracker.eval_every:
                trainer.log({**tracker.evaluate_now(trainer.model, tok, 0)})

        def on_step_end(self, args, state, control, **kw):
            step = state.global_step
            if tracker.due(step, last=step >= max_steps):
                trainer.log(tracker.evaluate_now(trainer.model, tok, step))

        def on_log(self, args, state, control, logs=None, **kw):
            if logs:
                tracker.log(state.global_step, logs)
                print(progress_line(state.global_step, max_steps, logs), flush=True)

    return Curves()


PROGRESS_KEYS = [("reward", "reward"), ("attribution_sampled", "attribution"), ("kl", "kl"),
                 ("aux/forget_loss", "forget"), ("aux/retain_loss", "retain"), ("score", "score"),
                 ("eval/forget_quality", "FQ"), ("eval/model_utility", "MU"), ("eval/fact_leakage", "leak"),
                 ("eval/forget_attribution", "attr")]


def progress_line(step: int, max_steps: int, logs: dict) -> str:
    parts = [f"{short} {logs[key]:.3g}" for key, short in PROGRESS_KEYS
             if isinstance(logs.get(key), (int, float))]
    return f"[dareu] step {step}/{max_steps}  " + "  ".join(parts)
