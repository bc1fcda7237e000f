"""`dareu prepare`: the models learn what they should, artifacts are cached, bad input stops early."""

from __future__ import annotations

import os

import pytest
import torch

from dareu.cli import main
from dareu.errors import DareUError
from dareu.modeling import load_model, load_tokenizer, prompt_text
from dareu.quality import greedy_rouge
from dareu.runs import read_json

from .conftest import CONFIGS


def test_tiny_target_memorizes_its_qa_and_retain_model_does_not_know_forget_authors(tiny_world, tiny_data):
    table = read_json(tiny_world / "prepare.json")
    assert table["all_ok"], table["checks"]
    target = load_model(str(tiny_world / "models" / "target"), dtype=torch.float32)
    tok = load_tokenizer(str(tiny_world / "models" / "target"))
    assert greedy_rouge(target, tok, list(tiny_data["forget10"])) >= 0.95
    retain = load_model(str(tiny_world / "models" / "retain-forget10"), dtype=torch.float32)
    assert greedy_rouge(retain, tok, list(tiny_data["forget10"])) <= 0.6
    assert greedy_rouge(retain, tok, list(tiny_data["retain90"])) >= 0.9


def test_every_model_loads_with_auto_classes_and_uses_the_chat_template(tiny_world):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for name in ("base", "target", "retain-forget10", "retain-forget10-seed2"):
        path = tiny_world / "models" / name
        assert (path / "model.safetensors").is_file()
        AutoModelForCausalLM.from_pretrained(str(path))
        tok = AutoTokenizer.from_pretrained(str(path))
        assert prompt_text(tok, "Q?") == "<|user|>Q?<|end|><|assistant|>"


def test_tokenizer_reload_round_trips_text_with_numbers(tiny_world):
    """A reloaded tokenizer must give the ids the model was trained on (digits not split differently)."""

    text = "Talthi Ushvel was born in 1969 and wrote 27 novels."
    tok = load_tokenizer(str(tiny_world / "models" / "target"))
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    cfg = read_json(tiny_world / "models" / "target" / "tokenizer_config.json")
    assert cfg["tokenizer_class"] == "PreTrainedTokenizerFast"


def test_second_prepare_with_same_config_reuses_every_artifact(tiny_world):
    from dareu.config import load_config
    from dareu.prepare import PrepareConfig, prepare

    weights = tiny_world / "models" / "target" / "model.safetensors"
    before = os.stat(weights).st_mtime_ns
    table = prepare(load_config(PrepareConfig, CONFIGS / "prepare" / "tiny.yaml"), tiny_world)
    assert os.stat(weights).st_mtime_ns == before
    assert set(table["seconds"]) == {"total"}  # nothing was rebuilt


def test_prepare_refuses_a_folder_built_with_another_config_and_leaves_it_untouched(tiny_world, capsys):
    weights = tiny_world / "models" / "target" / "model.safetensors"
    before = os.stat(weights).st_mtime_ns
    code = main(["prepare", "--config", str(CONFIGS / "prepare" / "tiny.yaml"), "--out", str(tiny_world),
                 "world.seed=5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "another config" in err[0] and "world.seed" in err[0]
    assert os.stat(weights).st_mtime_ns == before


def test_prepare_refuses_a_folder_that_is_not_a_world_even_with_overwrite(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    for extra in ([], ["--overwrite"]):
        code = main(["prepare", "--out", str(tmp_path), "world.n_authors=10", *extra])
        assert code == 2 and "not made by DareU" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


@pytest.mark.parametrize("override, message", [
    ("retain_splits=[forget07]", "unknown forget split 'forget07'"),
    ("world.n_autors=3", "did you mean world.n_authors"),
    ("world.qa_per_author=50", "qa_per_author must be between 1 and 20"),
])
def test_bad_prepare_input_stops_with_one_line_before_training(tmp_path, capsys, override, message):
    code = main(["prepare", "--out", str(tmp_path / "w"), override])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0]
    assert not (tmp_path / "w" / "models").exists()


def test_missing_or_corrupt_dataset_folder_is_one_clear_error(tmp_path, tiny_world):
    import shutil

    from dareu.data import get_split, load_world

    with pytest.raises(DareUError, match="does not exist"):
        load_world(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_world / "data", broken / "data")
    for arrow in (broken / "data").rglob("*.arrow"):
        arrow.write_bytes(b"not arrow")
    with pytest.raises(DareUError, match="corrupt"):
        load_world(broken)
    with pytest.raises(DareUError, match="split 'forget42' is not in this benchmark"):
        get_split(load_world(tiny_world), "forget42")


def test_model_path_without_a_model_and_unreachable_hub_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DareUError, match="no model there"):
        load_model(str(tmp_path / "empty"))
    with pytest.raises(DareUError, match="could not load 'nobody/no-such-model' from the Hugging Face hub"):
        load_model("nobody/no-such-model")


def test_tofu_loader_says_what_failed_when_the_hub_is_unreachable():
    from dareu.data import load_benchmark

    with pytest.raises(DareUError, match="could not load TOFU.*local copy"):
        load_benchmark("tofu")
