"""One `dareu unlearn` run: check the inputs, train, and write the run folder.

R/config.yaml (resolved config), R/status.json (running/done/failed), R/checkpoints/, R/trainer_log.json,
R/model/ (safetensors + tokenizer; LoRA merged in), R/adapter/ (LoRA only).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

from dareu.config import from_dict, read_yaml, save_config, to_dict
from dareu.data import get_split, load_world, retain_of
from dareu.errors import DareUError
from dareu.runs import check_same_config, claim_run_dir, get_status, set_status, write_json
from dareu.unlearn.config import run_config_class


@dataclasses.dataclass
class Plan:
    """Everything checked before any model is loaded."""

    cfg: object
    data: object  # the world's DatasetDict
    retain_split: str | None
    model_path: str
    tok: object  # loaded here: a folder without a usable tokenizer fails before the run folder is touched
    max_steps: int


def check_run(cfg) -> Plan:
    """Cheap checks of a run config, each failing with one clear line (DareUError)."""
    from dareu.modeling import check_model_path, load_tokenizer, resolve_model_dir
    from dareu.unlearn.data import check_facts, load_templates, resolve_retain_split

    obj = cfg.params
    if not cfg.world:
        raise DareUError("no world given; pass --world W (a folder made by `dareu prepare`)")
    data = load_world(cfg.world)
    forget = get_split(data, cfg.split)
    retain_split = None
    if obj.needs_retain:
        if cfg.data.retain_split == "none":
            raise DareUError(f"{cfg.method} has a retain term (params.alpha={obj.alpha}) but data.retain_split=none; "
                             f"give a retain split (e.g. data.retain_split=auto) or set params.alpha=0")
        retain_split = resolve_retain_split(data, cfg.split, cfg.data.retain_split)
    if obj.needs_templates:
        load_templates(data, cfg.data.templates)
    if obj.needs_facts:
        check_facts(data, cfg.split, cfg.method)
    if obj.anchor != "start":
        from dareu.unlearn.reference import base_path

        base_path(cfg.world)
    if obj.needs_strangers:
        from dareu.unlearn.gain import check_owner_names

        check_owner_names(data, cfg.split)
    model_path = resolve_model_dir(cfg.model or str(Path(cfg.world) / "models" / "target"))
    check_model_path(model_path)
    tok = load_tokenizer(model_path)
    t = cfg.train
    if t.batch_size < 1 or t.grad_accum < 1:
        raise DareUError("train.batch_size and train.grad_accum must be >= 1")
    max_steps = t.max_steps or math.ceil(t.epochs * len(forget) / (t.batch_size * t.grad_accum))
    if max_steps < 1:
        raise DareUError("no training steps: set train.max_steps >= 1 or train.epochs > 0")
    return Plan(cfg, data, retain_split, model_path, tok, max_steps)


def check_resume(out: Path, cfg, cls: type) -> bool:
    """True when `out` holds a finished run. The saved config (read as `cls`) must match `cfg`, the one asked
    for, method included; it is never rewritten. Both the loss-based and the RL launcher resume through it."""
    saved_path = out / "config.yaml"
    if not saved_path.is_file():
        raise DareUError(f"--resume: {out} holds no config.yaml; it is not an unlearn run folder")
    saved = read_yaml(saved_path)
    if saved.get("method") != cfg.method:
        raise DareUError(f"--resume: {out} is a run of {saved.get('method')!r}, not {cfg.method!r}; resume it with "
                         f"--method {saved.get('method')} or choose another --out")
    check_same_config(to_dict(from_dict(cls, saved)), to_dict(cfg), saved_path)
    return get_status(out).get("state") == "done"


def last_checkpoint(out: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    folder = Path(out) / "checkpoints"
    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def prepare_model(plan: Plan):
    """Load model and tokenizer, add LoRA or freeze parameters, build the reference if needed."""
    import torch

    from dareu.modeling import load_model
    from dareu.unlearn.lora import apply_lora, freeze_except
    from dareu.unlearn.reference import reference_for

    cfg = plan.cfg
    tok = plan.tok
    model = load_model(plan.model_path, dtype=None if torch.cuda.is_available() else torch.float32)
    if cfg.lora.enabled:
        model = apply_lora(model, cfg.lora)
    elif cfg.train.trainable:
        freeze_except(model, cfg.train.trainable)
    ref = reference_for(cfg.params, model, cfg.world)
    return model, tok, ref


def build_trainer(plan: Plan, model, tok, ref, out: Path, callbacks=None):
    from dareu.sft import TrainConfig, training_args
    from dareu.unlearn.data import UnlearnCollator, build_unlearn_data
    from dareu.unlearn.trainer import UnlearnTrainer

    cfg, t = plan.cfg, plan.cfg.train
    strangers = None
    if cfg.params.needs_strangers:
        from dareu.world_vocab import stranger_names

        strangers = stranger_names(4, set(get_split(plan.data, cfg.split)["owner"]), cfg.train.seed)
    udata = build_unlearn_data(plan.data, tok, cfg.split, plan.retain_split or "none",
                               cfg.data.templates if cfg.params.needs_templates else None,
                               cfg.data.max_length or None, strangers=strangers)
    rows = plan.max_steps * t.batch_size * t.grad_accum
    base = TrainConfig(epochs=1.0, batch_size=t.batch_size, learning_rate=t.learning_rate,
                       warmup_ratio=t.warmup_ratio, weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm,
                       seed=t.seed)
    args = training_args(str(out / "checkpoints"), base, max_steps=plan.max_steps,
                         gradient_accumulation_steps=t.grad_accum, lr_scheduler_type=t.lr_scheduler, optim=t.optim,
                         save_strategy="steps", save_steps=t.save_steps, save_total_limit=t.save_total_limit,
                         logging_steps=t.logging_steps, disable_tqdm=True)
    return UnlearnTrainer(model=model, args=args, train_dataset=udata.dataset(rows, t.seed),
                          data_collator=UnlearnCollator(tok.pad_token_id), objective=cfg.params, ref=ref,
                          callbacks=callbacks)


def _probe(plan: Plan, model, tok) -> dict:
    """Mean normalised answer probability on a few forget and retain QA (status.json before/after)."""
    from dareu.unlearn.probe import mean_probability

    n = plan.cfg.train.probe_qa
    if n <= 0:
        return {}
    out = {"forget_prob": mean_probability(model, tok, plan.data[plan.cfg.split], n)}
    retain = plan.retain_split or retain_of(plan.cfg.split)
    if retain in plan.data:
        out["retain_prob"] = mean_probability(model, tok, plan.data[retain], n)
    return out


def run_unlearn(cfg, out: str | Path, overwrite: bool = False, resume: bool = False, callbacks=None,
                console=None) -> dict:
    """Unlearn per `cfg` into run folder `out`; returns the summary also written to status.json."""
    say = console.print if console is not None else (lambda *a, **k: None)
    plan = check_run(cfg)
    out = Path(out)
    checkpoint, before = None, {}
    out, existed = claim_run_dir(out, "unlearn", overwrite=overwrite, resume=resume)
    if existed:
        if check_resume(out, cfg, run_config_class(cfg.method)):
            say(f"{out} is already done; nothing to resume")
            return get_status(out)
        checkpoint = last_checkpoint(out)
        before = get_status(out).get("before", {})
    else:
        save_config(cfg, out / "config.yaml")
    set_status(out, "running", resumed_from=checkpoint, before=before)
    start = time.time()

    model, tok, ref = prepare_model(plan)
    if checkpoint is None:
        before = _probe(plan, model, tok)
        set_status(out, "running", before=before)
    trainer = build_trainer(plan, model, tok, ref, out, callbacks)
    say(f"unlearning {cfg.split} with {cfg.method} for {plan.max_steps} steps"
        f"{' (resuming ' + Path(checkpoint).name + ')' if checkpoint else ''}")
    from dareu.unlearn.trainer import NonFiniteLoss

    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    except NonFiniteLoss as err:
        write_json(out / "trainer_log.json", trainer.state.log_history)
        kept = last_checkpoint(out)
        reason = f"loss is {err.value} at step {err.step}; stopped"
        set_status(out, "failed", reason=reason, step=err.step, last_checkpoint=kept, before=before)
        raise DareUError(f"{reason}, last checkpoint kept: {kept or 'none (no checkpoint was written yet)'}") from None
    except BaseException as err:
        write_json(out / "trainer_log.json", trainer.state.log_history)
        set_status(out, "failed", reason=f"{type(err).__name__}: {err}", step=trainer.state.global_step,
                   last_checkpoint=last_checkpoint(out), before=before)
        raise
    write_json(out / "trainer_log.json", trainer.state.log_history)

    from dareu.unlearn.lora import save_final_model

    after = _probe(plan, trainer.model, tok)
    save_final_model(trainer.model, tok, out)
    summary = {"method": cfg.method, "steps": trainer.state.global_step, "seconds": round(time.time() - start, 2),
               "before": before, "after": after, "model": str(out / "model"), "resumed_from": checkpoint}
    set_status(out, "done", **summary)
    return summary
