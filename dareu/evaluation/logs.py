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


def to_eval(logs: dict, source: str = "logs") -> dict:
    """Any supported log (TOFU legacy, open-unlearning, DareU) as a DareU eval dict; `source` (e.g.
    "--logs FILE") names the file in errors."""
    if is_legacy(logs):
        return from_tofu_legacy(logs, source)
    bad = [k for k, v in logs.items() if not isinstance(v, dict)]
    if bad or not logs:
        raise DareUError(f"{source}: logs are neither open-unlearning/DareU eval logs ({{metric: {{agg_value, "
                         f"value_by_index}}}}) nor TOFU's eval_log_aggregated.json (entry {bad[0] if bad else '?'!r} "
                         "is not a metric)")
    for name, metric in logs.items():
        check_metric(metric, name, source)
    return {RENAMES.get(k, k): v for k, v in logs.items()}


# Per-sample fields read as numbers (a number, null or a list of them, e.g. the perturbed answers' `prob`);
# other fields (generation, split, ...) are text and pass unchecked.
NUMERIC_FIELDS = ("prob", "avg_loss", "score", "rougeL_recall", "rougeL_f1")
ENTRY_SHAPE = '{"agg_value": number or null, "value_by_index": {sample id: {"score": number, ...}}}'


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return value is None or _is_real(value)


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_numeric(value) -> bool:
    return _is_number(value) or (isinstance(value, list) and all(_is_number(v) for v in value))


def check_metric(metric: dict, name: str, source: str) -> None:
    """One clear line for an entry of the wrong shape, before a metric reads it (a string where a number
    belongs raised ValueError, a list for value_by_index AttributeError)."""
    def bad(what: str) -> DareUError:
        return DareUError(f"{source}: metric {name!r}: {what}; each metric must be {ENTRY_SHAPE}")

    if not _is_number(metric.get("agg_value")):
        raise bad(f"agg_value is {_show(metric['agg_value'])}, not a number")
    by_index = metric.get("value_by_index", {})
    if not isinstance(by_index, dict):
        raise bad(f"value_by_index is a {type(by_index).__name__}, not a mapping of sample id to values")
    for idx, sample in by_index.items():
        if not isinstance(sample, dict):
            raise bad(f"sample {idx!r} is {_show(sample)}, not a mapping of field to value")
        for key in NUMERIC_FIELDS:
            if key in sample and not _is_numeric(sample[key]):
                raise bad(f"sample {idx!r} has {key} {_show(sample[key])}, not a number")


def _values(task, key: str, file: str, source: str) -> np.ndarray:
    """TOFU's per-sample values {sample id: number} (average_perturb_loss: {sample id: [numbers]})."""
    if not isinstance(task, dict):
        raise DareUError(f"{source}: TOFU log entry {file} is a {type(task).__name__}, not a mapping of "
                         f"{', '.join(LEGACY_KEYS)} to per-sample values")
    if key not in task:
        raise DareUError(f"{source}: TOFU log {file} has no {key!r} (needs {', '.join(LEGACY_KEYS)})")
    perturbed = key == "average_perturb_loss"  # one loss per perturbed answer
    shape = "{sample id: [numbers]}" if perturbed else "{sample id: number}"
    values = task[key]
    if not isinstance(values, dict):
        raise DareUError(f"{source}: TOFU log {file}: {key} is a {type(values).__name__}; expected {shape}")
    check = _is_perturb_row if perturbed else _is_real
    for idx, value in values.items():
        if not check(value):
            raise DareUError(f"{source}: TOFU log {file}: {key} of sample {idx!r} is {_show(value)}; expected {shape}")
    if perturbed and len({len(v) for v in values.values()}) > 1:
        raise DareUError(f"{source}: TOFU log {file}: {key} has a different number of perturbed losses per "
                         f"sample; expected {shape} with as many numbers for every sample")
    return np.array(list(values.values()), dtype=float)


def _is_perturb_row(value) -> bool:
    return isinstance(value, list) and bool(value) and all(_is_real(v) for v in value)


def from_tofu_legacy(logs: dict, source: str = "logs") -> dict:
    """TOFU's eval_log_aggregated.json -> eval dict. Aggregates use TOFU's exact expressions (no 1e-10
    guards, `1 - 1/stat` for utility truth ratios); per-sample truth ratios are stored as `R = 1/stat`,
    the open-unlearning convention (the KS p-value is the same for R and 1/R)."""
    out: dict[str, dict] = {}
    for file, prefix in LEGACY_TASKS.items():
        if file not in logs:
            continue
        task = logs[file]
        gt_loss = _values(task, "avg_gt_loss", file, source)
        ids = list(task["avg_gt_loss"])
        if "eval_log" in file:  # retain / forget: plain probability
            probs = np.exp(-1 * gt_loss)
            prob_name = f"{prefix}_Q_A_Prob"
        else:  # real authors / world facts: normalised over the options
            true_p = np.exp(-1 * gt_loss)
            false_p = np.exp(-1 * _values(task, "average_perturb_loss", file, source))
            all_p = np.concatenate([np.expand_dims(true_p, axis=-1), false_p], axis=1).sum(-1)
            probs = true_p / all_p
            prob_name = f"{prefix}_Q_A_Prob_normalised"
        out[prob_name] = entry(np.mean(probs), {i: {"prob": float(p), "avg_loss": float(lo)}
                                               for i, p, lo in zip(ids, probs, gt_loss)})
        rouge = _values(task, "rougeL_recall", file, source)
        rouge_name = {"forget": "forget_rouge", "retain": "retain_rouge"}.get(prefix, f"{prefix}_Q_A_ROUGE")
        out[rouge_name] = entry(rouge.mean(), {i: {"rougeL_recall": float(v)} for i, v in zip(ids, rouge)})
        para = _values(task, "avg_paraphrased_loss", file, source)
        pert = _values(task, "average_perturb_loss", file, source).mean(axis=-1)
        stat = np.exp(pert - para)  # TOFU's statistic: P(paraphrase) / P(perturbed), i.e. 1/R
        if prefix == "forget":
            agg, name = np.mean(np.minimum(stat, 1 / stat)), "forget_truth_ratio"
        else:
            agg, name = np.mean(np.maximum(0, 1 - 1 / stat)), f"{prefix}_Truth_Ratio"
        out[name] = entry(agg, {i: {"score": float(1 / s)} for i, s in zip(ids, stat)})
    if not out:
        raise DareUError(f"{source}: TOFU log holds none of {', '.join(LEGACY_TASKS)}")
    return out


def aggregate_logs(logs_path: str | Path, retain_logs_path: str | Path | None = None,
                   seed2_logs_path: str | Path | None = None) -> dict:
    """eval dict of existing per-sample logs, with forget quality, model utility, PrivLeak and Tug-of-War
    recomputed from them (against the retain logs when given); entries the logs lack stay absent."""
    results = to_eval(read_logs(logs_path, "--logs"), f"--logs {logs_path}")
    refs = []
    for path, what in ((retain_logs_path, "--retain-logs"), (seed2_logs_path, "--retain-seed2-logs")):
        if path is None:
            refs.append(None)
            continue
        logs = to_eval(read_logs(path, what), f"{what} {path}")
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
