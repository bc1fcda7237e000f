"""G-effect toolkit: signs, the first-order prediction, exactness of the parameter-by-parameter products,
projection, EMA, layer groups and the `dareu g-effect` command's bad-input lines.

A mini world (the tiny world's data, a random 2-block model, no training) keeps this file fast; the
G-effect identities hold at any θ.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from dareu.errors import DareUError
from tests.conftest import CONFIGS


@pytest.fixture(scope="module")
def mini_world(tmp_path_factory):
    """W/data (the tiny world's splits) and W/models/target (a random 2-block qwen2, hidden 32)."""
    from dareu.config import load_config
    from dareu.data import load_world
    from dareu.modeling import build_model, save_tokenizer, train_tokenizer
    from dareu.prepare import PrepareConfig
    from dareu.world import save_world

    cfg = load_config(PrepareConfig, CONFIGS / "prepare" / "tiny.yaml")
    world = tmp_path_factory.mktemp("geffect") / "w"
    save_world(cfg.world, world / "data")
    data = load_world(world)
    texts = [r[c] for s in data for r in data[s] for c in ("question", "answer") if c in r]
    tok = train_tokenizer(texts, cfg.model.vocab_size)
    small = dataclasses.replace(cfg.model, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2)
    model = build_model(small, tok, seed=0)
    for name in ("target", "base"):  # the same random weights stand for both (DareU's forget term reads the base)
        model.save_pretrained(str(world / "models" / name))
        save_tokenizer(tok, world / "models" / name)
    return world


@pytest.fixture(scope="module")
def parts(mini_world):
    """(model in float64, tokenizer, data, paired batches of 4) shared by the low-level tests."""
    from dareu.data import load_world
    from dareu.modeling import load_model, load_tokenizer
    from dareu.unlearn import build_unlearn_data

    path = str(mini_world / "models" / "target")
    tok = load_tokenizer(path)
    data = load_world(mini_world)
    udata = build_unlearn_data(data, tok, "forget10", "auto", templates="idk")
    it = udata.batches(4, seed=0)
    batches = [next(it) for _ in range(3)]
    return load_model(path, dtype=torch.float32).double(), tok, data, batches, udata


def fresh(parts):
    model = parts[0]
    clone = type(model)(model.config).double()
    clone.load_state_dict(model.state_dict())
    return clone.eval()


def objective(name: str, model, **params):
    from dareu.geffect import ObjectiveMethod
    from dareu.objectives import OBJECTIVES
    from dareu.unlearn import make_reference

    obj = OBJECTIVES.get(name)(**params)
    return ObjectiveMethod(name, obj, make_reference(model) if obj.needs_reference else None)


def all_groups(model):
    from dareu.geffect.groups import group_names, measured_parameters

    groups = group_names(model.config.num_hidden_layers)
    return measured_parameters(model, groups), groups


def total(point, term: str, risk: str) -> float:
    return sum(point.effects[term][risk].values())


# ---- signs and the first-order prediction ------------------------------------------------------

def test_ga_unlearning_g_effect_is_negative_and_equals_minus_squared_risk_gradient(parts):
    from dareu.geffect import measure

    model = fresh(parts)
    method = objective("ga", model)
    params, groups = all_groups(model)
    point = measure(model, method, parts[3][:1], {}, params, groups)
    e_u = total(point, "forget", "forget")
    assert e_u < 0
    # GA's loss is −R on the same batch, so its gradient is −∇R: e_u = −|∇R_u|², group by group.
    for g in groups:
        assert point.effects["forget"]["forget"][g] == pytest.approx(-point.risk_sq["forget"][g], rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("name,params", [("ga", {}), ("npo", {"beta": 0.5}), ("graddiff", {})])
def test_first_order_prediction_one_sgd_step_moves_risk_by_minus_lr_times_g_effect(parts, name, params):
    from dareu.geffect import measure, risk
    from dareu.geffect.measure import qa_only
    from dareu.geffect.run import train_step

    model = fresh(parts)
    method = objective(name, model, **params)
    model_params, groups = all_groups(model)
    batch = parts[3][0]
    point = measure(model, method, [batch], {}, model_params, groups)
    e_u = sum(total(point, t, "forget") for t in point.effects)
    e_r = sum(total(point, t, "retain") for t in point.effects)
    lr = 1e-3
    with torch.no_grad():
        before_f, before_r = float(risk(model, qa_only(batch["forget"]))), float(risk(model, batch["retain"]))
    train_step(model, method, batch, torch.optim.SGD(model.parameters(), lr=lr))
    model.eval()
    with torch.no_grad():
        after_f, after_r = float(risk(model, qa_only(batch["forget"]))), float(risk(model, batch["retain"]))
    assert e_u < 0  # every one of these objectives forgets at the start
    assert after_f - before_f == pytest.approx(-lr * e_u, rel=0.10)
    if name == "graddiff":  # its retain term makes the retaining G-effect large enough to check too
        assert after_r - before_r == pytest.approx(-lr * e_r, rel=0.10)


# ---- exactness of the parameter-by-parameter products ---------------------------------------

def test_hook_products_match_full_gradient_inner_products_per_group_and_term(parts):
    from dareu.geffect import measure, risk
    from dareu.geffect.groups import group_of
    from dareu.geffect.measure import qa_only

    model = fresh(parts)
    method = objective("npo", model, beta=0.5)  # two terms (forget, retain) and a reference model
    params, groups = all_groups(model)
    batch = parts[3][0]
    point = measure(model, method, [batch], {}, params, groups)
    names = list(params)
    tensors = [params[n][0] for n in names]

    def grad(loss):
        return torch.autograd.grad(loss, tensors, allow_unused=True)

    g_risk = {"forget": grad(risk(model, qa_only(batch["forget"]))), "retain": grad(risk(model, batch["retain"]))}
    for term in ("forget", "retain"):
        g_term = grad(method.term_loss(model, batch, term)[0])
        for r, g_r in g_risk.items():
            expected = {g: 0.0 for g in groups}
            for n, a, b in zip(names, g_term, g_r):
                if a is not None and b is not None:
                    expected[group_of(n)] += float((a * b).sum())
            for g in groups:
                assert point.effects[term][r][g] == pytest.approx(expected[g], rel=1e-9, abs=1e-14)
    assert {p.requires_grad for p in model.parameters()} == {True}  # restored after measuring
    assert all(p.grad is None for p in model.parameters())  # no gradient is left holding memory


def test_terms_of_an_objective_sum_to_its_loss(parts):
    model = fresh(parts)
    batch = parts[3][0]
    for name, params in [("graddiff", {}), ("npo", {}), ("satimp", {}), ("flat", {}), ("wga", {"beta": 2.0})]:
        method = objective(name, model, **params)
        with torch.no_grad():
            whole = float(method.loss(model, batch)[0])
            parts_sum = sum(float(method.term_loss(model, batch, t)[0]) for t in method.term_names())
        assert parts_sum == pytest.approx(whole, rel=1e-6), name  # objectives reduce in float32


def test_layer_subset_gives_the_same_group_values_as_measuring_all(parts):
    from dareu.geffect import measure, measured_parameters

    model = fresh(parts)
    method = objective("graddiff", model)
    params, groups = all_groups(model)
    batch = parts[3][:1]
    full = measure(model, method, batch, {}, params, groups)
    sub = measure(model, method, batch, {}, measured_parameters(model, ["block_1"]), ["block_1"])
    for term in full.effects:
        for r in ("forget", "retain"):
            assert sub.effects[term][r]["block_1"] == pytest.approx(full.effects[term][r]["block_1"], rel=1e-9)


def test_per_instance_g_effects_are_products_with_single_sample_risk_gradients(parts):
    from dareu.geffect import measure
    from dareu.sft import QACollator

    model = fresh(parts)
    method = objective("ga", model)
    params, groups = all_groups(model)
    udata = parts[4]
    item = {k: udata.forget[0][k] for k in ("input_ids", "labels")}
    one = QACollator(parts[1].pad_token_id)([item])
    batch = {"forget": one, "retain": parts[3][0]["retain"]}
    point = measure(model, method, [batch], {"forget/0": one}, params, groups)
    # The instance is the whole forget batch here, so its G-effect is the batch's: −|∇R|².
    assert total(point, "forget", "forget/0") == pytest.approx(total(point, "forget", "forget"), rel=1e-9)
    assert total(point, "forget", "forget/0") == pytest.approx(-sum(point.risk_sq["forget/0"].values()), rel=1e-9)


def test_measuring_batches_do_not_depend_on_the_method_and_hold_out_the_retain_rows(parts, mini_world):
    import itertools

    from dareu.geffect.measure import HELDOUT_KEY
    from dareu.geffect.run import paired_batches
    from dareu.unlearn import build_unlearn_data

    plain = build_unlearn_data(parts[2], parts[1], "forget10", "auto", templates=None)
    with_templates = parts[4]  # flat/idkpo data: templates drawn too

    def rows(t):
        return [tuple(x[x != parts[1].pad_token_id].tolist()) for x in t]

    for a, b in zip(itertools.islice(paired_batches(plain, 4, 5, heldout=True), 3),
                    itertools.islice(paired_batches(with_templates, 4, 5, heldout=True), 3)):
        assert rows(a["forget"]["input_ids"]) == rows(b["forget"]["input_ids"])
        assert rows(a["retain"]["input_ids"]) == rows(b["retain"]["input_ids"])
        assert rows(a[HELDOUT_KEY]["input_ids"]) == rows(b[HELDOUT_KEY]["input_ids"])
        assert not set(rows(a[HELDOUT_KEY]["input_ids"])) & set(rows(a["retain"]["input_ids"]))
        assert "template" in b["forget"] and "template" not in a["forget"]


# ---- projection and EMA ----------------------------------------------------------------------

def test_countsketch_estimates_the_exact_g_effect(parts):
    from dareu.geffect import measure

    model = fresh(parts)
    method = objective("ga", model)
    params, groups = all_groups(model)
    batch = parts[3][:1]
    exact = measure(model, method, batch, {}, params, groups)
    sketched = measure(model, method, batch, {}, params, groups, projection_dim=4096, seed=1)
    # cos(∇L, ∇R_u) = −1 for GA: relative error ~ sqrt(2/K) ≈ 2 %
    assert total(sketched, "forget", "forget") == pytest.approx(total(exact, "forget", "forget"), rel=0.10)
    for r in ("forget", "retain"):  # norms stay exact
        assert sketched.risk_sq[r] == pytest.approx(exact.risk_sq[r], rel=1e-9)


def test_ema_is_point_six_old_plus_point_four_new(parts):
    from dareu.geffect import measure

    model = fresh(parts)
    method = objective("graddiff", model)
    params, groups = all_groups(model)
    b1, b2 = parts[3][0], parts[3][1]
    one = measure(model, method, [b1], {}, params, groups)
    two = measure(model, method, [b2], {}, params, groups)
    ema = measure(model, method, [b1, b2], {}, params, groups, ema=True)
    mean = measure(model, method, [b1, b2], {}, params, groups)
    for r in ("forget", "retain"):
        a, b = total(one, "forget", r), total(two, "forget", r)
        assert total(ema, "forget", r) == pytest.approx(0.6 * a + 0.4 * b, rel=1e-9)
        assert total(mean, "forget", r) == pytest.approx(0.5 * a + 0.5 * b, rel=1e-9)



def test_ema_with_projection_smooths_the_gradients_as_the_official_code_does(parts):
    from dareu.geffect import measure, risk
    from dareu.geffect.measure import qa_only

    model = fresh(parts)
    method = objective("ga", model)
    params, groups = all_groups(model)
    b1, b2 = parts[3][0], parts[3][1]
    sk = measure(model, method, [b1, b2], {}, params, groups, ema=True, projection_dim=4096)
    tensors = [p for p, _ in params.values()]

    def flat(loss):
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, tensors)])

    # official: g_obj <- 0.6 g_obj + 0.4 g_new and g_risk likewise, then <g_obj, g_risk>
    g_obj = 0.6 * flat(method.loss(model, b1)[0]) + 0.4 * flat(method.loss(model, b2)[0])
    g_u = 0.6 * flat(risk(model, qa_only(b1["forget"]))) + 0.4 * flat(risk(model, qa_only(b2["forget"])))
    assert total(sk, "forget", "forget") == pytest.approx(float(g_obj @ g_u), rel=0.10)


