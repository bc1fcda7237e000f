"""One G-effect run: check every input, run the method's own steps from the model, measure at chosen steps.

    plan = plan_run(cfg, method, world=W, split="forget10")     # every DareUError, before any model loads
    result = run_geffect(plan, out)                              # out/geffect.json, out/geffect_steps.png, ...

Each step of the run is one optimizer step on the method's loss (AdamW or SGD) over a fresh training
batch; at each chosen step the G-effects are measured on fixed measuring batches (the same at every
step, so steps compare) and on the chosen instances.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from dareu.config import to_dict
from dareu.data import check_forget_split, get_split, load_world
from dareu.errors import DareUError
from dareu.geffect.config import GEffectConfig
from dareu.geffect.groups import group_names, measured_parameters, num_blocks, select_groups
from dareu.geffect.measure import HELDOUT_KEY, TOTAL, Point, measure
from dareu.runs import write_json

SIGN_NOTE = ("G-effect e = <grad of the method's loss, grad of the NLL risk>. One SGD step of size lr changes the risk "
             "by about -lr*e. Negative unlearning G-effect = forget risk rises (forgetting); negative retaining "
             "G-effect = retain risk rises (damage).")


@dataclass
class Plan:
    """Everything checked before the model is loaded."""

    cfg: GEffectConfig
    method: str
    method_cfg: object  # the objective instance, or a provider's config (DareUConfig for method "dareu")
    data: object
    split: str
    retain_split: str
    model_path: str
    steps: list[int]
    max_steps: int
    groups: list[str]  # every layer group of the model
    layers: list[str]  # the measured ones
    templates: str | None
    attributor: str | None
    checkpoints: dict[int, str] | None = None  # step -> model folder when measuring a finished run (no training)
    world: str | None = None  # the world folder, for a forget term anchored at its base model


def forget_objective(plan_method: str, method_cfg):
    """The objective whose forget term the method runs: the objective itself, or a provider's (DareU's aux.forget)."""
    from dareu.geffect.methods import PROVIDERS

    if plan_method in PROVIDERS:
        return PROVIDERS.get(plan_method).forget_objective(method_cfg)
    return method_cfg


def check_steps(steps: list[int], max_steps: int) -> tuple[list[int], int]:
    if not steps:
        raise DareUError("--steps is empty; give steps like 0,10,20")
    if any(s < 0 for s in steps):
        raise DareUError(f"--steps must be >= 0, got {','.join(map(str, steps))}")
    steps = sorted(set(steps))
    if max_steps < 0:
        raise DareUError(f"max_steps must be >= 0, got {max_steps}")
    run_length = max_steps or steps[-1]
    beyond = [s for s in steps if s > run_length]
    if beyond:
        raise DareUError(f"step {beyond[0]} is beyond the run's {run_length} steps (max_steps={run_length}); "
                         f"choose steps in 0..{run_length} or raise max_steps")
    return steps, run_length


def _method_config(method: str, params: list[str]):
    """The method's parameters, with the same defaults `dareu unlearn` uses: a provider's config (DareU's
    DareUConfig) or the objective's. `params` are key=value pairs without the `params.` prefix."""
    from dareu.geffect.methods import PROVIDERS

    if method in PROVIDERS:
        return PROVIDERS.get(method).config(params)
    from dareu.unlearn import load_run_config

    return load_run_config(method, [f"params.{p}" for p in params]).params


