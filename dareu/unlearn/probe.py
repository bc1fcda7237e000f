"""A cheap before/after check of a run: length-normalised answer probability on a few forget/retain QA."""

from __future__ import annotations

import torch

from dareu.modeling import encode_qa
from dareu.objectives.base import forward
from dareu.objectives.tokens import sequence_mean, token_logprobs
from dareu.quality import evenly
from dareu.sft import QACollator


def answer_probabilities(model, tok, pairs: list[tuple[str, str]], batch_size: int = 32) -> list[float]:
    """P(a|q)^(1/|a|) per pair (TOFU's normalised probability; answer tokens + eos), teacher-forced."""
    collate = QACollator(tok.pad_token_id)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[float] = []
    try:
        with torch.no_grad():
            for start in range(0, len(pairs), batch_size):
                items = [dict(zip(("input_ids", "labels"), encode_qa(tok, q, a)))
                         for q, a in pairs[start:start + batch_size]]
                batch = {k: v.to(device) for k, v in collate(items).items()}
                logp, mask = token_logprobs(forward(model, batch).logits, batch["labels"])
                out.extend(sequence_mean(logp, mask).exp().tolist())
    finally:
        model.train(was_training)
    return out


def mean_probability(model, tok, rows, limit: int) -> float:
    """Mean normalised answer probability over up to `limit` rows spread evenly over `rows`."""
    picked = evenly(rows, limit)
    probs = answer_probabilities(model, tok, [(r["question"], r["answer"]) for r in picked])
    return sum(probs) / len(probs)
