"""`dareu train-attributor` end to end on the tiny world, and its one-line errors."""

from __future__ import annotations

import json

import pytest

from attribution import load_attributor
from attribution.proxy import PROXY_KEYS
from dareu.cli import main


@pytest.fixture(scope="module")
def tfidf_run(tiny_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("attr") / "A"
    rc = main(["train-attributor", "--world", str(tiny_world), "--kind", "tfidf", "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    assert rc == (0 if report["all_ok"] else 1)  # a missed validation bar is written, and the exit code says so
    return out


def test_command_writes_the_contract_report_and_a_loadable_attributor(tfidf_run, tiny_data):
    report = json.loads((tfidf_run / "report.json").read_text())
    assert 0.0 <= report["heldout_accuracy"] <= 1.0
    assert set(report["proxy"]) == set(PROXY_KEYS)
    assert {"accuracy", "macro_f1", "ece", "auroc_forget", "confusion"} <= set(report["test"])
    assert set(report["test"]["auroc_forget"]) == set(tiny_data["forget10"]["owner"])
    assert json.loads((tfidf_run / "status.json").read_text())["state"] == "done"
    att = load_attributor(tfidf_run)
    assert att.kind == "tfidf" and att.benchmark["forget_owners"] == report["benchmark"]["forget_owners"]
    assert (tfidf_run / "samples.jsonl").read_text().count("\n") > len(tiny_data["forget10"])


def test_attribution_follows_the_fact_not_the_name_even_for_the_tfidf_baseline(tfidf_run):
    proxy = json.loads((tfidf_run / "report.json").read_text())["proxy"]
    # the name is present in the wrong-fact answers and absent from the masked ones
    assert proxy["name_masked"] > proxy["wrong_fact"] + 0.3
    assert proxy["target_forget"] > proxy["retain_forget"] + 0.3
    assert proxy["idk"] < 0.2


def test_llm_command_trains_from_the_world_target_with_its_baseline_beside(tiny_world, tmp_path):
    out = tmp_path / "A"
    rc = main(["train-attributor", "--world", str(tiny_world), "--kind", "llm", "--out", str(out),
               "llm.lm_epochs=2", "llm.epochs=1", "llm.batch_size=32"])
    report = json.loads((out / "report.json").read_text())
    assert rc == (0 if report["all_ok"] else 1)  # one epoch on the tiny world may miss a bar; the code says so
    assert report["kind"] == "llm" and report["baseline"]["kind"] == "tfidf"
    assert set(report["proxy"]) == set(PROXY_KEYS) == set(report["baseline"]["proxy"])
    att = load_attributor(out)
    assert att.kind == "llm" and load_attributor(out / "tfidf-baseline").kind == "tfidf"
    assert att.extra["backbone"] == str(tiny_world / "models" / "target")


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("dareu train-attributor: error:")
    return err


def test_bad_input_stops_with_one_clear_line_before_any_work(tiny_world, tmp_path, capsys):
    out = tmp_path / "never"
    err = _one_line_error(capsys, ["train-attributor", "--world", str(tiny_world), "--kind", "tfidf", "--out", str(out),
                                   "data.owners=[Nobody Here]"])
    assert "'Nobody Here' has no examples" in err and not out.exists()
    err = _one_line_error(capsys, ["train-attributor", "--world", str(tiny_world), "--kind", "llm", "--out", str(out),
                                   "--backbone", str(tmp_path / "no-model")])
    assert "does not exist" in err and not out.exists()
    err = _one_line_error(capsys, ["train-attributor", "--world", str(tiny_world), "--out", str(out), "llm.epoch=2"])
    assert "llm.epochs" in err
    err = _one_line_error(capsys, ["train-attributor", "--world", str(tmp_path / "no-world"), "--out", str(out)])
    assert "does not exist" in err


def test_an_existing_out_folder_is_never_overwritten_unless_asked(tfidf_run, tiny_world, capsys):
    err = _one_line_error(capsys, ["train-attributor", "--world", str(tiny_world), "--kind", "tfidf",
                                   "--out", str(tfidf_run)])
    assert "--overwrite" in err and (tfidf_run / "report.json").exists()
