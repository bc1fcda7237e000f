"""Aggregating logs that already exist: TOFU's legacy eval_log_aggregated.json (to floating-point
precision against TOFU's aggregate_eval_stat.py) and open-unlearning's TOFU_EVAL.json."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import hmean, ks_2samp

from dareu.cli import main
from dareu.errors import DareUError
from dareu.evaluation import aggregate_logs

FILES = ["eval_real_author_wo_options.json", "eval_real_world_wo_options.json", "eval_log.json",
         "eval_log_forget.json"]


def legacy_log(seed: int, n: int = 5) -> dict:
    """A small eval_log_aggregated.json with TOFU's four files and per-sample keys."""
    rng = np.random.default_rng(seed)

    def per_sample(values):
        return {str(i): v for i, v in enumerate(values)}

    log = {}
    for file in FILES:
        log[file] = {
            "avg_gt_loss": per_sample(rng.uniform(0.01, 2.0, n).tolist()),
            "avg_paraphrased_loss": per_sample(rng.uniform(0.1, 2.5, n).tolist()),
            "average_perturb_loss": per_sample(rng.uniform(0.5, 3.0, (n, 3)).tolist()),
            "rougeL_recall": per_sample(rng.uniform(0, 1, n).tolist()),
        }
    return log


def tofu_reference(ckpt: dict, retain: dict) -> dict:
    """TOFU's aggregate_eval_stat.py (get_model_utility + get_forget_quality), written out as it computes."""
    names = {"eval_real_author_wo_options.json": "Real Authors", "eval_real_world_wo_options.json": "Real World",
             "eval_log.json": "Retain", "eval_log_forget.json": "Forget"}
    out = {f"{m} {t}": [] for t in names.values() for m in ("ROUGE", "Prob.", "Truth Ratio")}
    for k in ckpt:
        if "eval_log" in k:
            prob = np.mean(np.exp(-1 * np.array(list(ckpt[k]["avg_gt_loss"].values()))))
        else:
            true_p = np.exp(-1 * np.array(list(ckpt[k]["avg_gt_loss"].values())))
            false_p = np.exp(-1 * np.array(list(ckpt[k]["average_perturb_loss"].values())))
            all_p = np.concatenate([np.expand_dims(true_p, axis=-1), false_p], axis=1).sum(-1)
            prob = np.mean(true_p / all_p)
        out[f"Prob. {names[k]}"] = prob
        out[f"ROUGE {names[k]}"] = np.array(list(ckpt[k]["rougeL_recall"].values())).mean()
        para = np.array(list(ckpt[k]["avg_paraphrased_loss"].values()))
        pert = np.array(list(ckpt[k]["average_perturb_loss"].values())).mean(axis=-1)
        stat = np.exp(pert - para)
        out[f"Truth Ratio {names[k]}"] = (np.mean(np.minimum(stat, 1 / stat)) if "forget" in k
                                          else np.mean(np.maximum(0, 1 - 1 / stat)))
    out["Model Utility"] = hmean([v for k, v in out.items() if "Forget" not in k])

    def forget_stat(log):
        f = log["eval_log_forget.json"]
        para = np.array(list(f["avg_paraphrased_loss"].values()))
        pert = np.array(list(f["average_perturb_loss"].values())).mean(axis=-1)
        return np.exp(pert - para)

    out["Forget Quality"] = ks_2samp(forget_stat(ckpt), forget_stat(retain)).pvalue
    return out


OURS = {"Model Utility": "model_utility", "Forget Quality": "forget_quality",
        "Prob. Retain": "retain_Q_A_Prob", "ROUGE Retain": "retain_rouge", "Truth Ratio Retain": "retain_Truth_Ratio",
        "Prob. Real Authors": "ra_Q_A_Prob_normalised", "ROUGE Real Authors": "ra_Q_A_ROUGE",
        "Truth Ratio Real Authors": "ra_Truth_Ratio", "Prob. Real World": "wf_Q_A_Prob_normalised",
        "ROUGE Real World": "wf_Q_A_ROUGE", "Truth Ratio Real World": "wf_Truth_Ratio",
        "Prob. Forget": "forget_Q_A_Prob", "ROUGE Forget": "forget_rouge", "Truth Ratio Forget": "forget_truth_ratio"}


