"""Evaluation: TOFU and MUSE metrics as open-unlearning computes them, plus DareU's fact leakage,
forget attribution, Tug-of-War and the noise ceiling.

- `evaluate_model(model, tok, data, split, retain_logs=..., attributor=..., cfg=EvalConfig())`: an
  in-memory model -> `{metric: {agg_value, value_by_index}}` (`EvalConfig(fast=True)` for training curves).
- `run_eval(model_path, world_or_benchmark, split, out_dir, attributor)`: what `dareu eval` runs;
  finds or computes (and caches) the retain model's logs, writes eval.json.
- `reference_logs(world, split)`: the retain model's (and second seed's) logs, computed once and cached.
- `aggregate_logs(path, retain_logs_path)`: existing open-unlearning / TOFU logs -> the same eval.json.
- `METRICS`: the registry of every eval.json key; `metrics`: the formulas over per-sample values.
"""

from dareu.evaluation.config import FAST_METRICS, EvalConfig
from dareu.evaluation.logs import aggregate_logs
from dareu.evaluation.reference import Reference, read_logs
from dareu.evaluation.runner import cached_logs, evaluate_model, plan, reference_logs, run_eval
from dareu.evaluation.suite import METRICS, UTILITY_COMPONENTS, scores

__all__ = [
           "FAST_METRICS",
           "METRICS",
           "UTILITY_COMPONENTS",
           "EvalConfig",
           "Reference",
           "aggregate_logs",
           "cached_logs",
           "evaluate_model",
           "plan",
           "read_logs",
           "reference_logs",
           "run_eval",
           "scores",
]
