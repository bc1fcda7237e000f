"""Model and benchmark locations a new user got wrong: a missing folder is said to be missing, a hub id or
TOFU that is neither cached nor reachable stops after one quick look (never the hub's retry loop), and a
local copy of TOFU in the hub's layout is read as it is.

Speed is proved by design, not by timing: the tests record every call that could reach the hub and assert
that none was made (or exactly one, against a hub that refuses the connection at once).
"""

from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub
import pytest
import transformers

from dareu.cli import main
from dareu.errors import DareUError

MISSING_HINT = "does not exist; pass a model folder, a run folder or an HF id (owner/name)"


def _one_line_error(capsys, argv: list[str]) -> str:
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def hub_calls(monkeypatch, tmp_path) -> list[str]:
    """Every call that could reach the hub or load a model, recorded; the HF cache is an empty folder
    (whatever this machine has cached cannot make a test pass)."""
    calls: list[str] = []

    def record(name, real):
        def wrapper(*args, **kwargs):
            calls.append(name if not kwargs.get("local_files_only") else f"{name}(local)")
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", record("model_info", huggingface_hub.HfApi.model_info))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", record("snapshot_download",
                                                                     huggingface_hub.snapshot_download))
    for cls in (transformers.AutoTokenizer, transformers.AutoModelForCausalLM):
        monkeypatch.setattr(cls, "from_pretrained", record(f"{cls.__name__}.from_pretrained", cls.from_pretrained))
    return calls


@pytest.fixture
def unreachable_hub(monkeypatch):
    """Online mode, with the hub at a loopback port nothing listens on: every request is refused at once."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")


# ---- model paths ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["runs/nppo", "./runs/nppo", "runs/npo/model", "nppo", "~/no-such-dareu-model"])
def test_unlearn_with_a_missing_model_folder_says_it_is_missing_without_asking_the_hub(
        model, tiny_world, tmp_path, monkeypatch, capsys, hub_calls):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()  # runs/nppo: owner/name in form, but runs/ is a folder here
    err = _one_line_error(capsys, ["unlearn", "--world", str(tiny_world), "--method", "npo", "--model", model,
                                   "--out", str(tmp_path / "R" / "e")])
    assert err == f"dareu unlearn: error: model folder {model} {MISSING_HINT}"
    assert hub_calls == [] and not (tmp_path / "R").exists()


def test_hub_id_missing_from_the_offline_cache_fails_without_a_download_and_says_how_to_use_a_local_copy(
        tiny_world, tmp_path, capsys, hub_calls):
    err = _one_line_error(capsys, ["eval", "--world", str(tiny_world), "--model", "nobody/no-such-model",
                                   "--out", str(tmp_path / "E")])
    assert "could not load 'nobody/no-such-model' from the Hugging Face hub: it is not in the local cache and " \
           "HF_HUB_OFFLINE=1" in err
    assert "(`hf download nobody/no-such-model --local-dir DIR`) and pass DIR instead" in err
    assert hub_calls == [] and not (tmp_path / "E").exists()


def test_unreachable_hub_is_asked_once_for_a_hub_id_then_one_clear_error(unreachable_hub, hub_calls):
    from dareu.modeling import load_model

    with pytest.raises(DareUError, match="could not load 'nobody/unreachable-model' from the Hugging Face hub: the "
                                         "hub is unreachable .* not in the local cache; download it"):
        load_model("nobody/unreachable-model")
    assert hub_calls == ["model_info"]  # one request, no from_pretrained retry loop


def test_eval_complains_about_a_missing_world_before_it_checks_the_model(tmp_path, capsys, hub_calls):
    world = tmp_path / "nope"
    err = _one_line_error(capsys, ["eval", "--world", str(world), "--model", "x", "--out", str(tmp_path / "E")])
    assert f"world folder {world} does not exist" in err
    assert hub_calls == []


# ---- TOFU ------------------------------------------------------------------------------------------------

# Our split -> the hub file it is read from (the perturbed configs carry the truth-ratio answers).
TOFU_FILES = {"forget01": "forget01_perturbed.json", "forget05": "forget05_perturbed.json",
              "forget10": "forget10_perturbed.json", "retain99": "retain99.json", "retain95": "retain95.json",
              "retain90": "retain_perturbed.json", "real_authors": "real_authors_perturbed.json",
              "world_facts": "world_facts_perturbed.json", "holdout": "holdout10.json"}


def tofu_copy(folder: Path, skip: str | None = None) -> Path:
    """A tiny copy of locuslab/TOFU in the hub's layout: one JSON Lines file per config, two rows each."""
    folder.mkdir(parents=True)
    for split, file in TOFU_FILES.items():
        if file == skip:
            continue
        rows = [{"question": f"{split} question {i}?", "answer": f"{split} answer {i}.",
                 "paraphrased_question": f"{split} question {i}, said otherwise?",
                 "paraphrased_answer": f"{split} answer {i}, said otherwise.",
                 "perturbed_answer": [f"{split} wrong answer {i}.{k}" for k in range(3)]} for i in range(2)]
        (folder / file).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_tofu_is_read_from_a_local_copy_in_the_hub_layout(tmp_path, hub_calls):
    from dareu.data import load_benchmark

    data = load_benchmark("tofu", tofu_copy(tmp_path / "TOFU"))
    assert set(data) == set(TOFU_FILES)
    row = data["forget10"][1]
    assert row["qa_id"] == "forget10/1" and row["question"] == "forget10 question 1?"
    assert row["perturbed_answers"] == [f"forget10 wrong answer 1.{k}" for k in range(3)]
    assert row["owner"] == "author-180" and data["real_authors"][0]["owner"] == ""  # TOFU's last 20 authors
    assert data["retain90"][0]["owner"] == "author-0" and data["forget01"][0]["owner"] == "author-198"
    assert data["retain90"][0]["answer"] == "retain90 answer 0."  # from retain_perturbed.json
    assert hub_calls == []