# ---- layer groups ------------------------------------------------------------------------------

def test_layer_groups_are_embeddings_blocks_and_head():
    from dareu.geffect.groups import group_of, select_groups

    assert group_of("model.embed_tokens.weight") == "embeddings"
    assert group_of("model.layers.3.mlp.down_proj.weight") == "block_3"
    assert group_of("transformer.h.11.attn.c_attn.weight") == "block_11"
    assert group_of("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight") == "block_0"
    assert group_of("model.norm.weight") == "head" and group_of("lm_head.weight") == "head"
    avail = ["embeddings", "block_0", "block_1", "head"]
    assert select_groups("all", avail) == avail
    assert select_groups("head,blocks", avail) == ["block_0", "block_1", "head"]
    with pytest.raises(DareUError, match=r"unknown layer group 'block_7'.*embeddings, block_0..block_1, head"):
        select_groups("block_7", avail)


# ---- DareU's loss ------------------------------------------------------------------------------

def test_dareu_loss_terms_have_g_effects_and_kl_is_flat_at_the_start(parts):
    from dareu.config import load_config
    from dareu.geffect import measure
    from dareu.unlearn import make_reference
    from rl.config import DareUConfig
    from rl.geffect_loss import DareULoss, group_advantages, leakage_reward

    r = torch.tensor([1.0, 0.0, 1.0, 1.0])
    # groups (1, 0) and (1, 1): ±0.5 over the unbiased std 2^-0.5; a group sharing one reward gets 0
    assert torch.allclose(group_advantages(r, 2), torch.tensor([0.5, -0.5, 0.0, 0.0]) / (2 ** -0.5 + 1e-4))
    model = fresh(parts)
    cfg = load_config(DareUConfig, None, ["batch_size=4", "num_generations=2", "max_completion_length=6",
                                          "aux.forget=npo", "aux.forget_params={beta: 0.1}"])
    rows = [dict(x) for x in parts[2]["forget10"]]
    method = DareULoss(cfg, parts[1], rows, make_reference(model), leakage_reward, "fact_leakage")
    assert method.term_names() == ["policy", "kl", "aux_forget", "aux_retain"]
    params, groups = all_groups(model)
    point = measure(model, method, parts[3][:1], {}, params, groups, prepare_seed=3)
    assert total(point, "kl", "forget") == pytest.approx(0.0, abs=1e-12)  # π = π_ref: k3's gradient is 0
    assert total(point, "aux_forget", "forget") < 0  # NPO forgets
    assert total(point, "aux_retain", "retain") > 0  # retain NLL protects
    # the aux terms are exactly the standalone objectives' G-effects
    npo = measure(model, objective("npo", model, beta=0.1, alpha=0.0), parts[3][:1], {}, params, groups)
    assert total(point, "aux_forget", "forget") == pytest.approx(total(npo, "forget", "forget"), rel=1e-9)


