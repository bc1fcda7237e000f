"""UNDIAL (self-distillation with the true token's logit lowered), RMU (representation misdirection),
fact_base (the marked tokens distilled back to the model that never saw the owners) and stranger_kl (the
marked tokens distilled to what the starting model says of a stranger in the same sentence)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from dareu.config import field
from dareu.errors import DareUError
from dareu.objectives.base import (
    Objective,
    forward,
    need_facts,
    need_reference,
    need_strangers,
    nll_metric,
    register,
)
from dareu.objectives.retain import kl_loss
from dareu.objectives.tokens import shift, token_logprobs, token_mean

# ---- pure functions ---------------------------------------------------------------------------


def undial_loss(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor, beta: float) -> torch.Tensor:
    """Cross-entropy to softmax(ref_logits − β·onehot(y_t)), averaged over answer tokens.

    open-unlearning's `compute_undial_loss` averages over every position and, at masked positions,
    indexes the one-hot with -100 (which wraps to a real token); we keep answer tokens only.
    """
    logits, labels = shift(logits, labels)
    mask = labels != -100
    onehot = F.one_hot(labels.masked_fill(~mask, 0), logits.shape[-1]).float()
    target = (ref_logits[:, :-1].float() - beta * onehot).softmax(-1)
    ce = -(target * logits.float().log_softmax(-1)).sum(-1)
    return token_mean(ce, mask)


def hidden_mse(hidden: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """mean_d (h − target)² per token, averaged over each sequence's masked tokens, then over the batch
    (open-unlearning RMU `compute_activation_loss`)."""
    per_token = (hidden.float() - target.float()).pow(2).mean(-1)
    return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()


def control_vector(dim: int, coeff: float, seed: int) -> torch.Tensor:
    """RMU's fixed random direction: uniform [0,1)^d, normalised, times the steering coefficient."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(dim, generator=gen)
    return u / u.norm() * coeff


def decoder_blocks(model) -> torch.nn.ModuleList:
    """The transformer blocks of a causal LM: Qwen2/Llama `model.layers`, GPT-2 `transformer.h`, under any
    wrapper (peft, DDP), found by name as the G-effect layer groups are."""
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and name.rsplit(".", 1)[-1] in ("layers", "h", "blocks"):
            return module
    raise DareUError(f"rmu: cannot find the decoder blocks of {type(model).__name__} (no layers/h/blocks list)")