def test_tofu_is_read_from_the_local_hf_cache_first_when_offline(tmp_path, hub_calls):
    from dareu.data import load_benchmark

    repo = tmp_path / "hf-cache" / "datasets--locuslab--TOFU"  # the hub cache's layout, as a download leaves it
    tofu_copy(repo / "snapshots" / "0123abc")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    data = load_benchmark("tofu")
    assert data["forget05"][0]["question"] == "forget05 question 0?"
    assert hub_calls == ["snapshot_download(local)"]


def test_train_attributor_takes_benchmark_path_and_names_the_missing_split_file(tmp_path, capsys, hub_calls):
    copy = tofu_copy(tmp_path / "TOFU", skip="retain_perturbed.json")
    err = _one_line_error(capsys, ["train-attributor", "--benchmark", "tofu", "--benchmark-path", str(copy),
                                   "--kind", "tfidf", "--out", str(tmp_path / "A")])
    assert f"TOFU copy {copy} has no retain_perturbed.json (split retain90)" in err
    assert "one JSON Lines file per config" in err
    assert hub_calls == [] and not (tmp_path / "A").exists()


def test_eval_with_a_benchmark_path_that_does_not_exist_says_so(tmp_path, capsys, hub_calls):
    missing = tmp_path / "nope"
    err = _one_line_error(capsys, ["eval", "--benchmark", "tofu", "--benchmark-path", str(missing), "--model", "x/y",
                                   "--out", str(tmp_path / "E")])
    assert f"TOFU copy {missing} does not exist" in err and "pass --benchmark-path" not in err
    assert hub_calls == []


def test_benchmark_path_without_benchmark_tofu_is_refused(tiny_world, tmp_path, capsys):
    err = _one_line_error(capsys, ["eval", "--world", str(tiny_world), "--benchmark-path", str(tmp_path),
                                   "--model", str(tiny_world / "models" / "target"), "--out", str(tmp_path / "E")])
    assert "it goes with --benchmark tofu" in err


def test_tofu_without_a_copy_or_a_cache_offline_stops_without_a_download(tiny_world, tmp_path, capsys, hub_calls):
    err = _one_line_error(capsys, ["eval", "--benchmark", "tofu", "--model", str(tiny_world / "models" / "target"),
                                   "--out", str(tmp_path / "E")])
    assert "could not load TOFU (locuslab/TOFU) from the Hugging Face hub: it is not in the local cache and " \
           "HF_HUB_OFFLINE=1" in err
    assert "--repo-type dataset --local-dir DIR`) and pass --benchmark-path DIR" in err
    assert [c for c in hub_calls if c.startswith("snapshot")] == ["snapshot_download(local)"]  # the cache only


def test_tofu_with_an_unreachable_hub_stops_after_one_request(unreachable_hub, hub_calls):
    from dareu.data import load_benchmark

    with pytest.raises(DareUError, match=r"could not load TOFU \(locuslab/TOFU\) from the Hugging Face hub .*"
                                         "pass --benchmark-path DIR"):
        load_benchmark("tofu")
    assert hub_calls == ["snapshot_download(local)", "snapshot_download"]
