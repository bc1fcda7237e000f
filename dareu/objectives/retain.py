"""Retain terms: NLL of retain answers, or KL to the reference model on retain answer tokens."""

from __future__ import annotations

import torch

from dareu.errors import DareUError
from dareu.objectives.base import Batch, Metrics, Reference, forward, need_reference
from dareu.objectives.tokens import shift, token_logprobs, token_mean


def nll_loss(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean NLL over the batch's answer tokens (what HF's `outputs.loss` computes)."""
    return -token_mean(logp, mask)


def kl_loss(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KL(reference || model) of the next-token distributions, averaged over answer tokens.

    open-unlearning's `compute_kl_divergence` has the same direction (kl_div(log q, log p_ref)) but
    averages over every position, prompt and padding included; we keep answer tokens only, where the
    forget term acts, so padding length cannot dilute the term.
    """
    logits, labels = shift(logits, labels)
    mask = labels != -100
    logq = logits.float().log_softmax(-1)
    logp = ref_logits[:, :-1].float().log_softmax(-1)
    kl = (logp.exp() * (logp - logq)).sum(-1)
    return token_mean(kl, mask)


def retain_loss(model, batch: Batch, kind: str = "nll", ref: Reference | None = None) -> tuple[torch.Tensor, Metrics]:
    """The retain term on a retain batch: kind "nll" or "kl" (the latter needs `ref`)."""
    outputs = forward(model, batch)
    logp, mask = token_logprobs(outputs.logits, batch["labels"])
    metrics = {"retain_nll": float(-token_mean(logp.detach(), mask))}
    if kind == "nll":
        return nll_loss(logp, mask), metrics
    if kind == "kl":
        ref = need_reference(ref, "retain_kind=kl")
        with torch.no_grad():
            ref_logits = ref(batch).logits
        loss = kl_loss(outputs.logits, ref_logits, batch["labels"])
        return loss, {**metrics, "retain_kl": float(loss.detach())}
    raise DareUError(f"unknown retain kind {kind!r}; use nll or kl")
