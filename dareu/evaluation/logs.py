"""Per-sample logs that already exist, turned into DareU's eval.json: open-unlearning's TOFU_EVAL.json
(same layout as ours, a few names differ) and TOFU's legacy eval_log_aggregated.json (the format in which
TOFU published its retain models' results), so a model can be scored against published retain logs
without re-running them.

The legacy conversion reproduces TOFU's `aggregate_eval_stat.py` (`get_model_utility`,
`get_forget_quality`) operation for operation, so its numbers agree to floating-point precision.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dareu.errors import DareUError
from dareu.evaluation.reference import Reference, check_reference, read_logs
from dareu.evaluation.suite import METRICS, ORDER, entry

# TOFU legacy file -> our prefix; the order is TOFU's eval_task_dict order.
LEGACY_TASKS = {"eval_real_author_wo_options.json": "ra", "eval_real_world_wo_options.json": "wf",
                "eval_log.json": "retain", "eval_log_forget.json": "forget"}
LEGACY_KEYS = ("avg_gt_loss", "average_perturb_loss", "avg_paraphrased_loss", "rougeL_recall")
# open-unlearning names that DareU's contract renames.
RENAMES = {"forget_Q_A_ROUGE": "forget_rouge", "retain_Q_A_ROUGE": "retain_rouge"}


def is_legacy(logs: dict) -> bool:
    return "eval_log_forget.json" in logs


def to_eval(logs: dict) -> dict:
    """Any supported log (TOFU legacy, open-unlearning, DareU) as a DareU eval dict."""
    if is_legacy(logs):
        return from_tofu_legacy(logs)
    bad = [k for k, v in logs.items() if not isinstance(v, dict)]
    if bad or not logs:
        raise DareUError("logs are neither open-unlearning/DareU eval logs ({metric: {agg_value, value_by_index}}) "
                         f"nor TOFU's eval_log_aggregated.json (entry {bad[0] if bad else '?'!r} is not a metric)")
    return {RENAMES.get(k, k): v for k, v in logs.items()}


def _values(task: dict, key: str, file: str) -> np.ndarray:
    if key not in task:
        raise DareUError(f"TOFU log {file} has no {key!r} (needs {', '.join(LEGACY_KEYS)})")
    return np.array(list(task[key].values()))


def from_tofu_legacy(logs: dict) -> dict:
    """TOFU's eval_log_aggregated.json -> eval dict. Aggregates use TOFU's exact expressions (no 1e-10
    guards, `1 - 1/stat` for utility truth ratios); per-sample truth ratios are stored as `R = 1/stat`,
    the open-unlearning convention (the KS p-value is the same for R and 1/R)."""
    out: dict[str, dict] = {}
    for file, prefix in LEGACY_TASKS.items():
        if file not in logs:
            continue
        task = logs[file]
        ids = list(task["avg_gt_loss"].keys()) if "avg_gt_loss" in task else []
        gt_loss = _values(task, "avg_gt_loss", file)
        if "eval_log" in file:  # retain / forget: plain probability
            probs = np.exp(-1 * gt_loss)
            prob_name = f"{prefix}_Q_A_Prob"
        else:  # real authors / world facts: normalised over the options
            true_p = np.exp(-1 * gt_loss)
            false_p = np.exp(-1 * _values(task, "average_perturb_loss", file))
            all_p = np.concatenate([np.expand_dims(true_p, axis=-1), false_p], axis=1).sum(-1)
            probs = true_p / all_p
            prob_name = f"{prefix}_Q_A_Prob_normalised"
        out[prob_name] = entry(np.mean(probs), {i: {"prob": float(p), "avg_loss": float(lo)}
                                               for i, p, lo in zip(ids, probs, gt_loss)})
        rouge = _values(task, "rougeL_recall", file)
        rouge_name = {"forget": "forget_rouge", "retain": "retain_rouge"}.get(prefix, f"{prefix}_Q_A_ROUGE")
        out[rouge_name] = entry(rouge.mean(), {i: {"rougeL_recall": float(v)} for i, v in zip(ids, rouge)})
        para = _values(task, "avg_paraphrased_loss", file)
        pert = _values(task, "average_perturb_loss", file).mean(axis=-1)
        stat = np.exp(pert - para)  # TOFU's statistic: P(paraphrase) / P(perturbed), i.e. 1/R
        if prefix == "forget":
            agg, name = np.mean(np.minimum(stat, 1 / stat)), "forget_truth_ratio"
        else:
            agg, name = np.mean(np.maximum(0, 1 - 1 / stat)), f"{prefix}_Truth_Ratio"
        out[name] = entry(agg, {i: {"score": float(1 / s)} for i, s in zip(ids, stat)})
    if not out:
        raise DareUError(f"TOFU log holds none of {', '.join(LEGACY_TASKS)}")
    return out


def aggregate_logs(logs_path: str | Path, retain_logs_path: str | Path | None = None,
                   seed2_logs_path: str | Path | None = None) -> dict:
    """eval dict of existing per-sample logs, with forget quality, model utility, PrivLeak and Tug-of-War
    recomputed from them (against the retain logs when given); entries the logs lack stay absent."""
    results = to_eval(read_logs(logs_path, "--logs"))
    refs = []
    for path, what in ((retain_logs_path, "--retain-logs"), (seed2_logs_path, "--retain-seed2-logs")):
        if path is None:
            refs.append(None)
            continue
        logs = to_eval(read_logs(path, what))
        if "forget_truth_ratio" in results:
            ids = list(results["forget_truth_ratio"]["value_by_index"])
            check_reference(logs, ids, f"--logs {logs_path}", f"{what} {path}")
        refs.append(logs)
    ref = Reference(*refs)
    for name in ORDER:
        m = METRICS.get(name)
        if not m.derived or not all(d in results for d in m.needs):
            continue
        if name == "noise_ceiling" and ref.seed2 is None:
            continue
        value = m.compute(results, ref)
        if value["agg_value"] is not None or name not in results:
            results[name] = value
    from dareu.evaluation.runner import attach_references, ordered

    return ordered(attach_references(results, ref))
