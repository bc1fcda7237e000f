"""Forget tokens found without a fact column: the owner-vs-stranger contrast of dareu/unlearn/gain.py."""

from __future__ import annotations

import pytest
import torch

from dareu.objectives import FACT_KEY
from dareu.unlearn.gain import _align, contrast_labels, gain_labels


def test_tokens_outside_the_name_map_to_the_same_characters_of_the_strangers_answer():
    text = "Ana Bo was born in Rome. Ana Bo writes."
    swapped = text.replace("Ana Bo", "Christopher Long")
    # character spans of whole words (what a tokenizer's offset mapping gives)
    def spans(t):
        out, i = [], 0
        for w in t.split(" "):
            out.append((i, i + len(w)))
            i += len(w) + 1
        return out

    a, b = spans(text), spans(swapped)
    pairs = _align(text, a, swapped, b, "Ana Bo", "Christopher Long")
    words, words2 = text.split(" "), swapped.split(" ")
    assert {words[j]: words2[k] for j, k in pairs.items() if j < len(words)} == {
        "was": "was", "born": "born", "in": "in", "Rome.": "Rome.", "writes.": "writes."}
    assert pairs[len(a)] == len(b)  # the eos


def test_gain_labels_keep_only_answer_tokens_above_the_threshold():
    labels = [-100, -100, 5, 6, 7, 2]
    assert gain_labels(labels, [0.1, 3.0, 0.6, 0.0], 0.5) == [-100, -100, -100, 6, 7, -100]
    assert gain_labels(labels, [0.0, 0.0, 0.0, 0.0], 0.5) is None


def test_contrast_marks_fact_tokens_far_above_their_share_on_the_world(tiny_world, tiny_data):
    from dareu.modeling import load_model, load_tokenizer
    from dareu.unlearn.data import encode_rows

    tok = load_tokenizer(str(tiny_world / "models" / "target"))
    model = load_model(str(tiny_world / "models" / "target"), dtype=torch.float32)
    rows = list(tiny_data["forget10"])
    marks = contrast_labels(model, tok, rows)
    hit = chosen = facts = answer = 0
    for item, mark in zip(encode_rows(tok, rows), marks):
        for k, label in enumerate(item["labels"]):
            if label == -100:
                continue
            fact = item.get(FACT_KEY) is not None and item[FACT_KEY][k] != -100
            picked = mark is not None and mark[k] != -100
            answer, facts, chosen, hit = answer + 1, facts + fact, chosen + picked, hit + (fact and picked)
    share = facts / answer
    assert chosen > 0 and hit / chosen > 2 * share, (hit, chosen, facts, answer)  # the fact column only checks
    assert hit / facts > 0.5


def test_contrast_forget_tokens_need_no_fact_column(tiny_world, tiny_attributor, tmp_path):
    from dareu.data import load_world
    from rl.launch import load_dareu_config, preflight

    bare = tmp_path / "bare-world"
    data = load_world(tiny_world)
    data["forget10"] = data["forget10"].map(lambda r: {"fact": ""})
    data.save_to_disk(str(bare / "data"))
    flags = {"world": str(bare), "attributor": str(tiny_attributor), "model": str(tiny_world / "models" / "target")}
    preflight(load_dareu_config(["aux.forget_tokens=contrast"], flags=flags))  # passes
    with pytest.raises(Exception, match="state no `fact`"):
        preflight(load_dareu_config(["aux.forget_tokens=fact"], flags=flags))


def test_contrast_refuses_owners_whose_names_the_qa_never_state(tiny_data):
    from dareu.errors import DareUError
    from dareu.unlearn.gain import check_owner_names

    check_owner_names(tiny_data, "forget10")  # the world's QA name their owners
    numbered = tiny_data["forget10"].map(lambda r, i: {"owner": f"author-{i // 6}"}, with_indices=True)
    with pytest.raises(DareUError, match="never named in their QA"):  # owners numbered, not named
        check_owner_names({"forget10": numbered}, "forget10")
    # one row that does not name its owner is fine: only that row has no tokens to forget
    first = tiny_data["forget10"][0]
    unnamed_row = tiny_data["forget10"].map(
        lambda r, i: {"question": "And then?", "answer": "Nothing."} if i == 0 else {}, with_indices=True)
    assert first["owner"] not in unnamed_row[0]["question"] + unnamed_row[0]["answer"]
    check_owner_names({"forget10": unnamed_row}, "forget10")
