"""Settings of one `dareu g-effect` run (keys of `key=value` overrides; `params.*` go to the method)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dareu.config import field

EMA_OLD, EMA_NEW = 0.6, 0.4  # the official code's smoothing: g <- 0.6 g_old + 0.4 g_new


@dataclass
class GEffectConfig:
    steps: list[int] = field(default_factory=lambda: [0, 10, 20],
                             help="Steps of the unlearning run at which G-effects are measured (0 = the given model).")
    max_steps: int = field(0, help="Length of the unlearning run; 0 = the last of `steps`. A measured step beyond "
                                   "it is an error.")
    learning_rate: float = field(1e-5, help="Learning rate of the steps measured (open-unlearning's TOFU recipe, for 1B-8B models).")
    optimizer: Literal["adam", "sgd"] = field("adam", help="adam (AdamW, as dareu unlearn) or plain sgd, whose step "
                                                          "is the one the G-effect's first-order prediction describes.")
    weight_decay: float = field(0.0, help="AdamW weight decay (the G-effect paper uses 0).")
    max_grad_norm: float = field(1.0, help="Gradient clipping of the run's steps; 0 = none.")
    batch_size: int = field(8, help="Forget QA per batch, each paired with one retain QA (training and measuring).")
    measure_batches: int = field(1, help="Fixed measuring batches per measured step; G-effects are their mean "
                                         "(or EMA).")
    ema: bool = field(False, help="Smooth across measuring batches as the official code does (0.6 old / 0.4 new). With "
                                  "projection_dim the sketched gradients are smoothed (the official form); without it "
                                  "the per-batch G-effects are, so no extra gradient copy is kept.")
    layers: str = field("all", help="Layer groups to measure: all, or a comma list of embeddings, block_<i>, head, "
                                    "blocks. Unmeasured groups get no weight gradient while measuring (cheaper).")
    projection_dim: int = field(0, help="0 = exact inner products. K > 0 = CountSketch each group's gradient to K "
                                        "numbers (unbiased, error ~ sqrt(2/K)·|g_obj|·|g_risk|), for large models.")
    retain_risk: Literal["heldout", "paired"] = field(
        "heldout", help="Retain QA of the retaining G-effect: heldout = other retain QA than the loss's retain term "
                        "fits (damage to retained knowledge at large); paired = the same QA (the official code's "
                        "setup; with a retain term in the loss it adds α·|∇R|², an optimistic reading).")
    instances: int = field(4, help="Forget and retain QA (each, drawn with the seed) with per-instance G-effects; "
                                   "0 = none.")
    forget_ids: list[int] = field(default_factory=list, help="Rows of the forget split to resolve per instance "
                                                             "(instead of drawing `instances`).")
    retain_ids: list[int] = field(default_factory=list, help="Rows of the retain split to resolve per instance "
                                                             "(instead of drawing `instances`).")
    by_term: bool = field(True, help="Also split each G-effect by the objective's terms (forget/retain, or DareU's "
                                     "policy/kl/aux terms): one set of risk backward passes per term.")
    dtype: Literal["auto", "float32", "float64"] = field(
        "auto", help="Model dtype: auto = bf16 on GPU (as dareu unlearn), float32 on CPU; float64 for exact checks.")
    max_length: int = field(0, help="Truncate prompt + answer to this many tokens; 0 = no truncation.")
    templates: str = field("idk", help="Template answers for objectives that need them (flat, idkpo): idk or a file.")
    seed: int = field(0, help="Seed of batch order, instance choice, projections and rollouts.")
