"""Gradient ascent and its token-reweighted forms: GA, GradDiff, WGA, SatImp/SimSat/SimImp, TNPO, WTNPO.

All of them minimise  L_f = −mean_t[w_t · ℓ_t] = mean_t[w_t · log p_t]  over the batch's answer tokens
(ℓ_t = −log p_t, the token NLL), with weights w_t that are *detached* (constants in backward), as in
open-unlearning `src/trainer/utils.py` and the SatImp / G-effect code. GA is w_t = 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dareu.config import field
from dareu.errors import DareUError
from dareu.objectives.base import Objective, answer_logprobs, need_reference, nll_metric, reference_logprobs, register
from dareu.objectives.tokens import token_mean

EPS_TNPO = 1e-5  # the G-effect code's stabiliser in the TNPO/WTNPO denominators


# ---- pure functions ---------------------------------------------------------------------------

def ga_loss(logp: torch.Tensor, mask: torch.Tensor, reduction: str = "token") -> torch.Tensor:
    """Gradient ascent: −NLL. reduction "token" = mean over the batch's answer tokens (HF/open-unlearning);
    "sequence" = mean over answers of the summed NLL (the limit of NPO as β → 0)."""
    if reduction == "token":
        return token_mean(logp, mask)
    if reduction == "sequence":
        return (logp * mask).sum(-1).mean()
    raise ValueError(f"unknown reduction {reduction!r}")


def weighted_ga_loss(logp: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """−mean_t[w_t ℓ_t] with the weights detached."""
    return token_mean(weights.detach() * logp, mask)


def wga_weights(logp: torch.Tensor, beta: float) -> torch.Tensor:
    """WGA / SimSat saturation weight p_t^β."""
    return logp.detach().exp() ** beta


def satimp_weights(logp: torch.Tensor, beta1: float, beta2: float) -> torch.Tensor:
    """SatImp weight p_t^β1 · (1 − p_t)^β2 (saturation × importance)."""
    p = logp.detach().exp()
    return p ** beta1 * (1 - p) ** beta2


def simimp_weights(logp: torch.Tensor, beta: float) -> torch.Tensor:
    """SimImp importance weight (1 − p_t)^β."""
    return (1 - logp.detach().exp()) ** beta


def tnpo_weights(logp: torch.Tensor, ref_logp: torch.Tensor, beta: float, power: float = 0.0) -> torch.Tensor:
    """TNPO weight 2·p^β / (p^β + p_ref^β + 1e-5); WTNPO multiplies the numerator by p^power."""
    p, p_ref = logp.detach().exp(), ref_logp.detach().exp()
    return 2 * p ** (beta + power) / (p ** beta + p_ref ** beta + EPS_TNPO)


# ---- objectives -------------------------------------------------------------------------------

def _non_negative(name: str, **values: float) -> None:
    for key, value in values.items():
        if value < 0:
            raise DareUError(f"{name}: {key} must be >= 0, got {value}")


@register("ga")
@dataclass
class GradientAscent(Objective):
    """GA: raise the NLL of forget answers (no retain term by default)."""

    def forget_loss(self, model, batch, ref=None):
        logp, mask = answer_logprobs(model, batch)
        return ga_loss(logp, mask), {"forget_nll": nll_metric(logp, mask)}


@register("graddiff")
@dataclass
class GradDiff(GradientAscent):
    """GradDiff: GA on forget + NLL (or KL) on retain."""

    alpha: float = field(1.0, help="α: coefficient of the retain term.")


@dataclass
class WeightedAscent(Objective):
    """GA with detached token weights w_t; subclasses define `weights`."""

    def weights(self, logp: torch.Tensor, batch, ref) -> torch.Tensor:
        raise NotImplementedError

    def forget_loss(self, model, batch, ref=None):
        logp, mask = answer_logprobs(model, batch)
        w = self.weights(logp, batch, ref)
        return weighted_ga_loss(logp, mask, w), {"forget_nll": nll_metric(logp, mask),
                                                  "weight_mean": float(token_mean(w, mask))}


@register("wga")
@dataclass
class WGA(WeightedAscent):
    """Weighted GA (G-effect paper): weights p_t^β cancel GA's exploding 1/p gradient."""

    beta: float = field(1.0, help="β: exponent of the weight p_t^β.")
    alpha: float = field(1.0, help="α: coefficient of the retain term.")

    def check(self):
        super().check()
        _non_negative(self.name, beta=self.beta)

    def weights(self, logp, batch, ref):
        return wga_weights(logp, self.beta)


@register("satimp")
@dataclass
class SatImp(WeightedAscent):
    """SatImp: weights p^β1·(1−p)^β2 (saturation × importance), detached."""

    beta1: float = field(5.0, help="β1: saturation exponent (weight p^β1).")
    beta2: float = field(1.0, help="β2: importance exponent (weight (1−p)^β2).")
    gamma: float = field(0.1, help="γ: coefficient of the forget term.")
    alpha: float = field(1.0, help="α: coefficient of the retain term.")

    def check(self):
        super().check()
        _non_negative(self.name, beta1=self.beta1, beta2=self.beta2)

    def weights(self, logp, batch, ref):
        return satimp_weights(logp, self.beta1, self.beta2)


@register("simsat")
@dataclass
class SimSat(WeightedAscent):
    """SimSat: saturation only, weight p^β (SatImp code `simsat_gd`: coeff·L_f + NLL_retain)."""

    beta: float = field(5.0, help="β: exponent of the saturation weight p^β.")
    gamma: float = field(0.1, help="γ: coefficient of the forget term.")
    alpha: float = field(1.0, help="α: coefficient of the retain term.")

    def check(self):
        super().check()
        _non_negative(self.name, beta=self.beta)

    def weights(self, logp, batch, ref):
        return wga_weights(logp, self.beta)


@register("simimp")
@dataclass
class SimImp(WeightedAscent):
    """SimImp: importance only, weight (1−p)^β (SatImp code `simimp_gd`: L_f + NLL_retain)."""

    beta: float = field(5.0, help="β: exponent of the importance weight (1−p)^β.")
    alpha: float = field(1.0, help="α: coefficient of the retain term.")

    def check(self):
        super().check()
        _non_negative(self.name, beta=self.beta)

    def weights(self, logp, batch, ref):
        return simimp_weights(logp, self.beta)


@register("tnpo")
@dataclass
class TNPO(WeightedAscent):
    """Token-wise NPO (G-effect paper): weight 2p^β/(p^β + p_ref^β), needs the reference model."""

    beta: float = field(4.0, help="β: temperature of the token-wise NPO weight.")
    uses_reference = True
    power = 0.0  # WTNPO's extra numerator exponent; TNPO has none

    def check(self):
        super().check()
        if not self.beta > 0:
            raise DareUError(f"{self.name}: beta must be > 0, got {self.beta}")

    def weights(self, logp, batch, ref):
        ref = need_reference(ref, self.name)
        return tnpo_weights(logp, reference_logprobs(ref, batch), self.beta, self.power)


@register("wtnpo")
@dataclass
class WTNPO(TNPO):
    """Weighted TNPO (G-effect paper): weight 2p^(β+power)/(p^β + p_ref^β)."""

    power: float = field(1.5, help="Extra exponent of WTNPO's numerator p^(β+power) (the paper's α; renamed "
                                   "because alpha is the retain coefficient here).")
