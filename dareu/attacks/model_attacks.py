"""Attacks that change the weights: relearning (Hu et al. 2025; Lucki et al. 2024) and weight quantization
(Zhang et al. 2025). Each returns a new model; the one it was given is left as it was."""

from __future__ import annotations

import copy
import logging

import torch

from dareu.attacks.registry import AttackInputs, attack
from dareu.data import get_split
from dareu.quality import evenly

INT4_GROUP = 32  # weights per int4 scale (group-wise, as GPTQ/AWQ/llama.cpp Q4 quantize)


def _relearn(model, tok, pairs: list[tuple[str, str]], inputs: AttackInputs):
    from dareu.sft import TrainConfig, finetune_qa

    rc = inputs.cfg.relearn
    attacked = copy.deepcopy(model)
    cfg = TrainConfig(epochs=1.0, batch_size=rc.batch_size, learning_rate=rc.learning_rate, warmup_ratio=0.0,
                      seed=rc.seed)
    # A few steps at a constant rate: the attacker spends little and does not tune a schedule.
    finetune_qa(attacked, tok, pairs, cfg, inputs.work_dir, quiet=True, max_steps=rc.steps,
                lr_scheduler_type="constant", logging_steps=max(1, rc.steps))
    return attacked.eval()


@attack("relearn", "model")
def relearn(model, tok, inputs: AttackInputs):
    """Fine-tune a few steps on half of each forget owner's QA; scored on the other half."""
    return _relearn(model, tok, [(r["question"], r["answer"]) for r in inputs.taught], inputs)


@attack("relearn_retain", "model")
def relearn_retain(model, tok, inputs: AttackInputs):
    """Fine-tune as `relearn` does, on as many retain QA (no forget owner's data at all)."""
    rows = evenly(list(get_split(inputs.data, inputs.retain_split)), len(inputs.taught))
    return _relearn(model, tok, [(r["question"], r["answer"]) for r in rows], inputs)


def _quantized(model, config, only=lambda m, fqn: isinstance(m, torch.nn.Linear)):
    """A copy of `model` whose linear weights torchao has quantized (weight-only: activations stay float, so it
    runs on CPU; what an attacker gets from a 4- or 8-bit checkpoint)."""
    logging.getLogger("torchao").setLevel(logging.ERROR)  # its GPU kernels fail to load on CPU, harmlessly
    from torchao.quantization import quantize_

    attacked = copy.deepcopy(model).float()
    quantize_(attacked, config, filter_fn=only)
    return attacked.eval()


@attack("quant8", "model")
def quant8(model, tok, inputs: AttackInputs):
    """8-bit weights (torchao int8 weight-only, one scale per output channel)."""
    from torchao.quantization import Int8WeightOnlyConfig

    return _quantized(model, Int8WeightOnlyConfig())


@attack("quant4", "model")
def quant4(model, tok, inputs: AttackInputs):
    """4-bit weights (torchao int4 weight-only, one scale per 32 weights)."""
    from torchao.quantization import IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerGroup

    # a layer whose inputs do not split into whole groups keeps its float weights
    return _quantized(model, IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(INT4_GROUP)),
                      only=lambda m, fqn: isinstance(m, torch.nn.Linear) and m.in_features % INT4_GROUP == 0)
