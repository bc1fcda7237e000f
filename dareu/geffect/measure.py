"""G-effects at one point θ: e(D) = <∇_θ L, ∇_θ R(D)>, per term of L, per risk, per layer group.

Risks: "forget" (NLL of the batch's forget answers: the unlearning G-effect), "retain" (NLL of retain
answers: the retaining G-effect; held-out ones when the batch carries HELDOUT_KEY, else the paired
ones), and one per chosen instance ("forget/3", "retain/17").
Sign: one SGD step θ ← θ − η∇L changes R by ≈ −η·e (first order), so a negative unlearning G-effect
raises the forget risk (forgetting) and a negative retaining G-effect raises the retain risk (damage).

Several measuring batches are combined by their mean, or by the official EMA (0.6 old / 0.4 new).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dareu.geffect.config import EMA_NEW, EMA_OLD
from dareu.geffect.methods import qa_only, risk
from dareu.geffect.probe import CountSketch, GroupDots, GroupSketches, Params, observe_gradients

TOTAL = "total"  # the single term when terms are not split
HELDOUT_KEY = "retain_heldout"  # retain QA for the retain risk, apart from those the loss's retain term fits


@dataclass
class Point:
    """Measurements at one θ, nested dicts of floats: effects[term][risk][group], risk_sq[risk][group]
    (|∇R|² per group), risks[risk] (R's value), losses[term] (the term's value), metrics (the method's)."""

    effects: dict
    risk_sq: dict
    risks: dict
    losses: dict
    metrics: dict


def blend(old, new, a: float, b: float):
    """a·old + b·new through nested dicts (keys only in `new` are taken as they are)."""
    if isinstance(new, dict):
        return {k: blend(old[k], v, a, b) if isinstance(old, dict) and k in old else v for k, v in new.items()}
    return a * old + b * new


def risk_batches(batch: dict, instances: dict[str, dict]) -> dict[str, dict]:
    """The forget risk on the batch's own forget QA; the retain risk on its held-out retain QA when it has them."""
    return {"forget": qa_only(batch["forget"]), "retain": batch.get(HELDOUT_KEY, batch["retain"]), **instances}


def _terms(method, by_term: bool) -> list[str]:
    return method.term_names() if by_term else [TOTAL]


def _term_loss(method, model, batch, term: str):
    return method.loss(model, batch) if term == TOTAL else method.term_loss(model, batch, term)


def _floats(metrics: dict) -> dict:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


def exact_point(model, method, batch: dict, risks: dict[str, dict], params: Params, groups: list[str],
                by_term: bool) -> Point:
    """Exact inner products: backward the term (∇L stays in .grad), then each risk through the hooks."""
    effects, risk_sq, risk_values, losses, metrics = {}, {}, {}, {}, {}
    for term in _terms(method, by_term):
        model.zero_grad(set_to_none=True)
        loss, m = _term_loss(method, model, batch, term)
        if loss.requires_grad:  # a term with no path to the measured parameters has zero G-effect
            loss.backward()
        losses[term], metrics = float(loss.detach()), {**metrics, **_floats(m)}
        effects[term] = {}
        for name, rb in risks.items():
            dots = GroupDots()
            with observe_gradients(params, dots):
                r = risk(model, rb)
                r.backward()
            effects[term][name], sq = dots.values(groups)
            risk_sq.setdefault(name, sq)
            risk_values.setdefault(name, float(r.detach()))
    model.zero_grad(set_to_none=True)
    return Point(effects, risk_sq, risk_values, losses, metrics)


@dataclass
class SketchPoint:
    """Sketched gradients at one θ: terms[term][group] and risks[risk][group] are K-vectors."""

    terms: dict
    risk_vectors: dict
    risk_sq: dict
    risks: dict
    losses: dict
    metrics: dict

    def point(self) -> Point:
        effects = {t: {r: {g: float(torch.dot(tv[g], rv[g])) for g in tv} for r, rv in self.risk_vectors.items()}
                   for t, tv in self.terms.items()}
        return Point(effects, self.risk_sq, self.risks, self.losses, self.metrics)


def sketch_point(model, method, batch: dict, risks: dict[str, dict], params: Params, groups: list[str],
                 by_term: bool, sketch: CountSketch) -> SketchPoint:
    """Every gradient (each term, each risk) reduced to K numbers per group as backward produces it."""
    index = {name: i for i, name in enumerate(params)}
    terms, risk_vectors, risk_sq, risk_values, losses, metrics = {}, {}, {}, {}, {}, {}
    model.zero_grad(set_to_none=True)
    for term in _terms(method, by_term):
        sk = GroupSketches(sketch, index)
        with observe_gradients(params, sk):
            loss, m = _term_loss(method, model, batch, term)
            if loss.requires_grad:
                loss.backward()
        terms[term], _ = sk.values(groups)
        losses[term], metrics = float(loss.detach()), {**metrics, **_floats(m)}
    for name, rb in risks.items():
        sk = GroupSketches(sketch, index)
        with observe_gradients(params, sk):
            r = risk(model, rb)
            r.backward()
        risk_vectors[name], risk_sq[name] = sk.values(groups)
        risk_values[name] = float(r.detach())
    model.zero_grad(set_to_none=True)
    return SketchPoint(terms, risk_vectors, risk_sq, risk_values, losses, metrics)


def measure(model, method, batches: list[dict], instances: dict[str, dict], params: Params, groups: list[str],
            by_term: bool = True, ema: bool = False, projection_dim: int = 0, seed: int = 0,
            prepare_seed: int = 0) -> Point:
    """G-effects at the model's current θ over `batches` (mean, or EMA across them), measured groups only.

    Parameters outside `params` get no weight gradient while measuring; their requires_grad is restored."""
    kept = {name: p.requires_grad for name, p in model.named_parameters()}
    measured = {id(p) for p, _ in params.values()}
    for p in model.parameters():
        p.requires_grad_(id(p) in measured)
    was_training = model.training
    model.eval()  # deterministic G-effects (dropout off); the run's steps use train mode
    sketch = CountSketch(projection_dim, seed) if projection_dim else None
    acc = None
    try:
        for i, batch in enumerate(batches):
            batch = method.prepare(model, batch, prepare_seed + i)
            risks = risk_batches(batch, instances)
            if sketch is None:
                new = exact_point(model, method, batch, risks, params, groups, by_term)
            else:
                new = sketch_point(model, method, batch, risks, params, groups, by_term, sketch)
                if not ema:  # mean of per-batch products; with EMA the sketches themselves are smoothed
                    new = new.point()
            if acc is None:
                acc = new
            else:
                a, b = (EMA_OLD, EMA_NEW) if ema else (i / (i + 1), 1 / (i + 1))
                acc = type(acc)(**{k: blend(getattr(acc, k), getattr(new, k), a, b) for k in acc.__dataclass_fields__})
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(kept[name])
        model.train(was_training)
    return acc.point() if isinstance(acc, SketchPoint) else acc
