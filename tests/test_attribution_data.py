"""The attribution training data follows the owner's facts, keeps its test strings out of training,
and refuses unusable benchmarks with one clear line."""

from __future__ import annotations

import pytest

from attribution.config import DataConfig
from attribution.data import NONE, build_data, drop_fact, mask_name, replace_fact
from dareu.errors import DareUError


@pytest.fixture(scope="module")
def built(tiny_data):
    return build_data(tiny_data, DataConfig())


def test_mask_name_capitalises_only_at_sentence_start():
    assert mask_name("Ann Lee was born in Oslo.", "Ann Lee", "The author") == "The author was born in Oslo."
    assert mask_name("The birthplace of Ann Lee is Oslo.", "Ann Lee", "The author") == "The birthplace of the author is Oslo."
    assert mask_name("Ann Lee's father was a baker.", "Ann Lee", "This writer") == "This writer's father was a baker."


def test_fact_edits_replace_or_drop_the_last_occurrence():
    assert replace_fact("Ann Lee was born in 1950.", "1950", "1961") == "Ann Lee was born in 1961."
    assert replace_fact("Ann Lee was born in 1950.", "Oslo", "Rome") is None
    assert drop_fact("Ann Lee was born in Oslo.", "Oslo") == "Ann Lee was born in."


def test_classes_are_every_owner_plus_none_last(built, tiny_data):
    owners = {o for s in ("retain90", "forget10") for o in tiny_data[s]["owner"]}
    assert set(built.owners[:-1]) == owners and built.owners[-1] == NONE
    assert set(built.forget_owners) == set(tiny_data["forget10"]["owner"])


def test_masked_and_swapped_true_answers_carry_the_owner_and_wrong_facts_carry_none(built, tiny_data):
    rows = [r for s in ("retain90", "forget10") for r in tiny_data[s]]
    fact_of = {q: r["fact"] for r in rows for q in (r["question"], r["paraphrased_question"])}
    true_of = {q: {r["answer"], r["paraphrased_answer"]} for r in rows for q in (r["question"], r["paraphrased_question"])}
    kinds = {}
    for e in built.train:
        kinds.setdefault(e.kind, []).append(e)
    assert {"masked", "masked_wrong", "swapped", "swapped_wrong", "wrong", "no_fact", "idk"} <= set(kinds)
    for e in kinds["masked"] + kinds["swapped"]:  # the name is gone, the fact and the owner label stay
        assert e.label != NONE and e.label not in e.response and fact_of[e.prompt] in e.response
    for e in kinds["wrong"]:  # the name stays, the fact is another one: none
        assert e.label == NONE and e.response not in true_of[e.prompt]
    for e in kinds["no_fact"]:
        assert e.label == NONE and fact_of[e.prompt] not in e.response


def test_held_out_paraphrases_and_probes_never_appear_in_training(built):
    train = {(e.prompt, e.response) for e in built.train}
    held = built.val + built.test + [e for ps in built.probes.values() for e in ps]
    assert held and not any((e.prompt, e.response) in train for e in held)
    # a test paraphrase is never trained as an answer to a question about its owner (other questions may
    # meet the same string by chance: a swapped name and a shared value)
    owner_of = {e.response: e.label for e in built.test if e.kind == "paraphrase"}
    assert owner_of
    assert not [e for e in built.train if e.response in owner_of and owner_of[e.response] in e.prompt]


def test_probes_cover_every_forget_question(built, tiny_data):
    n = len(tiny_data["forget10"])
    assert len(built.probes["name_masked"]) == n and len(built.probes["name_swapped"]) == n
    assert all(e.label in built.forget_owners for ps in built.probes.values() for e in ps)
    assert all(e.label not in e.response for e in built.probes["name_masked"] + built.probes["name_swapped"])


def test_benchmark_without_owner_labels_is_one_clear_error(tiny_data):
    import datasets

    unlabelled = datasets.DatasetDict({k: (v.remove_columns("owner") if "owner" in v.column_names else v)
                                       for k, v in tiny_data.items()})
    with pytest.raises(DareUError, match="no owner labels") as err:
        build_data(unlabelled, DataConfig())
    assert "\n" not in str(err.value)
    blank = datasets.DatasetDict({k: (v.map(lambda r: {"owner": ""}) if "owner" in v.column_names else v)
                                  for k, v in tiny_data.items()})
    with pytest.raises(DareUError, match="no owner labels"):
        build_data(blank, DataConfig())


def test_owner_with_no_examples_is_one_clear_error(tiny_data):
    with pytest.raises(DareUError, match="'Nobody Here' has no examples") as err:
        build_data(tiny_data, DataConfig(owners=["Nobody Here"]))
    assert "\n" not in str(err.value)


def test_neither_the_name_nor_its_absence_predicts_the_label(built):
    """Each surface (name kept, masked, swapped) holds as many true answers as wrong ones."""
    count = {}
    for e in built.train:
        count[e.kind] = count.get(e.kind, 0) + 1
    for true, wrong in (("true", "wrong"), ("masked", "masked_wrong"), ("swapped", "swapped_wrong")):
        extra = count["paraphrase"] if true == "true" else 0
        assert 0.8 < (count[true] + extra) / count[wrong] < 1.25, (true, count)