def plan_run(cfg: GEffectConfig, method: str, world: str | None = None, split: str = "forget10",
             model: str | None = None, params: list[str] | None = None, attributor: str | None = None,
             data=None) -> Plan:
    """Check the inputs (one clear line each) without loading weights."""
    from transformers import AutoConfig

    from dareu.modeling import check_model_path, resolve_model_dir
    from dareu.unlearn.data import load_templates

    steps, max_steps = check_steps(list(cfg.steps), cfg.max_steps)
    for key in ("batch_size", "measure_batches"):
        if getattr(cfg, key) < 1:
            raise DareUError(f"{key} must be >= 1, got {getattr(cfg, key)}")
    if cfg.instances < 0 or cfg.projection_dim < 0:
        raise DareUError("instances and projection_dim must be >= 0")
    if not cfg.learning_rate > 0:
        raise DareUError(f"learning_rate must be > 0, got {cfg.learning_rate}")
    from dareu.geffect.methods import PROVIDERS

    method_cfg = _method_config(method, list(params or []))
    provider = PROVIDERS.get(method) if method in PROVIDERS else None
    if attributor and not (provider and provider.takes_attributor):
        raise DareUError(f"--attributor is the reward of --method dareu; {method} does not use it")
    if attributor and not Path(attributor).exists():
        raise DareUError(f"--attributor {attributor} does not exist; train one with `dareu train-attributor`")
    if not world and (data is None or not model):
        raise DareUError("give --world W (a folder made by `dareu prepare`): its data and, by default, its "
                         "target model")
    if data is None:
        data = load_world(world)
    retain_split = check_forget_split(split)
    if len(get_split(data, split)) == 0:
        raise DareUError(f"split {split!r} is empty; nothing to forget")
    check_instance_ids(cfg, data, split, retain_split)
    model_path = resolve_model_dir(model or str(Path(world) / "models" / "target"))
    check_model_path(model_path)
    groups = group_names(num_blocks(AutoConfig.from_pretrained(model_path)))
    layers = select_groups(cfg.layers, groups)
    needs_templates = provider.needs_templates(method_cfg) if provider else method_cfg.needs_templates
    templates = cfg.templates if needs_templates else None
    if templates:
        load_templates(data, templates)
    forget = forget_objective(method, method_cfg)
    if forget is not None and forget.anchor != "start":
        from dareu.unlearn.reference import base_path

        if not world:
            raise DareUError(f"{method}'s forget term reads the world's base model; give --world W")
        base_path(world)
    if forget is not None and forget.needs_strangers:
        from dareu.unlearn.gain import check_owner_names

        check_owner_names(data, split)
    return Plan(cfg, method, method_cfg, data, split, retain_split, model_path, steps, max_steps, groups, layers,
                templates, attributor, world=world)


def check_instance_ids(cfg: GEffectConfig, data, split: str, retain_split: str) -> None:
    for key, name in (("forget_ids", split), ("retain_ids", retain_split)):
        size = len(get_split(data, name))
        bad = [i for i in getattr(cfg, key) if not 0 <= i < size]
        if bad:
            raise DareUError(f"{key}: row {bad[0]} is not in {name} (rows 0..{size - 1})")


# ---- the run ------------------------------------------------------------------------------------

def to_device(batch, dev):
    if isinstance(batch, dict):
        return {k: to_device(v, dev) for k, v in batch.items()}
    return batch.to(dev) if isinstance(batch, torch.Tensor) else batch


def load(plan: Plan):
    from dareu.modeling import device, load_model, load_tokenizer

    dtype = {"float32": torch.float32, "float64": torch.float64}.get(plan.cfg.dtype)
    if dtype is None:
        dtype = None if torch.cuda.is_available() else torch.float32
    model = load_model(plan.model_path, dtype=torch.float32 if dtype == torch.float64 else dtype)
    if dtype == torch.float64:
        model = model.double()
    return model.to(device()), load_tokenizer(plan.model_path)


def build_method(plan: Plan, model, tok):
    """The method object and whether it needed a reference (a frozen copy of the starting model)."""
    from dareu.geffect.methods import PROVIDERS, ObjectiveMethod
    from dareu.unlearn import make_reference
    from dareu.unlearn.reference import reference_for

    forget = forget_objective(plan.method, plan.method_cfg)
    if plan.method in PROVIDERS:
        rows = [dict(r) for r in plan.data[plan.split]]
        method = PROVIDERS.get(plan.method).build(plan.method_cfg, tok, rows, make_reference(model), plan.attributor,
                                                  model)
        if forget is not None and forget.anchor != "start":
            method.forget_ref = reference_for(forget, model, plan.world, start=method.ref)
        return method
    return ObjectiveMethod(plan.method, forget, reference_for(forget, model, plan.world))


