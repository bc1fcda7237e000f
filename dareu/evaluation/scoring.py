"""Teacher-forced statistics of answers under a model: one forward pass per batch gives every per-sample
number the likelihood metrics need (mean loss, token log-probs, argmax hits, Min-K%++ moments)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from dareu.modeling import encode_qa
from dareu.sft import QACollator


@dataclass
class AnswerStats:
    """One answer scored under teacher forcing. `avg_loss` covers every answer token including eos (as
    open-unlearning's `evaluate_probability`); the token-level arrays leave eos out (as its
    `tokenwise_logprobs`), and are filled only when asked for (`detail=True`)."""

    avg_loss: float
    logprobs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    mu: np.ndarray = field(default_factory=lambda: np.zeros(0))   # E[log p] under the next-token distribution
    var: np.ndarray = field(default_factory=lambda: np.zeros(0))  # Var[log p] under it (Min-K%++)
    preds: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def _max_length(model) -> int | None:
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)


@torch.no_grad()
def score_answers(model, tok, pairs: list[tuple[str, str]], batch_size: int = 64, detail: bool = False,
                  on_batch: Callable[[], None] | None = None) -> list[AnswerStats]:
    """Score (question, answer) pairs in the chat format `encode_qa` builds (prompt masked, eos appended).

    Pairs are batched by length (less padding) and returned in input order; the model's train/eval mode is
    restored afterwards, so the RL learner can call this between steps."""
    encoded = [encode_qa(tok, q, a, _max_length(model)) for q, a in pairs]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    collate = QACollator(tok.pad_token_id)
    dev = next(model.parameters()).device
    out: list[AnswerStats | None] = [None] * len(encoded)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start: start + batch_size]
            batch = collate([{"input_ids": encoded[i][0], "labels": encoded[i][1]} for i in idx])
            batch = {k: v.to(dev) for k, v in batch.items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            for i, stats in zip(idx, _stats(logits, batch["labels"], detail), strict=True):
                out[i] = stats
            if on_batch is not None:
                on_batch()
    finally:
        model.train(was_training)
    return out  # type: ignore[return-value]


def _stats(logits: torch.Tensor, labels: torch.Tensor, detail: bool) -> list[AnswerStats]:
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    target = labels[:, 1:]
    mask = target != -100
    token_lp = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    avg_loss = (-(token_lp * mask).sum(-1) / mask.sum(-1).clamp(min=1)).cpu().numpy()
    if not detail:
        return [AnswerStats(float(v)) for v in avg_loss]
    probs = logp.exp()
    mu = (probs * logp).sum(-1)
    var = (probs * logp.square()).sum(-1) - mu.square()
    preds = logp.argmax(-1)
    rows = []
    for i in range(len(avg_loss)):
        pos = mask[i].nonzero(as_tuple=True)[0][:-1]  # drop the eos position
        rows.append(AnswerStats(float(avg_loss[i]), token_lp[i, pos].cpu().numpy(), mu[i, pos].cpu().numpy(),
                                var[i, pos].cpu().numpy(), preds[i, pos].cpu().numpy(),
                                target[i, pos].cpu().numpy()))
    return rows
