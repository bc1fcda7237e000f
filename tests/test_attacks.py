"""`dareu attack`: relearning, quantization and probes on tiny models, and the recovery number."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from dareu.attacks import AttackConfig, RelearnConfig, recovery
from dareu.attacks.halves import owner_halves
from dareu.attacks.probes import answer_prefix, icl_prompt
from dareu.attacks.recovery import by_owner, owner_recovery
from dareu.attacks.run import attack_inputs, eval_metrics, run_one
from dareu.cli import main
from dareu.evaluation.config import EvalConfig
from dareu.evaluation.metrics import mean_or_none


def test_recovery_is_the_share_of_the_target_retain_gap_given_back_clipped_to_0_1():
    assert recovery(0.5, retain=0.1, target=0.9) == pytest.approx(0.5)   # (0.5 - 0.1) / (0.9 - 0.1)
    assert recovery(0.3, retain=0.1, target=0.6) == pytest.approx(0.4)
    assert recovery(0.1, retain=0.1, target=0.9) == 0.0                  # the retain model's own leak
    assert recovery(0.9, retain=0.1, target=0.9) == 1.0                  # the target's own leak
    assert recovery(0.0, retain=0.1, target=0.9) == 0.0                  # below the retain model: clipped
    assert recovery(1.0, retain=0.1, target=0.5) == 1.0                  # above the target: clipped
    assert recovery(0.3, retain=0.4, target=0.4) is None                 # nothing to recover


def test_recovery_per_owner_averages_each_owners_rows_then_the_owners_that_have_something_to_recover():
    owners = ["a", "a", "b", "b", "c", "c"]
    model = by_owner(owners, [1, 0, 1, 1, 1, None])
    assert model == {"a": 0.5, "b": 1.0, "c": 1.0}
    per = owner_recovery(model, retain={"a": 0.0, "b": 0.5, "c": 1.0}, target={"a": 1.0, "b": 1.0, "c": 1.0})
    assert per == {"a": 0.5, "b": 1.0, "c": None}                        # c: target no better than retain
    assert mean_or_none(per.values()) == pytest.approx(0.75)


def test_owner_halves_split_every_owner_between_the_attacker_and_the_held_out_half():
    rows = [{"owner": o} for o in "aaaabbbc"]
    taught, held = owner_halves(rows)
    assert sorted(taught + held) == list(range(8)) and not set(taught) & set(held)
    assert [rows[i]["owner"] for i in held] == ["a", "a", "b", "b", "c"]   # one-QA owner c stays held out
    assert [rows[i]["owner"] for i in taught] == ["a", "a", "b"]


def test_answer_prefix_stops_before_the_fact_or_gives_away_a_share_of_the_words():
    row = {"answer": "Talthi Ushvel was born in Velkrimouth.", "fact": "Velkrimouth"}
    assert answer_prefix(row, 0.34) == "Talthi Ushvel was born in"
    no_fact = {"answer": "one two three four five six", "fact": ""}
    assert answer_prefix(no_fact, 0.34) == "one two"


def test_icl_prompt_puts_other_owners_qa_before_the_question_as_chat_turns(tiny_world):
    from dareu.modeling import load_tokenizer

    tok = load_tokenizer(str(tiny_world / "models" / "target"))
    text = icl_prompt(tok, [{"question": "Q1?", "answer": "A1."}], "Q2?")
    assert text.index("Q1?") < text.index("A1.") < text.index("Q2?") and text.endswith(
        tok.apply_chat_template([{"role": "user", "content": "x"}], add_generation_prompt=True, tokenize=False)[-12:])


# -- attacks on tiny models ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def setting(tiny_world, tmp_path_factory):
    from dareu.data import load_world
    from dareu.modeling import load_model, load_tokenizer

    data = load_world(tiny_world)
    tok = load_tokenizer(str(tiny_world / "models" / "target"))
    cfg = AttackConfig(utility=False)
    ecfg = replace(EvalConfig(progress=False), metrics=eval_metrics(cfg, None))
    work = str(tmp_path_factory.mktemp("attack-work"))

    def leak(model, attack: str, config: AttackConfig = cfg) -> float:
        res = run_one(attack, model, tok, attack_inputs(data, "forget10", config, ecfg, work), None, ecfg)
        return float(np.mean([v for v in res["leaks"] if v is not None]))

    models = {name: load_model(str(tiny_world / "models" / name)) for name in ("target", "retain-forget10")}
    return {"data": data, "tok": tok, "leak": leak, "models": models, "cfg": cfg, "ecfg": ecfg, "work": work}


def shallow_ga(model, tok, data, lr: float = 3e-4, steps: int = 10):
    """A model made to forget shallowly: a few full-batch gradient-ascent steps on the forget answers."""
    from dareu.sft import QACollator, QADataset

    torch.manual_seed(0)
    m = copy.deepcopy(model)
    opt = torch.optim.AdamW(m.parameters(), lr=lr)
    ds = QADataset(tok, [(r["question"], r["answer"]) for r in data["forget10"]])
    batch = QACollator(tok.pad_token_id)([ds[i] for i in range(len(ds))])
    for _ in range(steps):
        loss = -m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval()


def test_relearning_on_half_an_owners_qa_brings_back_the_other_half_of_a_shallow_unlearning(setting):
    target = setting["models"]["target"]
    ga = shallow_ga(target, setting["tok"], setting["data"])
    before, after = setting["leak"](ga, "none"), setting["leak"](ga, "relearn")
    assert setting["leak"](target, "none") > before          # the shallow unlearning did forget some
    assert after > before                                    # ... and relearning the other half brings it back


def test_relearning_does_not_teach_the_retain_model_the_half_it_never_saw(setting):
    retain = setting["models"]["retain-forget10"]
    assert setting["leak"](retain, "relearn") <= setting["leak"](retain, "none")


def test_relearning_on_retain_qa_only_also_brings_back_a_shallow_unlearning(setting):
    ga = shallow_ga(setting["models"]["target"], setting["tok"], setting["data"])
    assert setting["leak"](ga, "relearn_retain") > setting["leak"](ga, "none")


def test_relearning_trains_a_copy_and_leaves_the_attacked_model_as_it_was(setting):
    from dareu.attacks.model_attacks import relearn

    target = setting["models"]["target"]
    before = [p.detach().clone() for p in target.parameters()]
    cfg = replace(setting["cfg"], relearn=RelearnConfig(steps=2))
    attacked = relearn(target, setting["tok"], attack_inputs(setting["data"], "forget10", cfg, setting["ecfg"],
                                                       setting["work"]))
    assert all(torch.equal(a, b) for a, b in zip(before, target.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before, attacked.parameters()))


@pytest.mark.parametrize("attack", ["quant8", "quant4"])
def test_quantized_models_keep_close_to_the_float_model_and_evaluate(setting, attack):
    from dareu.attacks.registry import ATTACKS

    target, tok = setting["models"]["target"], setting["tok"]
    inputs = attack_inputs(setting["data"], "forget10", setting["cfg"], setting["ecfg"], setting["work"])
    q = ATTACKS.get(attack).run(target, tok, inputs)
    layer = q.model.layers[0].mlp.up_proj
    assert type(layer.weight).__module__.startswith("torchao")   # integer weights with scales, not floats
    ids = torch.tensor([tok("Where was anyone born?")["input_ids"]])
    with torch.no_grad():
        gap = (q(ids).logits - target(ids).logits).abs().max().item()
    assert 0 < gap < (1.0 if attack == "quant8" else 8.0)   # lossy, yet the same model
    res = run_one(attack, target, tok, inputs, None, setting["ecfg"])
    assert res["eval"]["forget_rouge"]["agg_value"] > 0.5 and len(res["leaks"]) == len(inputs.held_out)


def test_probes_give_one_leak_per_held_out_qa_and_the_target_leaks_more_than_the_retain_model(setting):
    target, retain = setting["models"]["target"], setting["models"]["retain-forget10"]
    for probe in ("prefix", "mc"):
        assert setting["leak"](target, probe) > setting["leak"](retain, probe)


# -- the command ------------------------------------------------------------------------------------------------
def test_attack_command_gives_the_target_recovery_1_and_the_retain_model_0(tiny_world, tmp_path):
    common = ["--world", str(tiny_world), "--attacks", "relearn,prefix", "--cache", str(tmp_path / "cache"),
              "relearn.steps=5", "utility=false"]
    for model, expected in (("target", 1.0), ("retain-forget10", 0.0)):
        out = tmp_path / model
        assert main(["attack", "--model", str(tiny_world / "models" / model), "--out", str(out), *common]) == 0
        report = json.loads((out / "attack.json").read_text())
        assert list(report["results"]) == ["none", "relearn", "prefix"]
        measured = [r["recovery"] for r in report["results"].values() if r["recovery"] is not None]
        assert measured and all(v == pytest.approx(expected) for v in measured)
        assert "| relearn |" in (out / "report.md").read_text()


def test_attack_command_refuses_an_unknown_attack_and_an_existing_out_before_any_work(tiny_world, tmp_path, capsys):
    rc = main(["attack", "--world", str(tiny_world), "--model", str(tiny_world / "models" / "target"),
               "--attacks", "relern", "--out", str(tmp_path / "a")])
    assert rc != 0 and "unknown attack 'relern'" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    busy = tmp_path / "mine"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep me")
    rc = main(["attack", "--world", str(tiny_world), "--model", str(tiny_world / "models" / "target"),
               "--attacks", "mc", "--out", str(busy)])
    assert rc != 0 and (busy / "notes.txt").read_text() == "keep me"


def test_the_shipped_tofu_attack_config_loads_and_lowers_the_relearning_rate():
    from dareu.config import CONFIGS_DIR, load_config

    cfg = load_config(AttackConfig, CONFIGS_DIR / "attack" / "tofu.yaml")
    assert cfg.relearn.learning_rate < AttackConfig().relearn.learning_rate and cfg.attacks == AttackConfig().attacks
