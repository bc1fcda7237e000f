"""The Objective base class: a typed set of parameters plus forget/retain terms computed from a model.

An objective is a dataclass (its fields are the method's parameters, with help text), so the same
class is the config section `params:` of `dareu unlearn` and the object the RL learner builds:
`OBJECTIVES.get("npo")(beta=0.1)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

import torch

from dareu.config import field
from dareu.errors import DareUError
from dareu.objectives.tokens import token_logprobs, token_mean
from dareu.registry import Registry

OBJECTIVES: Registry = Registry("objective")

Batch = dict[str, Any]
Metrics = dict[str, float]

# Key of the template sub-batch inside a forget batch: row i is forget question i with a template
# ("I don't know") answer. Present only for objectives with needs_templates.
TEMPLATE_KEY = "template"
MODEL_INPUTS = ("input_ids", "attention_mask")
# Key of the fact labels inside a QA batch: `labels` with every token outside the span that states the
# answer's fact (the world's `fact` column) masked. Present only where every answer of the split states one.
FACT_KEY = "fact_labels"
# The same forget QA told of a stranger (the owner's name swapped for a made-up one) as a sub-batch, and per
# answer position of the owner's QA the position of the same token in the stranger's (-100: none). Present
# only for objectives with needs_strangers.
STRANGER_KEY = "stranger"
STRANGER_POS_KEY = "stranger_positions"


class Reference(Protocol):
    """What objectives need from a reference model: outputs for a batch, without gradient."""

    def __call__(self, batch: Batch, hidden_states: bool = False) -> Any: ...


def register(name: str):
    """Class decorator: register an Objective subclass under `name` (and record the name on it)."""

    def add(cls):
        cls.name = name
        return OBJECTIVES.register(name)(cls)

    return add


def forward(model, batch: Batch, hidden_states: bool = False):
    """Run the model on a QA batch (labels are not passed: each objective reduces its own loss)."""
    return model(**{k: batch[k] for k in MODEL_INPUTS if k in batch}, output_hidden_states=hidden_states,
                 use_cache=False)


def need_reference(ref: Reference | None, who: str) -> Reference:
    if ref is None:
        raise DareUError(f"{who} needs a reference model (ref=...): pass make_reference(model) from dareu.unlearn")
    return ref


def need_templates(batch: Batch, who: str) -> Batch:
    if TEMPLATE_KEY not in batch:
        raise DareUError(f"{who} needs template answers: the forget batch has no {TEMPLATE_KEY!r} sub-batch "
                         "(build batches with templates, e.g. data.templates=idk)")
    return batch[TEMPLATE_KEY]


def need_facts(batch: Batch, who: str) -> torch.Tensor:
    if FACT_KEY not in batch:
        raise DareUError(f"{who} needs each forget answer's fact span: the forget batch has no {FACT_KEY!r} "
                         "(the split needs a `fact` column stated in every answer)")
    return batch[FACT_KEY]


def need_strangers(batch: Batch, who: str) -> tuple[Batch, torch.Tensor]:
    if STRANGER_KEY not in batch or STRANGER_POS_KEY not in batch:
        raise DareUError(f"{who} needs each forget QA told of a stranger: the forget batch has no {STRANGER_KEY!r} "
                         "sub-batch (build the data with strangers=...)")
    return batch[STRANGER_KEY], batch[STRANGER_POS_KEY]


def nll_metric(logp: torch.Tensor, mask: torch.Tensor) -> float:
    return float(-token_mean(logp.detach(), mask))


@dataclass
class Objective:
    """Base of every unlearning objective: L = γ·L_forget + α·L_retain."""

    gamma: float = field(1.0, help="γ: coefficient of the forget term.")
    alpha: float = field(0.0, help="α: coefficient of the retain term; 0 drops it (then no retain data is needed).")
    retain_kind: Literal["nll", "kl"] = field(
        "nll", help="Retain term: nll (cross-entropy of retain answers) or kl (KL(reference || model) over "
                    "retain answer tokens; needs the reference model).")

    name: ClassVar[str] = "objective"
    uses_reference: ClassVar[bool] = False  # the forget term itself needs reference outputs
    needs_templates: ClassVar[bool] = False  # the forget batch must carry a TEMPLATE_KEY sub-batch
    needs_facts: ClassVar[bool] = False  # the forget batch must carry FACT_KEY labels
    needs_strangers: ClassVar[bool] = False  # the forget batch must carry STRANGER_KEY and STRANGER_POS_KEY
    # which model `ref` is: "start" = the model before unlearning (the target); "base" = the world's model from
    # before it was fine-tuned on the owners, i.e. one that never saw them; "mix" = the two, their predictions mixed
    anchor: ClassVar[str] = "start"

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Reject parameters that make no sense (DareUError), before any training."""
        if self.retain_kind not in ("nll", "kl"):
            raise DareUError(f"{self.name}: retain_kind must be nll or kl, got {self.retain_kind!r}")

    @property
    def needs_retain(self) -> bool:
        return self.alpha != 0

    @property
    def needs_reference(self) -> bool:
        return self.uses_reference or (self.needs_retain and self.retain_kind == "kl")

    def forget_loss(self, model, batch: Batch, ref: Reference | None = None) -> tuple[torch.Tensor, Metrics]:
        raise NotImplementedError

    def retain_term(self, model, batch: Batch, ref: Reference | None = None) -> tuple[torch.Tensor, Metrics]:
        from dareu.objectives.retain import retain_loss

        return retain_loss(model, batch, self.retain_kind, ref)

    def loss(self, model, batch: Batch, ref: Reference | None = None) -> tuple[torch.Tensor, Metrics]:
        """γ·forget + α·retain for a paired batch {"forget": ..., "retain": ...}."""
        forget, metrics = self.forget_loss(model, batch["forget"], ref)
        total = self.gamma * forget
        metrics = {"forget_loss": float(forget.detach()), **metrics}
        if self.needs_retain:
            if batch.get("retain") is None:
                raise DareUError(f"{self.name} has a retain term (alpha={self.alpha}) but the batch has no retain data")
            retain, retain_metrics = self.retain_term(model, batch["retain"], ref)
            total = total + self.alpha * retain
            metrics.update({"retain_loss": float(retain.detach()), **retain_metrics})
        return total, metrics


def answer_logprobs(model, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(logp, mask) of the batch's answer tokens under `model` (with gradient)."""
    return token_logprobs(forward(model, batch).logits, batch["labels"])


def reference_logprobs(ref: Reference, batch: Batch) -> torch.Tensor:
    """Answer-token log-probs under the reference model (no gradient)."""
    with torch.no_grad():
        return token_logprobs(ref(batch).logits, batch["labels"])[0]
