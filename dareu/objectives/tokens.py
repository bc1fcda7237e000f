"""Pure tensor helpers: answer-token log-probabilities and the reductions every objective uses.

Conventions (shared by all objectives):
- `logits` is (B, T, V) for `input_ids` (B, T); `labels` is (B, T) with -100 on prompt and pad.
- `token_logprobs(logits, labels)` shifts once (position t predicts token t+1) and returns
  `logp` (B, T-1), the log-probability of each label token, 0 where masked, and `mask` (B, T-1).
- Losses are computed in float32 whatever the model's dtype (bf16 logits lose too much in log space).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def shift(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Align predictions with targets: logits[:, t] predicts labels[:, t+1]."""
    return logits[:, :-1, :], labels[:, 1:]


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logp, mask), each (B, T-1): log p(label token) under `logits` (0 where masked) and the answer mask."""
    logits, labels = shift(logits, labels)
    mask = labels != IGNORE
    # cross_entropy avoids materialising a (B, T, V) log-softmax copy next to the logits.
    nll = F.cross_entropy(logits.float().transpose(1, 2), labels.masked_fill(~mask, 0), reduction="none")
    return -nll * mask, mask


def token_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over every valid token of the batch (how HF's loss and the token-weighted methods reduce)."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def sequence_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) sum over each answer's tokens, e.g. the answer's log-probability log π(y|x)."""
    return (x * mask).sum(-1)


def sequence_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) mean over each answer's tokens (length-normalised)."""
    return (x * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def answer_probability(logp: torch.Tensor, mask: torch.Tensor, mean: str = "answer") -> torch.Tensor:
    """Average token *probability* of the answers, one scalar for the batch (FLAT's P̄).

    mean="answer": per-answer length-normalised average, then the batch mean (the paper's definition).
    mean="padded": sum of p·mask over B × (T-1), as the official FLAT code does (scale depends on padding).
    """
    p = logp.exp() * mask
    if mean == "answer":
        return sequence_mean(p, mask).mean()
    if mean == "padded":
        return p.sum() / p.numel()
    raise ValueError(f"unknown mean {mean!r}; use 'answer' or 'padded'")
