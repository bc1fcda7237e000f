"""Preference-style objectives on whole answers: NPO, SimNPO, IdkPO, IdkDPO.

NPO/SimNPO/DPO use *sequence-summed* answer log-probabilities (SimNPO divides by the answer length)
and the 2/β scaling of the NPO paper, as open-unlearning `compute_dpo_loss` does; with that scaling
NPO's gradient tends to GA's (sequence-summed) as β → 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dareu.config import field
from dareu.errors import DareUError
from dareu.objectives.base import (
    Objective,
    answer_logprobs,
    need_facts,
    need_reference,
    need_templates,
    nll_metric,
    reference_logprobs,
    register,
)
from dareu.objectives.retain import nll_loss
from dareu.objectives.tokens import sequence_mean, sequence_sum

# ---- pure functions ---------------------------------------------------------------------------


def npo_loss(logp_seq: torch.Tensor, ref_logp_seq: torch.Tensor, beta: float) -> torch.Tensor:
    """−(2/β)·mean_i log σ(−β·(log π_θ(y_i|x_i) − log π_ref(y_i|x_i)))."""
    return -(2 / beta) * F.logsigmoid(-beta * (logp_seq - ref_logp_seq)).mean()


def simnpo_loss(mean_logp: torch.Tensor, beta: float, delta: float = 0.0) -> torch.Tensor:
    """−(2/β)·mean_i log σ(β·(NLL_i/|y_i| − δ)): reference-free, length-normalised NPO."""
    return -(2 / beta) * F.logsigmoid(beta * (-mean_logp - delta)).mean()


def dpo_loss(win: torch.Tensor, win_ref: torch.Tensor, lose: torch.Tensor, lose_ref: torch.Tensor,
             beta: float) -> torch.Tensor:
    """−(2/β)·mean log σ(β·[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))])."""
    return -(2 / beta) * F.logsigmoid(beta * ((win - win_ref) - (lose - lose_ref))).mean()


def npo_weight(logp_seq: torch.Tensor, ref_logp_seq: torch.Tensor, beta: float) -> torch.Tensor:
    """NPO's implicit per-answer weight on the GA gradient, 2π^β/(π^β + π_ref^β) (in (0, 2))."""
    return 2 * torch.sigmoid(beta * (logp_seq - ref_logp_seq))


# ---- objectives -------------------------------------------------------------------------------


def _check_beta(obj) -> None:
    if not obj.beta > 0:
        raise DareUError(f"{obj.name}: beta must be > 0, got {obj.beta}")


@register("npo")
@dataclass
class NPO(Objective):
    """Negative preference optimisation against the frozen reference (the starting model)."""

    beta: float = field(0.1, help="β: inverse temperature; NPO → GA as β → 0.")
    alpha: float = field(1.0, help="α: coefficient of the retain term.")
    uses_reference = True

    def check(self):
        super().check()
        _check_beta(self)

    def forget_loss(self, model, batch, ref=None):
        ref = need_reference(ref, self.name)
        logp, mask = answer_logprobs(model, batch)
        seq, ref_seq = sequence_sum(logp, mask), sequence_sum(reference_logprobs(ref, batch), mask)
        return npo_loss(seq, ref_seq, self.beta), {
            "forget_nll": nll_metric(logp, mask),
            "npo_weight": float(npo_weight(seq.detach(), ref_seq, self.beta).mean())}


@register("fact_npo")
@dataclass
class FactNPO(NPO):
    """NPO on the tokens that state each answer's fact, not on the whole answer.

    Whole-answer NPO spends its push on the template and the name; pushed on the fact alone, the owner's
    value loses its edge in other sentence forms too. NPO's saturation (the term fades once
    β·(log π − log π_ref) is a few units below 0) is what stops it there; measured on the default world,
    β 0.1 overshoots (the model then prefers wrong values), 1.0 stops short, 0.2 lands near the
    retain model (README, "Loss-based unlearning")."""

    beta: float = field(0.2, help="β: inverse temperature; the fact tokens' log-probability falls about 5/β "
                                  "nats below the reference before the term fades.")
    needs_facts = True

    def forget_loss(self, model, batch, ref=None):
        facts = {**batch, "labels": need_facts(batch, self.name)}  # NPO's own check asks for the reference
        return super().forget_loss(model, facts, ref)


@register("simnpo")
@dataclass
class SimNPO(Objective):
    """SimNPO: NPO without a reference model, on the length-normalised answer NLL."""

    beta: float = field(4.5, help="β: inverse temperature.")
    delta: float = field(0.0, help="δ: reward margin subtracted from the normalised NLL (Unlearn-Simple's gamma).")
    gamma: float = field(0.125, help="γ: coefficient of the forget term.")
    alpha: float = field(1.0, help="α: coefficient of the retain term.")

    def check(self):
        super().check()
        _check_beta(self)

    def forget_loss(self, model, batch, ref=None):
        logp, mask = answer_logprobs(model, batch)
        return simnpo_loss(sequence_mean(logp, mask), self.beta, self.delta), {"forget_nll": nll_metric(logp, mask)}


@register("idkpo")
@dataclass
class IdkPO(Objective):
    """IdkPO (TOFU's "idk"): fine-tune the forget questions towards template ("I don't know") answers."""

    alpha: float = field(1.0, help="α: coefficient of the retain term.")
    needs_templates = True

    def forget_loss(self, model, batch, ref=None):
        template = need_templates(batch, self.name)
        logp, mask = answer_logprobs(model, template)
        return nll_loss(logp, mask), {"template_nll": nll_metric(logp, mask)}


@register("idkdpo")
@dataclass
class IdkDPO(Objective):
    """DPO with the template answer preferred over the forget answer, against the frozen reference."""

    beta: float = field(0.1, help="β: inverse temperature of DPO.")
    alpha: float = field(1.0, help="α: coefficient of the retain term.")
    uses_reference = True
    needs_templates = True

    def check(self):
        super().check()
        _check_beta(self)

    def forget_loss(self, model, batch, ref=None):
        ref = need_reference(ref, self.name)
        template = need_templates(batch, self.name)
        lose, lose_mask = answer_logprobs(model, batch)
        win, win_mask = answer_logprobs(model, template)
        loss = dpo_loss(sequence_sum(win, win_mask), sequence_sum(reference_logprobs(ref, template), win_mask),
                        sequence_sum(lose, lose_mask), sequence_sum(reference_logprobs(ref, batch), lose_mask),
                        self.beta)
        return loss, {"forget_nll": nll_metric(lose, lose_mask), "template_nll": nll_metric(win, win_mask)}
