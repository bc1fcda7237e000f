"""FLAT (arXiv 2410.11143): maximise an f-divergence between template answers and forget answers.

Loss (official code `get_contrastive_loss`, loss_type "cl"):

    L = −g(P̄_e) + f*(g(P̄_f))

P̄_e / P̄_f: average token *probability* of the template / forget answers to the same forget questions
(`answer_probability`); g: the f-GAN output activation; f*: the convex conjugate. No retain set, no
reference model.

Eight divergences, as the official code names them. Five (kl, pearson, jeffrey, jensen_shannon,
total_variation) are the textbook f-GAN pairs (Nowozin et al. 2016, Table 6; Jeffrey's conjugate is
the code's cubic Taylor form). For reverse_kl, neyman and squared_hellinger the official code uses
exp(+v) where f-GAN has exp(−v), so as coded their gradient lowers the template answer (reverse_kl and
squared_hellinger also *raise* the forget answer). form="fgan" (default) uses the f-GAN activations,
which push both answers the intended way; form="official" reproduces the code exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from dareu.config import field
from dareu.objectives.base import Objective, answer_logprobs, need_templates, register
from dareu.objectives.tokens import answer_probability

Fn = Callable[[torch.Tensor], torch.Tensor]
LOG2 = math.log(2.0)

# name -> (template term T(P̄_e), forget term F(P̄_f)); loss = T + F. T = −g, F = f*∘g.
_SHARED: dict[str, tuple[Fn, Fn]] = {
    "kl": (lambda e: -e, lambda f: torch.exp(f - 1)),
    "pearson": (lambda e: -e, lambda f: f + f * f / 4),
    "jeffrey": (lambda e: -e, lambda f: f + f * f / 4 + f ** 3 / 16),
    "jensen_shannon": (lambda e: F.softplus(-e) - LOG2, lambda f: F.softplus(f) - LOG2),
    "total_variation": (lambda e: -torch.tanh(e) / 2, lambda f: torch.tanh(f) / 2),
}
FGAN: dict[str, tuple[Fn, Fn]] = {
    **_SHARED,
    "reverse_kl": (lambda e: torch.exp(-e), lambda f: f - 1),  # g = −e^{−v}, f*(t) = −1 − log(−t)
    "neyman": (lambda e: torch.exp(-e) - 1, lambda f: 2 - 2 * torch.exp(-f / 2)),  # g = 1 − e^{−v}
    "squared_hellinger": (lambda e: torch.exp(-e) - 1, lambda f: torch.exp(f) - 1),  # g = 1 − e^{−v}
}
OFFICIAL: dict[str, tuple[Fn, Fn]] = {
    **_SHARED,
    "reverse_kl": (lambda e: torch.exp(e), lambda f: -1 - f),
    "neyman": (lambda e: torch.exp(e) - 1, lambda f: 2 - 2 * torch.sqrt(1 - f)),
    "squared_hellinger": (lambda e: torch.exp(e) - 1, lambda f: torch.exp(-f) - 1),
}
DIVERGENCES = tuple(sorted(FGAN))


def flat_loss(p_template: torch.Tensor, p_forget: torch.Tensor, divergence: str = "total_variation",
              form: str = "fgan") -> torch.Tensor:
    """FLAT loss from the two average answer probabilities (scalars or matching tensors, then averaged)."""
    table = {"fgan": FGAN, "official": OFFICIAL}[form]
    template_term, forget_term = table[divergence]
    return (template_term(p_template) + forget_term(p_forget)).mean()


@register("flat")
@dataclass
class FLAT(Objective):
    """FLAT: f-divergence between template and forget answers; forget data only."""

    divergence: Literal["kl", "reverse_kl", "pearson", "neyman", "squared_hellinger", "jeffrey",
                        "jensen_shannon", "total_variation"] = field(
        "total_variation", help="f-divergence (official default: Total-Variation).")
    form: Literal["fgan", "official"] = field(
        "fgan", help="fgan: textbook f-GAN activations; official: the FLAT code as written (reverse_kl, neyman "
                     "and squared_hellinger then push the template answer down).")
    mean: Literal["answer", "padded"] = field(
        "answer", help="P̄: answer = per-answer length-normalised mean token probability; padded = the official "
                       "code's mean over batch × padded length.")
    needs_templates = True

    def forget_loss(self, model, batch, ref=None):
        template = need_templates(batch, self.name)
        logp_f, mask_f = answer_logprobs(model, batch)
        logp_e, mask_e = answer_logprobs(model, template)
        p_f = answer_probability(logp_f, mask_f, self.mean)
        p_e = answer_probability(logp_e, mask_e, self.mean)
        loss = flat_loss(p_e, p_f, self.divergence, self.form)
        return loss, {"p_forget": float(p_f.detach()), "p_template": float(p_e.detach())}