# ---- the command -------------------------------------------------------------------------------

def test_g_effect_command_writes_json_and_plots(mini_world, tmp_path, capsys):
    from dareu.cli import main

    out = tmp_path / "ge"
    code = main(["g-effect", "--world", str(mini_world), "--method", "npo", "--out", str(out), "--steps", "0,2",
                 "--layers", "embeddings,block_1", "batch_size=4", "forget_ids=0,3", "instances=2",
                 "learning_rate=1e-3", "params.beta=0.5"])
    assert code == 0
    result = json.loads((out / "geffect.json").read_text())
    assert [s["step"] for s in result["steps"]] == [0, 2]
    assert result["measured_groups"] == ["embeddings", "block_1"] and result["params"]["beta"] == 0.5
    first = result["steps"][0]
    assert set(first["unlearning"]["groups"]) == {"embeddings", "block_1"}
    assert first["unlearning"]["total"] == pytest.approx(sum(first["unlearning"]["groups"].values()))
    assert first["unlearning"]["total"] == pytest.approx(sum(first["unlearning"]["terms"].values()))
    assert first["unlearning"]["terms"]["forget"] < 0
    assert [i["index"] for i in first["instances"]["forget"]] == [0, 3] and len(first["instances"]["retain"]) == 2
    assert result["config"]["retain_risk"] == "heldout"
    assert len(result["log_history"]) == 2
    assert (out / "geffect_steps.png").stat().st_size > 0 and (out / "geffect_layers.png").stat().st_size > 0


