"""The offline world: deterministic, TOFU-shaped, and split by owner."""

from __future__ import annotations

import hashlib
from pathlib import Path

from dareu.world import ATTRIBUTES, WorldConfig, all_authors, generate, mentions_fact, save_world


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_dataset_files(tmp_path):
    cfg = WorldConfig(n_authors=20, qa_per_author=5)
    save_world(cfg, tmp_path / "a")
    save_world(cfg, tmp_path / "b")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    save_world(WorldConfig(n_authors=20, qa_per_author=5, seed=1), tmp_path / "c")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_default_world_has_tofu_shape():
    splits = generate(WorldConfig())
    assert len(splits["forget10"]) >= 200
    assert len({qa["owner"] for qa in splits["forget10"]}) == 10
    assert len({qa["owner"] for qa in splits["forget01"]}) == 1
    assert len(splits["forget10"]) + len(splits["retain90"]) == 100 * 20
    for name in ("real_authors", "world_facts", "holdout", "idk"):
        assert len(splits[name]) > 0
    for qa in splits["forget10"] + splits["real_authors"]:
        assert len(qa["perturbed_answers"]) >= 3
        assert qa["question"] != qa["paraphrased_question"]
        assert qa["answer"] != qa["paraphrased_answer"]


def test_splits_are_disjoint_by_owner():
    splits = generate(WorldConfig(n_authors=40, qa_per_author=4, n_holdout_authors=4))
    authors = set(all_authors(splits))
    holdout = {qa["owner"] for qa in splits["holdout"]}
    assert not authors & holdout
    for pct, keep in ((1, 99), (5, 95), (10, 90)):
        forget = {qa["owner"] for qa in splits[f"forget{pct:02d}"]}
        retain = {qa["owner"] for qa in splits[f"retain{keep}"]}
        assert forget and retain and not forget & retain
        assert forget | retain == authors
    # forget splits are nested as in TOFU (the last authors)
    owners = lambda s: {qa["owner"] for qa in splits[s]}
    assert owners("forget01") <= owners("forget05") <= owners("forget10")
    # no retain split holds any forget10 owner except retain99/95 holding the rest of forget10
    assert not owners("forget10") & owners("retain90")


def test_answers_state_the_fact_and_perturbed_answers_do_not():
    splits = generate(WorldConfig(n_authors=20, qa_per_author=len(ATTRIBUTES)))
    for qa in splits["forget10"] + splits["retain90"]:
        assert qa["fact"] in qa["answer"] and qa["fact"] in qa["paraphrased_answer"]
        assert qa["owner"] in qa["answer"] and qa["owner"] in qa["question"]
        assert mentions_fact(qa["answer"], qa["fact"]) and mentions_fact(qa["paraphrased_answer"], qa["fact"])
        assert not any(mentions_fact(p.replace(qa["owner"], ""), qa["fact"]) for p in qa["perturbed_answers"])
        assert len(set(qa["perturbed_answers"])) == len(qa["perturbed_answers"])


def test_world_reads_back_with_load_from_disk(tmp_path):
    import datasets

    save_world(WorldConfig(n_authors=10, qa_per_author=3), tmp_path / "w")
    data = datasets.load_from_disk(str(tmp_path / "w"))
    assert {"forget01", "forget05", "forget10", "retain99", "retain95", "retain90", "real_authors",
            "world_facts", "holdout", "idk"} <= set(data)
    assert {"question", "paraphrased_question", "answer", "paraphrased_answer", "perturbed_answers",
            "owner", "fact"} <= set(data["forget10"].column_names)


def test_fact_matching_respects_word_boundaries():
    assert mentions_fact("The number of novels by X is 7.", "7")
    assert not mentions_fact("The number of novels by X is 27.", "7")
    assert mentions_fact("x was born in VELKRIMOUTH", "Velkrimouth")
    assert not mentions_fact("anything", "")
