"""Unlearning objectives, each written once and shared by the loss-based trainer and the RL learner.

API
---
Pure functions of model outputs (tensors in, scalar loss out), one module per family:

    tokens.token_logprobs(logits, labels) -> (logp, mask)       # (B, T-1) answer-token log-probs, mask
    tokens.token_mean / sequence_sum / sequence_mean / answer_probability
    ascent.ga_loss(logp, mask), weighted_ga_loss(logp, mask, weights)
           wga_weights, satimp_weights, simimp_weights, tnpo_weights   # all detached
    preference.npo_loss(seq, ref_seq, beta), simnpo_loss(mean_logp, beta, delta), dpo_loss(...)
    flat.flat_loss(p_template, p_forget, divergence, form)
    distill.undial_loss(logits, ref_logits, labels, beta), hidden_mse(h, target, mask)
    retain.nll_loss(logp, mask), kl_loss(logits, ref_logits, labels)

Objects (what trainers call). Each objective is a dataclass whose fields are its parameters:

    obj = OBJECTIVES.get("npo")(beta=0.1, gamma=1.0, alpha=1.0, retain_kind="nll")
    loss, metrics = obj.forget_loss(model, forget_batch, ref=ref)       # forget term only
    loss, metrics = obj.retain_term(model, retain_batch, ref=ref)       # the objective's retain term
    loss, metrics = obj.loss(model, {"forget": fb, "retain": rb}, ref)  # γ·forget + α·retain
    loss, metrics = retain_loss(model, retain_batch, kind="nll" | "kl", ref=ref)
    obj.needs_reference / obj.needs_retain / obj.needs_templates       # bools

- Batches are dicts from `dareu.sft.QACollator`: input_ids, attention_mask, labels (-100 on prompt/pad).
- Objectives with needs_templates read `forget_batch[TEMPLATE_KEY]` ("template"): the same forget
  questions with template ("I don't know") answers, row for row.
- Objectives with needs_facts (fact_npo) read `forget_batch[FACT_KEY]` ("fact_labels"): the labels with only
  the tokens that state the answer's fact (the split's `fact` column) kept; `check_facts` says up front
  when a split cannot give them.
- `ref` is anything callable as `ref(batch, hidden_states=False) -> outputs` without gradient; build it with
  `dareu.unlearn.make_reference(model)`: a frozen copy for full fine-tuning, the same model with its LoRA
  adapters disabled under peft. Objectives that need it raise DareUError when it is missing.
- `metrics` are floats (forget_nll, npo_weight, p_forget, ...), for logging.
- Losses are computed in float32 from the model's logits.
"""

from dareu.objectives import ascent, distill, flat, preference  # noqa: F401  (register the objectives)
from dareu.objectives.base import (
    FACT_KEY,
    OBJECTIVES,
    STRANGER_KEY,
    STRANGER_POS_KEY,
    TEMPLATE_KEY,
    Objective,
    forward,
)
from dareu.objectives.retain import kl_loss, nll_loss, retain_loss

__all__ = ["FACT_KEY", "OBJECTIVES", "STRANGER_KEY", "STRANGER_POS_KEY", "TEMPLATE_KEY", "Objective", "forward", "kl_loss", "nll_loss", "retain_loss"]
