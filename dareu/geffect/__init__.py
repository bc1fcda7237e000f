"""G-effect toolkit (Wang et al., ICLR 2025): how an unlearning objective moves forget and retain risk.

    e(D) = <∇_θ L(θ), ∇_θ R(D; θ)>      R = mean answer NLL, L = the method's loss
    one SGD step θ ← θ − η∇L changes R(D) by ≈ −η·e(D)

The unlearning G-effect (D = forget data) is negative when the step forgets; the retaining G-effect
(D = retain data) is negative when it damages retained knowledge. Resolved per layer group
(embeddings, block_<i>, head), per term of the loss, per instance, and per step of an unlearning run.

API
---
    plan = plan_run(GEffectConfig(steps=[0, 10]), "npo", world=W)   # every input check (DareUError)
    result = run_geffect(plan, out)                                   # geffect.json + plots
    point = measure(model, method, batches, instances, params, groups) # G-effects at the current θ
    ObjectiveMethod(name, objective, ref) / DareULoss(...)             # what `measure` differentiates
    observe_gradients, GroupDots, CountSketch                          # parameter-by-parameter products

CLI: `dareu g-effect --world W --method NAME --out DIR` (dareu/commands/geffect.py).
"""

from dareu.geffect.config import EMA_NEW, EMA_OLD, GEffectConfig
from dareu.geffect.groups import group_of, measured_parameters, select_groups
from dareu.geffect.measure import Point, measure
from dareu.geffect.methods import ObjectiveMethod, risk
from dareu.geffect.probe import CountSketch, GroupDots, observe_gradients

__all__ = [
           "EMA_NEW",
           "EMA_OLD",
           "CountSketch",
           "GEffectConfig",
           "GroupDots",
           "ObjectiveMethod",
           "Point",
           "group_of",
           "measure",
           "measured_parameters",
           "observe_gradients",
           "risk",
           "select_groups",
]