def test_legacy_logs_reproduce_tofu_aggregate_eval_stat(tmp_path):
    ckpt, retain = legacy_log(1), legacy_log(2)
    (tmp_path / "ckpt.json").write_text(json.dumps(ckpt))
    (tmp_path / "retain.json").write_text(json.dumps(retain))
    ours = aggregate_logs(tmp_path / "ckpt.json", tmp_path / "retain.json")
    tofu = tofu_reference(ckpt, retain)
    for theirs, mine in OURS.items():
        assert ours[mine]["agg_value"] == float(tofu[theirs]), theirs  # the same float, not just close
    assert 0 < ours["forget_quality"]["agg_value"] < 1


def test_legacy_log_against_itself_has_forget_quality_one(tmp_path):
    (tmp_path / "log.json").write_text(json.dumps(legacy_log(3)))
    ours = aggregate_logs(tmp_path / "log.json", tmp_path / "log.json")
    assert ours["forget_quality"]["agg_value"] == 1.0


def ou_log(ratios: list[float], ids=None) -> dict:
    ids = ids or [str(i) for i in range(len(ratios))]
    return {
        "forget_truth_ratio": {"agg_value": 0.5, "value_by_index": {i: {"score": r} for i, r in zip(ids, ratios)}},
        "forget_Q_A_ROUGE": {"agg_value": 0.4, "value_by_index": {i: {"rougeL_recall": 0.4} for i in ids}},
        "mia_min_k": {"agg_value": 0.9, "value_by_index": {}},
    }


def test_open_unlearning_logs_get_forget_quality_and_privleak_from_retain_logs(tmp_path):
    (tmp_path / "TOFU_EVAL.json").write_text(json.dumps(ou_log([0.1, 0.2, 0.3, 0.4])))
    (tmp_path / "retain.json").write_text(json.dumps(ou_log([1.0, 2.0, 3.0, 4.0])))
    ours = aggregate_logs(tmp_path / "TOFU_EVAL.json", tmp_path / "retain.json")
    assert ours["forget_quality"]["agg_value"] == pytest.approx(2 / 70)   # disjoint samples of 4 and 4
    assert ours["forget_rouge"]["agg_value"] == 0.4                        # open-unlearning's forget_Q_A_ROUGE
    assert ours["privleak"]["agg_value"] == pytest.approx(0.0)              # same Min-K% AUC as retain


def test_retain_logs_of_another_split_are_refused(tmp_path):
    (tmp_path / "ckpt.json").write_text(json.dumps(ou_log([0.1, 0.2, 0.3, 0.4])))
    (tmp_path / "retain.json").write_text(json.dumps(ou_log([1.0, 2.0])))
    with pytest.raises(DareUError, match="another split"):
        aggregate_logs(tmp_path / "ckpt.json", tmp_path / "retain.json")


def test_eval_logs_command_writes_eval_json(tmp_path, capsys):
    (tmp_path / "ckpt.json").write_text(json.dumps(legacy_log(4)))
    (tmp_path / "retain.json").write_text(json.dumps(legacy_log(5)))
    rc = main(["eval", "--logs", str(tmp_path / "ckpt.json"), "--retain-logs", str(tmp_path / "retain.json"),
               "--out", str(tmp_path / "E")])
    assert rc == 0
    written = json.loads((tmp_path / "E" / "eval.json").read_text())
    assert set(written["model_utility"]) >= {"agg_value", "value_by_index"}
    assert "forget_quality" in capsys.readouterr().out


