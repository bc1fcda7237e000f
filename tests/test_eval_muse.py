"""MUSE metrics on a benchmark folder in MUSE's layout, built from the tiny world."""

from __future__ import annotations

import json

import pytest
import torch

from dareu.cli import main
from dareu.errors import DareUError
from dareu.evaluation.muse import cut, evaluate_muse, knowmem_prompt, load_muse


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: thread start-up costs more than it saves (and the cores are shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_knowmem_prompt_is_muse_few_shot_format():
    assert knowmem_prompt("Q3?", [("Q1?", "A1"), ("Q2?", "A2")]) == \
        "Question: Q1?\nAnswer: A1\n\nQuestion: Q2?\nAnswer: A2\n\nQuestion: Q3?\nAnswer: "


def test_cut_stops_at_the_next_question_or_blank_line():
    assert cut("Paris.\n\nQuestion: next") == "Paris."
    assert cut("Paris.\nQuestion: next") == "Paris."
    assert cut(" Paris ") == "Paris"


@pytest.fixture(scope="module")
def muse_dir(tiny_world, tiny_data, tmp_path_factory):
    from dareu.modeling import load_tokenizer, prompt_text

    root = tmp_path_factory.mktemp("muse")
    forget, holdout = list(tiny_data["forget10"]), list(tiny_data["holdout"])
    tok = load_tokenizer(str(tiny_world / "models" / "target"))
    # the member texts in the form the target was trained on (MUSE's models train on raw text): a bare answer
    # starts with the owner's name, unpredictable without its question for members and holdout alike
    seen = [prompt_text(tok, r["question"]) + r["answer"] for r in forget]
    unseen = [prompt_text(tok, r["question"]) + r["answer"] for r in holdout]
    files = {
        "verbmem/forget.json": [{"prompt": r["answer"][:12], "gt": r["answer"][12:]} for r in forget[:4]],
        "knowmem/forget_qa.json": [{"question": r["question"], "answer": r["answer"]} for r in forget[2:6]],
        "knowmem/forget_qa_icl.json": [{"question": r["question"], "answer": r["answer"]} for r in forget[:2]],
        "knowmem/retain_qa.json": [{"question": r["question"], "answer": r["answer"]} for r in holdout[:4]],
        "privleak/forget.json": seen,
        "privleak/holdout.json": unseen,
    }
    for rel, rows in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(json.dumps(rows))
    return root


def test_muse_metrics_on_a_muse_folder(tiny_world, muse_dir):
    from dareu.modeling import load_model, load_tokenizer

    path = str(tiny_world / "models" / "target")
    model, tok = load_model(path, dtype=torch.float32), load_tokenizer(path)
    data = load_muse(muse_dir)
    assert "knowmem_retain_qa_icl" not in data  # absent parts are simply skipped
    out = evaluate_muse(model, tok, data, verbmem_tokens=16, knowmem_tokens=16)
    assert set(out) == {"verbmem_f", "knowmem_f", "knowmem_r", "mia_min_k", "privleak"}
    for name in ("verbmem_f", "knowmem_f", "knowmem_r", "mia_min_k"):
        assert 0 <= out[name]["agg_value"] <= 1, name
    assert len(out["verbmem_f"]["value_by_index"]) == 4
    # the target memorised the forget answers, not the holdout ones: members look like members
    assert out["mia_min_k"]["agg_value"] > 0.5
    assert out["privleak"]["retain_auc"] == 0.5 and "note" in out["privleak"]


def test_a_folder_not_in_muse_layout_is_refused(tmp_path):
    with pytest.raises(DareUError, match="MUSE's layout"):
        load_muse(tmp_path)


def test_eval_muse_command(tiny_world, muse_dir, tmp_path, capsys):
    rc = main(["eval", "--muse", str(muse_dir), "--model", str(tiny_world / "models" / "target"),
               "--out", str(tmp_path / "E")])
    assert rc == 0
    assert "verbmem_f" in json.loads((tmp_path / "E" / "eval.json").read_text())
    assert "knowmem_f" in capsys.readouterr().out