def test_dareu_method_runs_end_to_end_with_the_fact_leakage_reward(mini_world, tmp_path):
    from dareu.cli import main

    out = tmp_path / "dareu"
    assert main(["g-effect", "--world", str(mini_world), "--method", "dareu", "--out", str(out), "--steps", "0,1",
                 "batch_size=2", "instances=1", "params.batch_size=4", "params.num_generations=2",
                 "params.max_completion_length=4"]) == 0
    result = json.loads((out / "geffect.json").read_text())
    assert result["params"]["reward_source"] == "fact_leakage"
    assert result["terms"] == ["policy", "kl", "aux_forget", "aux_retain"]
    assert set(result["steps"][1]["unlearning"]["terms"]) == set(result["terms"])
    assert len(result["log_history"]) == 1 and "reward" in result["log_history"][0]


@pytest.mark.parametrize("flags,message", [
    (["--steps", "0,5,30", "--max-steps", "20"], "step 30 is beyond the run's 20 steps"),
    (["--layers", "block_9"], "unknown layer group 'block_9'"),
    (["--method", "nope"], "nope"),
    (["retain_ids=5,99999"], "retain_ids: row 99999 is not in retain90"),
    (["--attributor", "/nonexistent/attr", "--method", "dareu"], "does not exist"),
])
def test_bad_input_is_one_clear_line(mini_world, tmp_path, capsys, flags, message):
    from dareu.cli import main

    args = ["g-effect", "--world", str(mini_world), "--out", str(tmp_path / "ge")]
    if "--method" not in flags:
        args += ["--method", "ga"]
    assert main(args + flags) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "ge").exists()  # refused before any work