def make_optimizer(cfg: GEffectConfig, model):
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.learning_rate)
    return torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)


def train_step(model, method, batch: dict, optimizer, max_grad_norm: float = 0.0) -> dict:
    """One step of the method: descend its whole loss on `batch` (already prepared)."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss, metrics = method.loss(model, batch)
    loss.backward()
    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {"loss": float(loss.detach()), **{k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}}


def paired_batches(udata, batch_size: int, seed: int, heldout: bool = False):
    """Endless paired batches whose forget/retain rows depend only on the seed, not on the method.

    `UnlearnData.batches` draws template indices from the same generator as the retain rows, so a
    template method (flat) would see other retain rows than ga; here templates come from their own
    generator and every method is measured on the same QA. With `heldout`, each batch also carries
    HELDOUT_KEY: as many other retain QA, none of them in the batch's retain term."""
    from dareu.sft import QACollator
    from dareu.unlearn.data import UnlearnCollator

    plain = dataclasses.replace(udata, templates=None)
    pick, held = random.Random(seed + 1), random.Random(seed + 2)  # templates and held-out rows: own streams
    collate, qa = UnlearnCollator(udata.tok.pad_token_id), QACollator(udata.tok.pad_token_id)
    rows = max(batch_size, len(udata.forget)) * 4
    for epoch in itertools.count():
        schedule = plain.schedule(rows, seed + epoch)
        for start in range(0, rows - batch_size + 1, batch_size):
            chunk = schedule[start:start + batch_size]
            batch = collate([udata.row((f, r, pick.randrange(len(udata.templates)) if udata.templates else None))
                             for f, r, _ in chunk])
            if heldout:
                used = {r for _, r, _ in chunk}
                others = [i for i in range(len(udata.retain)) if i not in used]
                batch[HELDOUT_KEY] = qa([{k: udata.retain[i][k] for k in ("input_ids", "labels")}
                                         for i in held.sample(others, min(batch_size, len(others)))])
            yield batch


def choose_instances(plan: Plan, udata, dev) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """Risk batches of single QA ("forget/<i>", "retain/<j>") and their descriptions."""
    from dareu.sft import QACollator

    cfg = plan.cfg
    collate = QACollator(udata.tok.pad_token_id)
    batches, meta = {}, {"forget": [], "retain": []}
    rng = random.Random(cfg.seed)
    for kind, items, rows, ids in (("forget", udata.forget, plan.data[plan.split], cfg.forget_ids),
                                   ("retain", udata.retain, plan.data[plan.retain_split], cfg.retain_ids)):
        chosen = ids or rng.sample(range(len(items)), min(cfg.instances, len(items)))
        for i in sorted(set(chosen)):
            batches[f"{kind}/{i}"] = to_device(collate([{k: items[i][k] for k in ("input_ids", "labels")}]), dev)
            meta[kind].append({"index": i, "qa_id": rows[i].get("qa_id", ""), "question": items[i]["question"]})
    return batches, meta


def summarize(point: Point, step: int, layers: list[str], meta: dict[str, list[dict]]) -> dict:
    """One step's entry of geffect.json: totals, per group and per term, for both risks, and per instance."""

    def effect(risk_name: str) -> dict:
        per_term = {t: point.effects[t][risk_name] for t in point.effects}
        groups = {g: sum(v[g] for v in per_term.values()) for g in layers}
        return {"total": sum(groups.values()), "groups": groups,
                "terms": {t: sum(v.values()) for t, v in per_term.items()}}

    def instance(kind: str, m: dict) -> dict:
        e = effect(f"{kind}/{m['index']}")
        return {**m, "g_effect": e["total"], "terms": e["terms"], "risk": point.risks[f"{kind}/{m['index']}"]}

    return {"step": step, "unlearning": effect("forget"), "retaining": effect("retain"),
            "instances": {kind: [instance(kind, m) for m in meta[kind]] for kind in ("forget", "retain")},
            "forget_risk": point.risks["forget"], "retain_risk": point.risks["retain"],
            "risk_grad_sq": {r: sum(point.risk_sq[r].values()) for r in ("forget", "retain")},
            "losses": point.losses, "metrics": point.metrics}


