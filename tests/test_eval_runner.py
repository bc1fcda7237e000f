"""Evaluating models of the tiny world: the eval dict's contract, forget quality against the retain model,
fact leakage and attribution, fast mode, and `dareu eval` with its cached reference logs."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from dareu.cli import main
from dareu.errors import DareUError
from dareu.evaluation import EvalConfig, evaluate_model, reference_logs
from dareu.modeling import load_model, load_tokenizer

SMALL = {"num_samples": 2, "max_new_tokens": 24}  # the world's answers are < 24 tokens
CONTRACT = ["forget_quality", "model_utility", "forget_truth_ratio", "forget_rouge", "retain_rouge", "fact_leakage",
            "fact_leakage_sampled", "fact_leakage_paraphrased", "fact_leakage_sampled_paraphrased",
            "forget_attribution", "forget_Q_A_Prob", "privleak", "extraction_strength", "exact_memorization",
            "mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus", "tug_of_war", "noise_ceiling",
            "retain_Q_A_Prob", "retain_Truth_Ratio", "ra_Q_A_Prob_normalised", "ra_Q_A_ROUGE", "ra_Truth_Ratio",
            "wf_Q_A_Prob_normalised", "wf_Q_A_ROUGE", "wf_Truth_Ratio"]


class NameAttributor:
    """Test double of attribution's interface: probability 1 for an owner named in the response, else 'none'."""

    def __init__(self, owners):
        self.owners = sorted(owners) + ["none"]

    def score(self, prompts, responses):
        out = np.zeros((len(responses), len(self.owners)))
        for i, text in enumerate(responses):
            hit = next((j for j, o in enumerate(self.owners[:-1]) if o in text), len(self.owners) - 1)
            out[i, hit] = 1.0
        return out


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: thread start-up costs more than it saves (and the cores are shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _model(world, name):
    path = str(world / "models" / name)
    return load_model(path, dtype=torch.float32), load_tokenizer(path)


@pytest.fixture(scope="module")
def attributor(tiny_data):
    return NameAttributor({r["owner"] for s in ("forget10", "retain90") for r in tiny_data[s]})


@pytest.fixture(scope="module")
def retain_logs(tiny_world, tiny_data):
    model, tok = _model(tiny_world, "retain-forget10")
    return evaluate_model(model, tok, tiny_data, "forget10", cfg=EvalConfig(**SMALL))


@pytest.fixture(scope="module")
def seed2_logs(tiny_world, tiny_data):
    model, tok = _model(tiny_world, "retain-forget10-seed2")
    return evaluate_model(model, tok, tiny_data, "forget10", cfg=EvalConfig(metrics=["forget_truth_ratio"]))


@pytest.fixture(scope="module")
def target_eval(tiny_world, tiny_data, retain_logs, seed2_logs, attributor):
    model, tok = _model(tiny_world, "target")
    return evaluate_model(model, tok, tiny_data, "forget10", retain_logs=retain_logs, seed2_logs=seed2_logs,
                          attributor=attributor, cfg=EvalConfig(**SMALL))


def test_eval_dict_has_every_contract_key_in_open_unlearning_layout(target_eval, tiny_data):
    assert [k for k in CONTRACT if k not in target_eval] == []
    for name, e in target_eval.items():
        assert set(e) >= {"agg_value", "value_by_index"}, name
    forget_ids = {r["qa_id"] for r in tiny_data["forget10"]}
    assert set(target_eval["forget_truth_ratio"]["value_by_index"]) == forget_ids
    assert json.loads(json.dumps(target_eval)) is not None  # plain JSON


def test_retain_model_scores_forget_quality_one_against_itself(tiny_world, tiny_data, retain_logs):
    model, tok = _model(tiny_world, "retain-forget10")
    again = evaluate_model(model, tok, tiny_data, "forget10", retain_logs=retain_logs,
                           cfg=EvalConfig(metrics=["forget_quality"]))
    assert again["forget_quality"]["agg_value"] == 1.0


def test_target_is_told_apart_from_retain_and_leaks_its_facts(target_eval, retain_logs):
    assert target_eval["forget_quality"]["agg_value"] < 0.5
    assert target_eval["forget_quality"]["noise_ceiling"] == target_eval["noise_ceiling"]["agg_value"]
    leak = target_eval["fact_leakage"]
    assert leak["agg_value"] > 0.9 and leak["retain_reference"] == retain_logs["fact_leakage"]["agg_value"]
    assert leak["agg_value"] > leak["retain_reference"]
    assert target_eval["forget_attribution"]["agg_value"] > 0.9   # the target names the owners
    assert target_eval["privleak"]["retain_auc"] == retain_logs["mia_min_k"]["agg_value"]
    assert set(target_eval["tug_of_war"]["terms"]) == {"forget", "retain", "utility"}


def test_model_utility_is_the_harmonic_mean_of_its_nine_components(target_eval):
    parts = list(target_eval["model_utility"]["components"].values())
    assert len(parts) == 9
    assert target_eval["model_utility"]["agg_value"] == pytest.approx(len(parts) / sum(1 / p for p in parts))


def test_fast_mode_computes_the_learning_curve_subset(tiny_world, tiny_data, retain_logs, attributor):
    model, tok = _model(tiny_world, "target")
    model.train()  # as the RL learner's model is between steps
    fast = evaluate_model(model, tok, tiny_data, "forget10", retain_logs=retain_logs, attributor=attributor,
                          cfg=EvalConfig(fast=True, **SMALL))
    wanted = {"forget_quality", "model_utility", "fact_leakage", "fact_leakage_sampled", "forget_attribution"}
    assert wanted <= set(fast)
    assert not {"mia_loss", "fact_leakage_paraphrased", "extraction_strength"} & set(fast)
    assert fast["forget_quality"]["agg_value"] is not None
    assert model.training  # its mode is restored


def test_attributor_without_the_forget_owners_is_refused_before_generation(tiny_world, tiny_data):
    model, tok = _model(tiny_world, "target")
    with pytest.raises(DareUError, match="does not know the owner"):
        evaluate_model(model, tok, tiny_data, "forget10", attributor=NameAttributor(["Nobody"]),
                       cfg=EvalConfig(fast=True))


def test_retain_logs_of_another_split_are_refused(tiny_world, tiny_data, retain_logs):
    model, tok = _model(tiny_world, "target")
    with pytest.raises(DareUError, match="another split"):
        evaluate_model(model, tok, tiny_data, "forget05", retain_logs=retain_logs, cfg=EvalConfig(fast=True))


# -- the command --------------------------------------------------------------------------------------------
def _eval(capsys, *args):
    rc = main(["eval", *map(str, args), "num_samples=1", "max_new_tokens=24"])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err.strip()


def test_reference_logs_are_computed_once_and_reused_by_the_command(tiny_world, tmp_path, capsys):
    cache = tmp_path / "cache"
    ref = reference_logs(tiny_world, "forget10", EvalConfig(num_samples=1, max_new_tokens=24), cache_dir=cache)
    assert "forget_truth_ratio" in ref.retain and ref.noise_ceiling() > 0
    assert "computing reference logs" in capsys.readouterr().out
    args = ["--world", tiny_world, "--model", tiny_world / "models" / "target", "--split", "forget10",
            "--cache", cache, "--fast"]
    rc, out, _ = _eval(capsys, *args, "--out", tmp_path / "E")  # same settings: the cache is reused
    assert rc == 0 and "computing reference logs" not in out
    written = json.loads((tmp_path / "E" / "eval.json").read_text())
    assert written["forget_quality"]["agg_value"] is not None
    assert written["noise_ceiling"]["agg_value"] is not None
    assert (cache / "retain-forget10" / "eval.json").is_file() and (cache / "retain-forget10-seed2").is_dir()
    stamp = os.path.getmtime(cache / "retain-forget10" / "eval.json")
    rc, out, _ = _eval(capsys, *args, "--out", tmp_path / "E", "--overwrite")
    assert rc == 0 and "computing reference logs" not in out
    assert os.path.getmtime(cache / "retain-forget10" / "eval.json") == stamp
    rc, _, err = _eval(capsys, *args, "--out", tmp_path / "E")
    assert rc == 2 and "--overwrite" in err


def _assert_one_line(rc, err, out_dir, *words):
    assert rc == 2 and len(err.splitlines()) == 1, err
    for w in words:
        assert w in err
    assert not out_dir.exists()


def test_model_without_tokenizer_is_one_clear_line(tiny_world, tmp_path, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("config.json", "model.safetensors", "generation_config.json"):
        (bare / f).write_bytes((tiny_world / "models" / "target" / f).read_bytes())
    rc, _, err = _eval(capsys, "--world", tiny_world, "--model", bare, "--out", tmp_path / "E")
    _assert_one_line(rc, err, tmp_path / "E", "no tokenizer")


def test_split_the_benchmark_lacks_is_one_clear_line(tiny_world, tiny_data, tmp_path, capsys):
    from datasets import DatasetDict

    world = tmp_path / "w"
    DatasetDict({k: v for k, v in tiny_data.items() if k != "holdout"}).save_to_disk(str(world / "data"))
    capsys.readouterr()  # the save's progress bars
    rc, _, err = _eval(capsys, "--world", world, "--model", tiny_world / "models" / "target",
                       "--retain-model", tiny_world / "models" / "retain-forget10", "--out", tmp_path / "E")
    _assert_one_line(rc, err, tmp_path / "E", "'holdout'", "not in this benchmark")
    rc, _, err = _eval(capsys, "--world", tiny_world, "--model", tiny_world / "models" / "target",
                       "--split", "forget20", "--out", tmp_path / "E")
    _assert_one_line(rc, err, tmp_path / "E", "forget20")


def test_retain_model_of_another_split_is_one_clear_line(tiny_world, tmp_path, capsys):
    rc, _, err = _eval(capsys, "--world", tiny_world, "--model", tiny_world / "models" / "target",
                       "--retain-model", tiny_world / "models" / "target", "--out", tmp_path / "E")
    _assert_one_line(rc, err, tmp_path / "E", "retain90, forget10", "retain-forget10")
    rc, _, err = _eval(capsys, "--world", tiny_world, "--model", tiny_world / "models" / "target",
                       "--split", "forget05", "--out", tmp_path / "E")
    _assert_one_line(rc, err, tmp_path / "E", "no retain model for forget05")


def test_retain_logs_of_another_split_are_one_clear_line(tiny_world, tmp_path, capsys):
    logs = tmp_path / "retain.json"
    logs.write_text(json.dumps({"forget_truth_ratio": {"agg_value": 1.0, "value_by_index": {"0": {"score": 1.0}}}}))
    rc, _, err = _eval(capsys, "--world", tiny_world, "--model", tiny_world / "models" / "target",
                       "--retain-logs", logs, "--out", tmp_path / "E")
    _assert_one_line(rc, err, tmp_path / "E", "another split")
