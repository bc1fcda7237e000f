"""Typed config of a `dareu unlearn` run: the method's parameters plus training, LoRA and data settings.

The run config class is built per method (`run_config_class("npo")`) so that `params:` is the
objective's own dataclass and every key, method parameters included, is checked and documented.
Defaults come from the dataclasses, then `configs/methods/<method>.yaml`, then key=value overrides.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dareu.config import CONFIGS_DIR, field, from_dict, merge, parse_overrides, read_yaml, require, require_choice
from dareu.errors import DareUError

METHODS_DIR = CONFIGS_DIR / "methods"


@dataclass
class TrainSettings:
    # Defaults: measured on the default world (configs/methods/*.yaml cite the figures). open-unlearning's TOFU
    # recipe for 1B-8B models is lr 1e-5, 10 epochs, 8 x 4 QA per step, linear decay after a 1-epoch warmup;
    # the world's ~1M-parameter models need larger steps, and many small steps (8 forget + 8 retain QA, measured
    # on the default world) keep the retain term in step with the forget term.
    learning_rate: float = field(2e-4, help="Learning rate (AdamW).")
    max_steps: int = field(0, help="Optimizer steps; 0 = derive them from epochs.")
    epochs: float = field(8.0, help="Passes over the forget split, used when max_steps is 0.")
    batch_size: int = field(8, help="Forget QA per micro-batch, each paired with one random retain QA.")
    grad_accum: int = field(1, help="Micro-batches per optimizer step.")
    warmup_ratio: float = field(0.05, help="Fraction of steps warming up the learning rate.")
    lr_scheduler: str = field("constant_with_warmup", help="transformers scheduler name (constant_with_warmup, "
                                                            "linear, cosine, ...).")
    weight_decay: float = field(0.01, help="AdamW weight decay (open-unlearning TOFU: 0.01).")
    max_grad_norm: float = field(1.0, help="Gradient clipping norm.")
    optim: str = field("adamw_torch", help="transformers optimizer name (open-unlearning uses paged_adamw_32bit on GPU).")
    save_steps: int = field(25, help="Write a checkpoint every N steps (resume restarts from the last one).")
    save_total_limit: int = field(2, help="Checkpoints kept; older ones are deleted.")
    logging_steps: int = field(5, help="Log losses and metrics every N steps.")
    trainable: str = field("", help="Regex of parameter names to train (full fine-tuning); empty = all. "
                                    r"open-unlearning's RMU: model\.layers\.(5|6|7)\.mlp\.down_proj\.weight.")
    probe_qa: int = field(64, help="Forget/retain QA whose answer probability is measured before and after "
                                   "(in status.json); 0 = skip.")
    seed: int = field(0, help="Seed of the forget/retain/template pairing and of training.")

    def __post_init__(self):
        require(self, "learning_rate", self.learning_rate > 0, "must be > 0")
        require(self, "max_steps", self.max_steps >= 0, "must be >= 1 (or 0 to derive the steps from epochs)")
        require(self, "epochs", self.epochs > 0, "must be > 0")
        for key in ("batch_size", "grad_accum", "save_steps", "save_total_limit", "logging_steps"):
            require(self, key, getattr(self, key) >= 1, "must be >= 1")
        require(self, "warmup_ratio", 0 <= self.warmup_ratio < 1, "must be in [0, 1)")
        require(self, "weight_decay", self.weight_decay >= 0, "must be >= 0")
        require(self, "max_grad_norm", self.max_grad_norm > 0, "must be > 0")
        require(self, "probe_qa", self.probe_qa >= 0, "must be >= 0 (0 skips the probe)")
        require(self, "trainable", _compiles(self.trainable), "must be a valid regular expression")
        # transformers' own lists of names (imported only for a non-default value: --help stays fast)
        if self.lr_scheduler != "constant_with_warmup":
            from transformers.trainer_utils import SchedulerType

            require_choice(self, "lr_scheduler", [s.value for s in SchedulerType])
        if self.optim != "adamw_torch":
            from transformers.training_args import OptimizerNames

            require_choice(self, "optim", [o.value for o in OptimizerNames])


def _compiles(pattern: str) -> bool:
    import re

    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


@dataclass
class LoraSettings:
    enabled: bool = field(False, help="Train LoRA adapters instead of all weights (--lora); the saved model is merged.")
    r: int = field(8, help="LoRA rank (peft's default).")
    alpha: float = field(32.0, help="LoRA scaling alpha (Unlearn-Simple / SatImp configs: 32).")
    dropout: float = field(0.05, help="LoRA dropout (Unlearn-Simple / SatImp configs: 0.05).")
    target_modules: str = field("all-linear", help="Modules to adapt: all-linear or a comma list (q_proj,v_proj).")

    def __post_init__(self):
        require(self, "r", self.r >= 1, "must be >= 1")
        require(self, "alpha", self.alpha > 0, "must be > 0")
        require(self, "dropout", 0 <= self.dropout < 1, "must be in [0, 1)")


@dataclass
class DataSettings:
    retain_split: str = field("auto", help="Retain split: auto (forget10 -> retain90), none, or a split name.")
    templates: str = field("idk", help="Template answers for idkpo/idkdpo/flat: idk (the world's idk split) or a "
                                       "file (.jsonl or one answer per line).")
    max_length: int = field(0, help="Truncate prompt + answer to this many tokens; 0 = no truncation.")

    def __post_init__(self):
        require(self, "max_length", self.max_length >= 0, "must be >= 0 (0 = no truncation)")


def run_config_class(method: str) -> type:
    """The dataclass of a run of `method`: method/world/split/model, params (the objective), train, lora, data."""
    from dareu.objectives import OBJECTIVES

    if method not in OBJECTIVES:
        try:
            OBJECTIVES.get(method)
        except DareUError as err:  # the registry's message, plus the RL method
            raise DareUError(f"{err}; and dareu (RL de-attribution, needs --attributor)") from None
    objective = OBJECTIVES.get(method)
    return dataclasses.make_dataclass(f"{objective.__name__}RunConfig", [
        ("method", str, field(method, help="Unlearning method (a registered objective).")),
        ("world", str, field("", help="World folder (or data folder) holding the splits.")),
        ("split", str, field("forget10", help="Forget split.")),
        ("model", str, field("", help="Model to unlearn: a model folder, a run folder or an HF id.")),
        ("params", objective, field(default_factory=objective, help=f"Parameters of {method}.")),
        ("train", TrainSettings, field(default_factory=TrainSettings, help="Training settings.")),
        ("lora", LoraSettings, field(default_factory=LoraSettings, help="LoRA settings.")),
        ("data", DataSettings, field(default_factory=DataSettings, help="Data settings.")),
    ])


def method_yaml(method: str) -> Path | None:
    path = METHODS_DIR / f"{method}.yaml"
    return path if path.is_file() else None


def load_run_config(method: str, overrides: list[str] | None = None, config: str | Path | None = None,
                    flags: dict[str, Any] | None = None):
    """Class defaults <- the method's shipped YAML <- the user's `config` file (layered over it) <- `flags` (nested
    dict from CLI flags) <- key=value overrides. Every key is checked against the method's run config class."""
    return from_dict(run_config_class(method), layered_config(method, overrides, config, flags))


def layered_config(method: str, overrides: list[str] | None = None, config: str | Path | None = None,
                   flags: dict[str, Any] | None = None) -> dict[str, Any]:
    """The method's shipped YAML <- `config` (layered over it, never instead of it) <- `flags` <- key=value
    `overrides`, as one nested dict: the same order for every method, DareU included."""
    shipped = method_yaml(method)
    data = read_yaml(shipped) if shipped else {}
    if config:
        data = merge(data, read_yaml(config))
    data = merge(merge(data, flags or {}), parse_overrides(overrides or []))
    if data.get("method", method) != method:
        raise DareUError(f"config says method {data['method']!r} but --method is {method!r}")
    return {**data, "method": method}