def run_geffect(plan: Plan, out: str | Path, log=print) -> dict:
    """Run the method's steps from the model and measure at `plan.steps`; write geffect.json and plots."""
    from dareu.modeling import device
    from dareu.unlearn.data import build_unlearn_data, strangers_for

    cfg, out = plan.cfg, Path(out)
    torch.manual_seed(cfg.seed)
    model, tok = load(plan)
    dev = device()
    method = build_method(plan, model, tok)
    # stranger_kl: each forget QA also told of a stranger
    strangers = strangers_for(forget_objective(plan.method, plan.method_cfg), get_split(plan.data, plan.split), cfg.seed)
    udata = build_unlearn_data(plan.data, tok, plan.split, plan.retain_split, plan.templates, cfg.max_length or None,
                               strangers=strangers)
    train_batches = paired_batches(udata, cfg.batch_size, seed=cfg.seed)
    # fixed across steps and methods; the retain risk on other retain QA than the loss's retain term fits
    measure_iter = paired_batches(udata, cfg.batch_size, seed=cfg.seed + 7919, heldout=cfg.retain_risk == "heldout")
    measuring = [to_device(next(measure_iter), dev) for _ in range(cfg.measure_batches)]
    instances, meta = choose_instances(plan, udata, dev)
    params = measured_parameters(model, plan.layers)
    optimizer = make_optimizer(cfg, model)
    records, log_history = [], []
    for step in range(plan.max_steps + 1):
        if plan.checkpoints and step in plan.checkpoints and step:
            from dareu.geffect.checkpoints import load_weights

            load_weights(model, plan.checkpoints[step])
        if step in plan.steps:
            point = measure(model, method, measuring, instances, params, plan.layers, cfg.by_term, cfg.ema,
                            cfg.projection_dim, cfg.seed, prepare_seed=cfg.seed * 100_003 + 1_000_000 + step * 101)
            records.append(summarize(point, step, plan.layers, meta))
            r = records[-1]
            log(f"step {step}: unlearning G-effect {r['unlearning']['total']:+.4g}, "
                f"retaining {r['retaining']['total']:+.4g}"
                f" (forget NLL {r['forget_risk']:.3f}, retain NLL {r['retain_risk']:.3f})")
        if step == plan.max_steps or plan.checkpoints:
            continue  # a finished run's checkpoints: nothing to train
        batch = method.prepare(model, to_device(next(train_batches), dev), cfg.seed * 100_003 + step)
        log_history.append({"step": step + 1, **train_step(model, method, batch, optimizer, cfg.max_grad_norm)})
    result = {"method": plan.method, "params": method.params(), "model": plan.model_path, "split": plan.split,
              "checkpoints": plan.checkpoints,
              "retain_split": plan.retain_split, "config": to_dict(cfg), "sign": SIGN_NOTE,
              "groups": plan.groups, "measured_groups": plan.layers, "terms": _term_names(method, cfg.by_term),
              "tied_embeddings": bool(getattr(model.config, "tie_word_embeddings", False)),
              "projection": ({"kind": "countsketch", "dim": cfg.projection_dim} if cfg.projection_dim else None),
              "steps": records, "log_history": log_history}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "geffect.json", result)
    from dareu.geffect.plots import plot_heatmap, plot_steps

    plot_steps(result, out / "geffect_steps.png")
    plot_heatmap(result, out / "geffect_layers.png")
    return result


def _term_names(method, by_term: bool) -> list[str]:
    return method.term_names() if by_term else [TOTAL]
