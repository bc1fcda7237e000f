"""The reference model both trainers use: a frozen copy, or under LoRA the same model with adapters off."""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path

import torch

from dareu.objectives.base import Batch, forward


def is_peft(model) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


class RefModel:
    """Outputs of the reference policy for a batch, never with gradient.

    `RefModel(module)` calls `module` as it is (a frozen copy); `RefModel(peft_model, adapters_off=True)`
    calls the trained model inside `disable_adapter()`, i.e. the base weights, so LoRA runs hold one copy.
    """

    def __init__(self, module, adapters_off: bool = False):
        self.module = module
        self.adapters_off = adapters_off

    @contextlib.contextmanager
    def _active(self):
        if not self.adapters_off:
            yield
            return
        was_training = self.module.training
        self.module.eval()  # no dropout in reference outputs
        try:
            with self.module.disable_adapter():
                yield
        finally:
            self.module.train(was_training)

    def __call__(self, batch: Batch, hidden_states: bool = False):
        with torch.no_grad(), self._active():
            return forward(self.module, batch, hidden_states)


def make_reference(model) -> RefModel:
    """The reference for `model` as it is now: adapters disabled under peft, else a frozen deep copy."""
    if is_peft(model):
        return RefModel(model, adapters_off=True)
    frozen = copy.deepcopy(model).eval()
    frozen.requires_grad_(False)
    return RefModel(frozen)


def base_path(world) -> Path:
    """The world's model from before the fine-tune on the owners (what an `anchor = "base"` objective needs)."""
    from dareu.errors import DareUError

    path = Path(world) / "models" / "base"
    if not (path / "config.json").is_file():
        raise DareUError(f"world {world} has no models/base (the model before the fine-tune on the owners), which "
                         "this forget objective distills back to; rebuild the world with `dareu prepare`")
    return path


def mixed_logits(start_logits: torch.Tensor, base_logits: torch.Tensor, base_weight: float) -> torch.Tensor:
    """(1 − w)·log_softmax(start) + w·log_softmax(base): the geometric mixture of two next-token distributions
    (unnormalised; a log_softmax of it is the mixture)."""
    return (1 - base_weight) * start_logits.float().log_softmax(-1) + base_weight * base_logits.float().log_softmax(-1)


class MixedRef:
    """Two references read as one, their logits mixed by `mixed_logits`. `.module` is the start's (what a KL retain
    term reads)."""

    def __init__(self, start: RefModel, base: RefModel, base_weight: float):
        self.start, self.base, self.w = start, base, base_weight
        self.module = start.module

    def __call__(self, batch: Batch, hidden_states: bool = False):
        out = self.start(batch, hidden_states)
        out.logits = mixed_logits(out.logits, self.base(batch).logits, self.w)
        return out


def reference_for(objective, model, world, start: RefModel | None = None) -> RefModel | MixedRef | None:
    """The reference `objective` reads: none, the model as it is now ("start"), the world's base, frozen ("base"),
    or the two mixed ("mix", weighted by the objective's `base_weight`). `start`: a reference of `model` the
    caller already holds (the RL learner's, TRL's frozen copy), used instead of another copy."""
    if not objective.needs_reference:
        return None
    if objective.anchor == "start":
        return start or make_reference(model)
    from dareu.modeling import load_model

    base = load_model(str(base_path(world)), dtype=next(model.parameters()).dtype)
    base.to(next(model.parameters()).device).eval().requires_grad_(False)
    if objective.anchor == "mix":
        return MixedRef(start or make_reference(model), RefModel(base), objective.base_weight)
    return RefModel(base)
