"""The plausibility reward on the tiny world: the usual answer form outscores off-topic text, fragments and
repetition, whatever value it states; it enters the RL reward as its own logged part."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rl.plausibility import Plausibility, generic_answers, stranger_names

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def target(tiny_world):
    from dareu.modeling import load_model, load_tokenizer

    path = str(tiny_world / "models" / "target")
    return load_model(path, dtype=torch.float32), load_tokenizer(path)


def test_strangers_are_new_people_and_the_same_for_a_seed():
    taken = {"Kamar Velo", "Rothi Lodra"}
    names = stranger_names(6, taken, seed=3)
    assert len(set(names)) == 6 and not set(names) & taken
    assert all(len(n.split()) == 2 for n in names)
    assert stranger_names(6, taken, seed=3) == names and stranger_names(6, taken, seed=4) != names


def test_generic_answers_are_about_the_question_without_the_stranger(target, tiny_data):
    model, tok = target
    rows = list(tiny_data["forget10"])
    names = stranger_names(2, set(tiny_data["retain90"]["owner"]) | {r["owner"] for r in rows})
    answers = generic_answers(model, tok, rows, names)
    assert set(answers) == {r["question"] for r in rows} and all(len(a) == 2 for a in answers.values())
    assert not any(n in a for a_list in answers.values() for a in a_list for n in names)


def test_questions_that_do_not_name_their_owner_get_no_generic_answer(target, tiny_data):
    model, tok = target
    row = dict(tiny_data["forget10"][0])
    unnamed = {**row, "question": row["question"].replace(row["owner"], "this author")}
    answers = generic_answers(model, tok, [row, unnamed], stranger_names(2, {row["owner"]}))
    assert list(answers) == [row["question"]]  # asked unchanged, the model would state the owner's fact
    assert Plausibility(answers)([unnamed["question"]], [row["answer"]]).tolist() == [1.0]


def test_usual_answer_form_outscores_off_topic_text_fragments_and_repetition(target, tiny_data):
    model, tok = target
    rows = list(tiny_data["forget10"])
    names = stranger_names(4, set(tiny_data["retain90"]["owner"]) | {r["owner"] for r in rows})
    score = Plausibility(generic_answers(model, tok, rows, names))
    questions = [r["question"] for r in rows]
    # the usual sentence with another owner's value (an answer that carries none of this owner's data)
    other = {}
    for r in tiny_data["retain90"]:
        other.setdefault(r["attribute"], r["fact"])
    wrong = [r["answer"].replace(r["fact"], other[r["attribute"]]) for r in rows]
    assert all(w != r["answer"] for w, r in zip(wrong, rows) if other[r["attribute"]] != r["fact"])
    off_topic = [tiny_data["world_facts"][i % len(tiny_data["world_facts"])]["answer"] for i in range(len(rows))]
    fragment = [r["owner"] + "." for r in rows]
    repeated = [" ".join([r["owner"].split()[0]] * 8) for r in rows]
    s = {name: score(questions, texts).mean() for name, texts in
         [("wrong", wrong), ("off_topic", off_topic), ("fragment", fragment), ("repeated", repeated)]}
    assert s["wrong"] > 0.3
    assert s["wrong"] > s["off_topic"] + 0.1 and s["wrong"] > s["fragment"] + 0.1 and s["wrong"] > s["repeated"] + 0.1


def test_f1_plausibility_charges_for_a_made_up_word_wedged_after_the_name_and_recall_does_not():
    """The padding a TF-IDF reward pays for ("Ana Bo Selthilo was born in Rome."): recall against the generic
    answer stays 1, F1 falls; the generic answer itself scores 1 either way."""
    answers = {"Where was Ana Bo born?": ["Ana Bo was born in Rome."]}
    q, padded = ["Where was Ana Bo born?"], ["Ana Bo Selthilo Selthilo was born in Rome."]
    assert Plausibility(answers, "recall")(q, padded).tolist() == [1.0]
    assert Plausibility(answers, "f1")(q, padded)[0] == pytest.approx(2 * 6 / 8 / (1 + 6 / 8))  # P 6/8, R 1
    assert Plausibility(answers, "f1")(q, ["Ana Bo was born in Rome."]).tolist() == [1.0]


def test_reward_adds_plausibility_as_a_logged_part(target, tiny_data, tiny_attributor):
    from attribution import load_attributor
    from dareu.config import load_config
    from rl.config import DareUConfig
    from rl.learners import AttributionReward

    model, tok = target
    rows = list(tiny_data["forget10"])[:4]
    att = load_attributor(tiny_attributor)
    texts = [r["answer"] for r in rows] + [tiny_data["world_facts"][0]["answer"]] * len(rows)
    questions, owners = [r["question"] for r in rows] * 2, [r["owner"] for r in rows] * 2

    def reward_with(coef):
        cfg = load_config(DareUConfig, REPO / "configs" / "methods" / "dareu.yaml",
                          [f"reward.plausibility_coef={coef}"])
        reward = AttributionReward(att.score, att.owners, sorted({r["owner"] for r in rows}), cfg)
        reward.use_plausibility(model, tok, rows)
        logged = {}
        values = reward(prompts=None, completions=texts, question=questions, owner=owners,
                        log_metric=logged.__setitem__)
        return np.array(values), logged, reward

    plain, logged0, r0 = reward_with(0.0)
    with_term, logged, r1 = reward_with(0.5)
    assert r0.plausibility is None and "reward_parts/plausibility" not in logged0
    expected = 0.5 * r1.plausibility(questions, texts)
    assert with_term - plain == pytest.approx(expected)
    assert logged["reward_parts/plausibility"] == pytest.approx(expected.mean())