def test_eval_logs_command_rejects_a_file_that_is_not_logs(tmp_path, capsys):
    (tmp_path / "bad.json").write_text(json.dumps({"a": 1}))
    rc = main(["eval", "--logs", str(tmp_path / "bad.json"), "--out", str(tmp_path / "E")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "TOFU" in err
    assert not (tmp_path / "E").exists()


def _eval_logs_error(capsys, tmp_path, logs: dict, retain: dict) -> str:
    """Run `dareu eval --logs ckpt.json --retain-logs retain.json`: it must stop with code 2 and one line."""
    (tmp_path / "ckpt.json").write_text(json.dumps(logs))
    (tmp_path / "retain.json").write_text(json.dumps(retain))
    rc = main(["eval", "--logs", str(tmp_path / "ckpt.json"), "--retain-logs", str(tmp_path / "retain.json"),
               "--out", str(tmp_path / "E")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("dareu eval: error: ") and not (tmp_path / "E").exists()
    return err


def test_eval_logs_names_file_metric_and_sample_of_a_per_sample_value_that_is_not_a_number(tmp_path, capsys):
    bad = ou_log([0.1, 0.2, 0.3, 0.4])
    bad["forget_truth_ratio"]["value_by_index"]["2"]["score"] = "abc"
    err = _eval_logs_error(capsys, tmp_path, bad, ou_log([1.0, 2.0, 3.0, 4.0]))
    assert f"--logs {tmp_path / 'ckpt.json'}" in err and "'forget_truth_ratio'" in err
    assert "sample '2' has score 'abc', not a number" in err and '"value_by_index": {sample id:' in err
    err = _eval_logs_error(capsys, tmp_path, ou_log([1.0, 2.0, 3.0, 4.0]), bad)  # the retain side too
    assert f"--retain-logs {tmp_path / 'retain.json'}" in err and "'abc'" in err


def test_eval_logs_refuses_value_by_index_given_as_a_list_with_the_expected_mapping(tmp_path, capsys):
    retain = ou_log([1.0, 2.0, 3.0, 4.0])
    retain["forget_truth_ratio"]["value_by_index"] = [{"score": r} for r in (1.0, 2.0, 3.0, 4.0)]
    err = _eval_logs_error(capsys, tmp_path, ou_log([0.1, 0.2, 0.3, 0.4]), retain)
    assert f"--retain-logs {tmp_path / 'retain.json'}" in err and "'forget_truth_ratio'" in err
    assert "value_by_index is a list, not a mapping of sample id to values" in err


def test_eval_logs_refuses_an_agg_value_that_is_not_a_number(tmp_path, capsys):
    bad = ou_log([0.1, 0.2, 0.3, 0.4])
    bad["mia_min_k"]["agg_value"] = "0.9"
    err = _eval_logs_error(capsys, tmp_path, bad, ou_log([1.0, 2.0, 3.0, 4.0]))
    assert "'mia_min_k': agg_value is '0.9', not a number" in err


@pytest.mark.parametrize("key,value,expected", [
    ("avg_gt_loss", "abc", "avg_gt_loss of sample '1' is 'abc'; expected {sample id: number}"),
    ("average_perturb_loss", 0.5, "average_perturb_loss of sample '1' is 0.5; expected {sample id: [numbers]}"),
])
def test_tofu_legacy_logs_name_the_file_key_and_sample_of_a_bad_value(tmp_path, capsys, key, value, expected):
    bad = legacy_log(6)
    bad["eval_log.json"][key]["1"] = value
    err = _eval_logs_error(capsys, tmp_path, bad, legacy_log(7))
    assert f"--logs {tmp_path / 'ckpt.json'}: TOFU log eval_log.json: {expected}" in err


def test_tofu_legacy_logs_with_a_list_instead_of_a_mapping_are_refused(tmp_path, capsys):
    bad = legacy_log(6)
    bad["eval_log_forget.json"]["rougeL_recall"] = list(bad["eval_log_forget.json"]["rougeL_recall"].values())
    err = _eval_logs_error(capsys, tmp_path, legacy_log(7), bad)
    assert "TOFU log eval_log_forget.json: rougeL_recall is a list; expected {sample id: number}" in err