@pytest.fixture(scope="module")
def finished_run(mini_world, tmp_path_factory):
    """A `dareu unlearn`-shaped run folder: config.yaml (npo, beta 0.5) and checkpoints/checkpoint-3."""
    from dareu.config import save_config
    from dareu.modeling import load_model
    from dareu.unlearn import load_run_config

    run = tmp_path_factory.mktemp("run") / "npo"
    target = mini_world / "models" / "target"
    cfg = load_run_config("npo", ["params.beta=0.5"], flags={"world": str(mini_world), "model": str(target)})
    run.mkdir()
    save_config(cfg, run / "config.yaml")
    model = load_model(str(target), dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(str(run / "checkpoints" / "checkpoint-3"))
    return run


def test_run_mode_measures_the_checkpoints_of_a_finished_run(finished_run, tmp_path):
    from dareu.cli import main

    out = tmp_path / "ge"
    # through the sketched + EMA path too (the official smoothing, in projection space)
    assert main(["g-effect", "--run", str(finished_run), "--out", str(out), "--ema", "--projection-dim", "1024",
                 "measure_batches=2", "batch_size=4", "instances=1"]) == 0
    result = json.loads((out / "geffect.json").read_text())
    assert result["method"] == "npo" and result["params"]["beta"] == 0.5
    assert result["projection"] == {"kind": "countsketch", "dim": 1024}
    assert [s["step"] for s in result["steps"]] == [0, 3] and result["log_history"] == []
    step0, step3 = result["steps"]
    assert step0["unlearning"]["total"] != pytest.approx(step3["unlearning"]["total"], rel=1e-3)


def test_run_mode_step_without_a_checkpoint_is_one_clear_line(finished_run, tmp_path, capsys):
    from dareu.cli import main

    assert main(["g-effect", "--run", str(finished_run), "--out", str(tmp_path / "ge"), "--steps", "0,5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "step 5 is beyond the run's checkpoints" in err and "has steps 0, 3" in err
