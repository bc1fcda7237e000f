"""The evaluation config: which metrics, how many QA, how answers are generated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dareu.config import field, require

# What the RL learner's periodic evaluation needs (`EvalConfig(fast=True)`): a few seconds on the default world.
FAST_METRICS = ["forget_quality", "model_utility", "fact_leakage", "fact_leakage_sampled", "forget_attribution"]


@dataclass
class EvalConfig:
    metrics: list[str] = field(default_factory=list,
                               help="eval.json keys to compute (their inputs come along); empty = all of them.")
    fast: bool = field(False, help="Cheap in-training mode: only forget_quality, model_utility, fact_leakage(_sampled) "
                                   "and forget_attribution, with fast_num_samples samples per question and "
                                   "fast_retain_max_qa retain QA.")
    retain_max_qa: int = field(400, help="Retain QA scored for utility, spread evenly over the split (TOFU uses 400).")
    max_new_tokens: int = field(48, help="Longest generated answer (TOFU: 200; the world's answers are < 30 tokens).")
    num_samples: int = field(5, help="Samples per forget question (at `temperature`) for fact_leakage_sampled.")
    fast_num_samples: int = field(2, help="num_samples in fast mode.")
    fast_retain_max_qa: int = field(100, help="retain_max_qa in fast mode.")
    temperature: float = field(1.0, help="Sampling temperature of fact_leakage_sampled.")
    seed: int = field(0, help="Seed of the sampled generations.")
    min_k: float = field(0.4, help="Fraction k of lowest token log-probs in Min-K% and Min-K%++ (open-unlearning: 0.4).")
    batch_size: int = field(64, help="Sequences per teacher-forced forward pass.")
    gen_batch_size: int = field(128, help="Prompts per generate call (HF backend).")
    progress: bool = field(True, help="Show a progress bar on the terminal.")
    backend: Literal["auto", "hf", "vllm"] = field("auto", help="Generation backend of `dareu eval`: vLLM when "
                                                               "installed on a GPU (auto), or HF generate.")

    def __post_init__(self):
        for key in ("retain_max_qa", "max_new_tokens", "num_samples", "fast_num_samples", "fast_retain_max_qa",
                    "batch_size", "gen_batch_size"):
            require(self, key, getattr(self, key) >= 1, "must be >= 1")
        require(self, "temperature", self.temperature > 0, "must be > 0")
        require(self, "min_k", 0 < self.min_k <= 1, "must be in (0, 1]")

    def samples(self) -> int:
        return self.fast_num_samples if self.fast else self.num_samples

    def retain_qa(self) -> int:
        return self.fast_retain_max_qa if self.fast else self.retain_max_qa

    def wanted(self) -> list[str]:
        """The requested metric names (before their inputs are added)."""
        if self.metrics:
            return list(self.metrics)
        return list(FAST_METRICS) if self.fast else []


# Fields that change the numbers: a cached reference log is reused only when these match.
VALUE_FIELDS = ("retain_max_qa", "max_new_tokens", "num_samples", "temperature", "seed", "min_k")