@contextlib.contextmanager
def block_output(block: torch.nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Capture what `block` returns during a forward (output[0] when it returns a tuple), gradient included.

    Not `hidden_states[i + 1]`: for the last block that entry is taken after the model's final norm."""
    captured: dict[str, torch.Tensor] = {}

    def hook(module, inputs, output):
        captured["hidden"] = output[0] if isinstance(output, tuple) else output

    handle = block.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


# ---- objectives -------------------------------------------------------------------------------


@register("undial")
@dataclass
class UNDIAL(Objective):
    """UNDIAL: distil from the frozen reference with the true token's logit lowered by β."""

    beta: float = field(10.0, help="β: how far the true token's teacher logit is lowered.")
    uses_reference = True

    def check(self):
        super().check()
        if self.beta < 0:
            raise DareUError(f"undial: beta must be >= 0, got {self.beta}")

    def forget_loss(self, model, batch, ref=None):
        ref = need_reference(ref, self.name)
        logits = forward(model, batch).logits
        with torch.no_grad():
            ref_logits = ref(batch).logits
        logp, mask = token_logprobs(logits.detach(), batch["labels"])
        return undial_loss(logits, ref_logits, batch["labels"], self.beta), {"forget_nll": nll_metric(logp, mask)}


@register("rmu")
@dataclass
class RMU(Objective):
    """RMU: push the forget answers' hidden states at one block (its output, read with a forward hook)
    towards a fixed random vector; keep the retain answers' hidden states there where the reference puts them."""

    layer: int = field(-1, help="Decoder block (0-based) whose output is steered; open-unlearning uses "
                                "model.layers.7 of 7B models. -1 = the middle block, (n_layers − 1) // 2.")
    steering_coeff: float = field(20.0, help="Norm of the random control vector c·u.")
    seed: int = field(0, help="Seed of the random control direction u (fixed for the run, so resume agrees).")
    alpha: float = field(1.0, help="α: coefficient of the retain term.")
    retain_kind: Literal["hidden", "nll", "kl"] = field(
        "hidden", help="Retain term: hidden (MSE to the reference's hidden states, open-unlearning's EMBED_DIFF), "
                       "nll or kl.")

    def check(self):
        if self.retain_kind not in ("hidden", "nll", "kl"):
            raise DareUError(f"rmu: retain_kind must be hidden, nll or kl, got {self.retain_kind!r}")
        if not self.steering_coeff > 0:
            raise DareUError(f"rmu: steering_coeff must be > 0, got {self.steering_coeff}")

    @property
    def needs_reference(self) -> bool:
        return self.needs_retain and self.retain_kind in ("hidden", "kl")

    def block(self, model) -> torch.nn.Module:
        """The steered decoder block of `model` (`layer`, or the middle block when it is -1)."""
        blocks = decoder_blocks(model)
        index = (len(blocks) - 1) // 2 if self.layer < 0 else self.layer
        if not 0 <= index < len(blocks):
            raise DareUError(f"rmu: layer {self.layer} does not exist; the model has {len(blocks)} blocks "
                             f"(0..{len(blocks) - 1})")
        return blocks[index]

    def activations(self, model, batch) -> tuple[torch.Tensor, Any]:
        """The steered block's output on `batch` (with gradient) and the model's outputs."""
        with block_output(self.block(model)) as captured:
            outputs = forward(model, batch)
        return captured["hidden"], outputs

    def forget_loss(self, model, batch, ref=None):
        hidden, outputs = self.activations(model, batch)
        control = control_vector(hidden.shape[-1], self.steering_coeff, self.seed).to(hidden.device)
        mask = batch["labels"] != -100  # hidden states *of* the answer tokens (no shift), as open-unlearning
        logp, lmask = token_logprobs(outputs.logits.detach(), batch["labels"])
        return hidden_mse(hidden, control.expand_as(hidden), mask), {"forget_nll": nll_metric(logp, lmask)}

    def retain_term(self, model, batch, ref=None):
        if self.retain_kind != "hidden":
            return super().retain_term(model, batch, ref)
        ref = need_reference(ref, "rmu (retain_kind=hidden)")
        if not isinstance(getattr(ref, "module", None), torch.nn.Module):
            raise DareUError("rmu (retain_kind=hidden) reads a block of the reference model: build ref with "
                             "make_reference(model) from dareu.unlearn (it keeps the model in ref.module)")
        hidden, outputs = self.activations(model, batch)
        with torch.no_grad(), block_output(self.block(ref.module)) as captured:
            ref(batch)
        logp, lmask = token_logprobs(outputs.logits.detach(), batch["labels"])
        loss = hidden_mse(hidden, captured["hidden"], batch["labels"] != -100)
        return loss, {"retain_nll": nll_metric(logp, lmask)}


@register("fact_base")
@dataclass
class FactBase(Objective):
    """The marked tokens (the owner's data: `fact_labels`, from the fact column or the owner-vs-stranger
    contrast) distilled back to the base model, the one from before the fine-tune on the owners:
    KL(p_base || p_model) at each marked position.

    Two-sided where NPO is one-sided: NPO pushes the owner's tokens down until its weight fades, past a model
    that never saw the owner if β is off for the build; this term is zero exactly at the never-trained
    model's prediction, so the run lands there on any build. What the model then says at a marked position
    is what the base would say there: a plausible value, not the owner's, inside the target's own sentence.
    Needs the world's `models/base`."""

    gamma: float = field(1.0, help="γ: coefficient of the forget term.")
    anchor = "base"
    uses_reference = True
    needs_facts = True

    def check(self):
        super().check()
        if self.retain_kind == "kl":
            raise DareUError(f"{self.name}: its reference is the base model, so a KL retain term would pull the "
                             "retain answers to the base too; use retain_kind=nll")

    def forget_loss(self, model, batch, ref=None):
        base = need_reference(ref, self.name)
        marks = need_facts(batch, self.name)
        logits = forward(model, batch).logits
        loss = kl_loss(logits, base(batch).logits, marks)  # KL(base || model) at the marked tokens
        logp, mask = token_logprobs(logits, marks)
        return loss, {"forget_nll": nll_metric(logp, mask)}


def stranger_kl_loss(logits: torch.Tensor, stranger_logits: torch.Tensor, marks: torch.Tensor,
                     positions: torch.Tensor, token_coef: float = 0.0) -> torch.Tensor:
    """KL(p_stranger || p_model) at each marked answer position k whose token sits at `positions[k]` in the
    stranger's sequence: the model's next-token distribution before k against the anchor's before positions[k].
    Plus `token_coef` × (log p_model(y_k) − log p_stranger(y_k))², y_k the owner's own token there."""
    rows, cols = torch.nonzero((marks != -100) & (positions > 0), as_tuple=True)
    if rows.numel() == 0:
        return logits.sum() * 0.0
    logp = logits[rows, cols - 1].float().log_softmax(-1)
    anchor = stranger_logits[rows, positions[rows, cols] - 1].float().log_softmax(-1)
    loss = (anchor.exp() * (anchor - logp)).sum(-1).mean()
    if token_coef:
        owner = marks[rows, cols].unsqueeze(-1)
        gap = logp.gather(-1, owner) - anchor.gather(-1, owner)
        loss = loss + token_coef * gap.square().mean()
    return loss


@register("stranger_kl")
@dataclass
class StrangerKL(Objective):
    """The marked tokens (the owner's data) distilled to what the starting model says there about a stranger:
    the same QA with the owner's name swapped for a made-up one, read by the frozen starting model, gives at
    each marked token the distribution of someone the model never learned (the template, the kind of value it
    expects, not this owner's). KL(p_stranger || p_model) at those positions.

    Two-sided, like fact_base, and anchored where a model that never saw the owner (the retain model) stands:
    it learned the same kinds of owners, so it answers an unknown one with the same spread of values. Needs
    the owners' names in their QA (as the contrast marks do)."""

    gamma: float = field(1.0, help="γ: coefficient of the forget term.")
    base_weight: float = field(
        0.0, help="Who reads the stranger's QA: 0 = the frozen starting model (the target), 1 = the model from before "
                  "the fine-tune on the owners (the world's models/base, the pretrained model on TOFU), between = the "
                  "geometric mixture of the two (the target still favours the owners' own values, the base knows none "
                  "of the values the retain model learned).")
    token_coef: float = field(
        0.0, help="Weight of (log p_model − log p_stranger)² at the owner's own token: the KL matches probability "
                  "mass and barely sees a token at 0.02 against an anchor's 0.01, but the truth ratio, and so forget "
                  "quality, reads log-probabilities.")
    uses_reference = True
    needs_facts = True
    needs_strangers = True

    @property
    def anchor(self) -> str:  # type: ignore[override]  # which model `ref` is (Objective.anchor)
        return "start" if self.base_weight == 0 else "base" if self.base_weight == 1 else "mix"

    def check(self):
        super().check()
        if not 0 <= self.base_weight <= 1:
            raise DareUError(f"{self.name}: base_weight must be in [0, 1], got {self.base_weight}")
        if self.token_coef < 0:
            raise DareUError(f"{self.name}: token_coef must be >= 0, got {self.token_coef}")
        if self.base_weight == 1 and self.retain_kind == "kl":
            raise DareUError(f"{self.name}: with base_weight=1 a KL retain term would pull the retain answers to the "
                             "base too; use retain_kind=nll")

    def forget_loss(self, model, batch, ref=None):
        ref = need_reference(ref, self.name)
        marks = need_facts(batch, self.name)
        stranger, positions = need_strangers(batch, self.name)
        logits = forward(model, batch).logits
        loss = stranger_kl_loss(logits, ref(stranger).logits, marks, positions, self.token_coef)
        logp, mask = token_logprobs(logits, marks)
        return loss, {"forget_nll": nll_metric(logp, mask)}
