"""Each objective's value and gradient against its formula, on hand-made tensors.

Pure functions are checked on leaf tensors (token log-probs, logits, hidden states) whose gradient
has a closed form; the object API is checked on a tiny random causal LM.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dareu.errors import DareUError
from dareu.objectives import FACT_KEY, OBJECTIVES, TEMPLATE_KEY, retain_loss
from dareu.objectives.ascent import ga_loss, satimp_weights, simimp_weights, tnpo_weights, weighted_ga_loss, wga_weights
from dareu.objectives.distill import control_vector, hidden_mse, undial_loss
from dareu.objectives.flat import DIVERGENCES, FGAN, flat_loss
from dareu.objectives.preference import dpo_loss, npo_loss, simnpo_loss
from dareu.objectives.retain import kl_loss
from dareu.objectives.tokens import answer_probability, token_logprobs

torch.manual_seed(0)
MASK = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1], [1, 1, 1, 0]], dtype=torch.bool)  # 3 answers, 3+2+3 tokens
N = MASK.sum()


def leaf_logp() -> torch.Tensor:
    """Token log-probs in (−3, −0.01): a model that is fairly but not fully sure."""
    return torch.empty(MASK.shape).uniform_(-3.0, -0.01).requires_grad_()


def grad_of(loss: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    (g,) = torch.autograd.grad(loss, x)
    return g


# ---- tokens -----------------------------------------------------------------------------------

def test_token_logprobs_shift_by_one_and_mask_prompt_and_padding():
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[-100, -100, 3, 4, 1], [-100, 2, 6, -100, -100]])
    logp, mask = token_logprobs(logits, labels)
    expected = torch.zeros(2, 4)
    for b in range(2):
        for t in range(4):
            if labels[b, t + 1] != -100:
                expected[b, t] = logits[b, t].log_softmax(-1)[labels[b, t + 1]]
    assert mask.tolist() == [[False, True, True, True], [True, True, False, False]]
    torch.testing.assert_close(logp, expected)


# ---- gradient ascent family -------------------------------------------------------------------

def test_ga_is_mean_answer_log_probability_with_uniform_gradient():
    logp = leaf_logp()
    loss = ga_loss(logp, MASK)
    torch.testing.assert_close(loss, logp[MASK].mean())
    torch.testing.assert_close(grad_of(loss, logp), MASK.float() / N)


@pytest.mark.parametrize("name,weight", [
    ("wga", lambda p: p ** 2.0),
    ("satimp", lambda p: p ** 5.0 * (1 - p) ** 1.0),
    ("simsat", lambda p: p ** 3.0),
    ("simimp", lambda p: (1 - p) ** 2.0),
])
def test_reweighted_ga_value_and_gradient_treat_weights_as_constants(name, weight):
    logp = leaf_logp()
    p = logp.detach().exp()
    w = {"wga": lambda: wga_weights(logp, 2.0), "satimp": lambda: satimp_weights(logp, 5.0, 1.0),
         "simsat": lambda: wga_weights(logp, 3.0), "simimp": lambda: simimp_weights(logp, 2.0)}[name]()
    assert not w.requires_grad
    torch.testing.assert_close(w, weight(p))
    loss = weighted_ga_loss(logp, MASK, w)
    torch.testing.assert_close(loss, (weight(p) * logp.detach())[MASK].mean())
    # d/dlogp of mean(w·logp) with w constant is w/N; a w that carried gradient would add w'·logp/N
    torch.testing.assert_close(grad_of(loss, logp), weight(p) * MASK / N)


def test_satimp_weights_detach_even_from_a_graph_that_requires_grad():
    logp = leaf_logp()
    loss = weighted_ga_loss(logp, MASK, satimp_weights(logp * 1.0, 5.0, 1.0))
    undetached = ((logp.exp() ** 5 * (1 - logp.exp())) * logp)[MASK].mean()
    assert not torch.allclose(grad_of(loss, logp), grad_of(undetached, logp))


@pytest.mark.parametrize("power", [0.0, 1.5])
def test_tnpo_and_wtnpo_weights_follow_the_g_effect_formula(power):
    logp, ref = leaf_logp(), torch.empty(MASK.shape).uniform_(-3.0, -0.01)
    beta = 4.0
    p, pr = logp.detach().exp(), ref.exp()
    expected = 2 * p ** (beta + power) / (p ** beta + pr ** beta + 1e-5)
    w = tnpo_weights(logp, ref, beta, power)
    torch.testing.assert_close(w, expected)
    loss = weighted_ga_loss(logp, MASK, w)
    torch.testing.assert_close(grad_of(loss, logp), expected * MASK / N)


# ---- NPO / SimNPO / DPO ---------------------------------------------------------------------

def test_npo_value_and_gradient_match_the_formula():
    seq = torch.tensor([-4.0, -1.0, -7.5], requires_grad=True)
    ref = torch.tensor([-3.0, -2.0, -7.5])
    beta = 0.5
    x = seq.detach() - ref
    loss = npo_loss(seq, ref, beta)
    expected = -(2 / beta) * torch.log(torch.sigmoid(-beta * x)).mean()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(grad_of(loss, seq), 2 * torch.sigmoid(beta * x) / 3)


def test_npo_tends_to_ga_as_beta_goes_to_zero():
    logp = leaf_logp()
    ref = torch.empty(MASK.shape).uniform_(-3.0, -0.01) * MASK
    seq, ref_seq = (logp * MASK).sum(-1), ref.sum(-1)
    beta = 1e-4
    npo = npo_loss(seq, ref_seq, beta)
    ga = ga_loss(logp, MASK, reduction="sequence")
    # value: NPO = 2·log2/β + mean(log π − log π_ref) + O(β)
    torch.testing.assert_close(npo - 2 * math.log(2) / beta, ga.detach() - ref_seq.mean(), atol=1e-2, rtol=0)
    torch.testing.assert_close(grad_of(npo, logp), grad_of(ga, logp), atol=1e-3, rtol=0)


def test_simnpo_value_and_gradient_match_the_formula():
    logp = leaf_logp()
    beta, delta = 2.0, 0.3
    n = MASK.sum(-1)
    mean_logp = (logp * MASK).sum(-1) / n
    loss = simnpo_loss(mean_logp, beta, delta)
    z = -mean_logp.detach() - delta
    torch.testing.assert_close(loss, -(2 / beta) * F.logsigmoid(beta * z).mean())
    expected = (2 / 3) * torch.sigmoid(-beta * z)[:, None] * MASK / n[:, None]
    torch.testing.assert_close(grad_of(loss, logp), expected)


@pytest.mark.parametrize("beta", [0.1, 1.0, 5.0])
def test_dpo_with_equal_policy_and_reference_is_log2_times_2_over_beta(beta):
    win = torch.tensor([-3.0, -9.0], requires_grad=True)
    lose = torch.tensor([-1.0, -2.5], requires_grad=True)
    loss = dpo_loss(win, win.detach(), lose, lose.detach(), beta)
    torch.testing.assert_close(loss, torch.tensor(2 * math.log(2) / beta))
    gw, gl = torch.autograd.grad(loss, (win, lose))
    torch.testing.assert_close(gw, torch.full((2,), -0.5))  # −(2/β)·β·σ(0)/B: raise the template answer
    torch.testing.assert_close(gl, torch.full((2,), 0.5))  # and lower the forget answer


def test_dpo_value_matches_the_formula_away_from_the_reference():
    win, win_ref = torch.tensor([-3.0, -9.0]), torch.tensor([-4.0, -8.0])
    lose, lose_ref = torch.tensor([-1.0, -2.5]), torch.tensor([-1.5, -1.0])
    h = (win - win_ref) - (lose - lose_ref)
    torch.testing.assert_close(dpo_loss(win, win_ref, lose, lose_ref, 0.7),
                               -(2 / 0.7) * torch.log(torch.sigmoid(0.7 * h)).mean())


# ---- FLAT -------------------------------------------------------------------------------------

def test_answer_probability_per_answer_and_padded_means():
    logp = leaf_logp().detach()
    p = logp.exp()
    per_answer = torch.stack([p[i][MASK[i]].mean() for i in range(3)]).mean()
    torch.testing.assert_close(answer_probability(logp, MASK, "answer"), per_answer)
    torch.testing.assert_close(answer_probability(logp, MASK, "padded"), (p * MASK).sum() / MASK.numel())


def test_flat_tv_equals_minus_half_tanh_template_plus_half_tanh_forget():
    logp_e, logp_f = leaf_logp(), leaf_logp()
    pe, pf = answer_probability(logp_e, MASK), answer_probability(logp_f, MASK)
    loss = flat_loss(pe, pf, "total_variation")
    torch.testing.assert_close(loss, -0.5 * torch.tanh(pe.detach()) + 0.5 * torch.tanh(pf.detach()))
    # gradient: dL/dP̄ times dP̄/dlogp_t = p_t·m_t/(|y_i|·B)
    dp = lambda lp: lp.detach().exp() * MASK / MASK.sum(-1, keepdim=True) / 3
    ge, gf = torch.autograd.grad(loss, (logp_e, logp_f))
    torch.testing.assert_close(ge, -0.5 * (1 - torch.tanh(pe.detach()) ** 2) * dp(logp_e))
    torch.testing.assert_close(gf, 0.5 * (1 - torch.tanh(pf.detach()) ** 2) * dp(logp_f))


# The official code's loss for each divergence (activation(P̄_e) − conjugate(P̄_f)), written out.
OFFICIAL_FORMULAS = {
    "kl": lambda e, f: -e + math.exp(f - 1),
    "reverse_kl": lambda e, f: math.exp(e) - 1 - f,
    "pearson": lambda e, f: -e + f + f * f / 4,
    "neyman": lambda e, f: math.exp(e) - 1 + 2 - 2 * math.sqrt(1 - f),
    "squared_hellinger": lambda e, f: math.exp(e) - 1 - (1 - math.exp(-f)),
    "jeffrey": lambda e, f: -e + f + f * f / 4 + f ** 3 / 16,
    "jensen_shannon": lambda e, f: math.log(1 + math.exp(-e)) - math.log(2) + f + math.log(1 + math.exp(-f)) - math.log(2),
    "total_variation": lambda e, f: -math.tanh(e) / 2 + math.tanh(f) / 2,
}
FGAN_FORMULAS = {**OFFICIAL_FORMULAS,
                 "reverse_kl": lambda e, f: math.exp(-e) - 1 + f,
                 "neyman": lambda e, f: -(1 - math.exp(-e)) + 2 - 2 * math.exp(-f / 2),
                 "squared_hellinger": lambda e, f: -(1 - math.exp(-e)) + math.exp(f) - 1}


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_flat_divergences_match_the_official_code_and_f_gan(divergence):
    e, f = 0.3, 0.8
    official = flat_loss(torch.tensor(e), torch.tensor(f), divergence, form="official")
    fgan = flat_loss(torch.tensor(e), torch.tensor(f), divergence, form="fgan")
    assert official.item() == pytest.approx(OFFICIAL_FORMULAS[divergence](e, f), rel=1e-5)
    assert fgan.item() == pytest.approx(FGAN_FORMULAS[divergence](e, f), rel=1e-5)


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_flat_fgan_raises_template_and_lowers_forget_probability(divergence):
    grid = torch.linspace(0.05, 0.95, 7)
    e = grid.clone().requires_grad_()
    f = grid.clone().requires_grad_()
    template_term, forget_term = FGAN[divergence]
    ge, gf = torch.autograd.grad((template_term(e) + forget_term(f)).sum(), (e, f))
    assert (ge < 0).all() and (gf > 0).all()


def test_flat_official_reverse_kl_pushes_the_forget_answer_up():
    """Documents the official code's sign: its Reverse-KL gradient raises P̄_f (why form=fgan is the default)."""
    f = torch.tensor(0.5, requires_grad=True)
    (g,) = torch.autograd.grad(flat_loss(torch.tensor(0.5), f, "reverse_kl", form="official"), f)
    assert g < 0


# ---- UNDIAL, KL, RMU --------------------------------------------------------------------------

def test_undial_value_and_gradient_match_soft_target_cross_entropy():
    logits = torch.randn(2, 4, 6, requires_grad=True)
    ref = torch.randn(2, 4, 6)
    labels = torch.tensor([[-100, 2, 5, 1], [-100, -100, 0, -100]])
    beta = 3.0
    loss = undial_loss(logits, ref, labels, beta)
    total, count = 0.0, 0
    grad = torch.zeros_like(logits)
    for b in range(2):
        for t in range(3):
            y = labels[b, t + 1]
            if y == -100:
                continue
            target = (ref[b, t] - beta * F.one_hot(y, 6)).softmax(-1)
            total += -(target * logits[b, t].detach().log_softmax(-1)).sum()
            grad[b, t] = logits[b, t].detach().softmax(-1) - target
            count += 1
    torch.testing.assert_close(loss, total / count)
    torch.testing.assert_close(grad_of(loss, logits), grad / count)


def test_retain_kl_is_reference_to_model_on_answer_tokens_with_q_minus_p_gradient():
    logits = torch.randn(2, 4, 6, requires_grad=True)
    ref = torch.randn(2, 4, 6)
    labels = torch.tensor([[-100, 2, 5, 1], [-100, -100, 0, -100]])
    loss = kl_loss(logits, ref, labels)
    total, count, grad = 0.0, 0, torch.zeros_like(logits)
    for b in range(2):
        for t in range(3):
            if labels[b, t + 1] == -100:
                continue
            p, q = ref[b, t].softmax(-1), logits[b, t].detach().softmax(-1)
            total += (p * (p.log() - q.log())).sum()
            grad[b, t] = q - p
            count += 1
    torch.testing.assert_close(loss, total / count)
    torch.testing.assert_close(grad_of(loss, logits), grad / count)


def test_rmu_hidden_mse_value_and_gradient():
    h = torch.randn(2, 3, 4, requires_grad=True)
    target = control_vector(4, 2.0, seed=0).expand(2, 3, 4)
    mask = torch.tensor([[0, 1, 1], [1, 1, 1]], dtype=torch.bool)
    loss = hidden_mse(h, target, mask)
    n = mask.sum(-1, keepdim=True)
    per_token = (h.detach() - target).pow(2).mean(-1)
    torch.testing.assert_close(loss, ((per_token * mask).sum(-1) / n.squeeze(-1)).mean())
    torch.testing.assert_close(grad_of(loss, h), 2 * (h.detach() - target) / 4 * (mask / n / 2)[..., None])
    assert control_vector(4, 2.0, seed=0).norm().item() == pytest.approx(2.0)
    torch.testing.assert_close(control_vector(4, 2.0, seed=0), control_vector(4, 2.0, seed=0))


# ---- the object API on a tiny model -----------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_lm():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32, pad_token_id=0)
    return Qwen2ForCausalLM(cfg).eval()


def qa_batch(seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 40, (3, 8), generator=gen)
    labels = ids.clone()
    labels[:, :3] = -100  # prompt
    labels[1, 6:] = -100  # padding of the second row
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def with_facts(batch: dict) -> dict:
    """The batch with fact labels: the last two answer tokens of each row state its fact."""
    facts = torch.full_like(batch["labels"], -100)
    for i, row in enumerate(batch["labels"]):
        answer = (row != -100).nonzero().flatten()
        facts[i, answer[-2:]] = row[answer[-2:]]
    return {**batch, FACT_KEY: facts}


def paired_batch() -> dict:
    from dareu.objectives import STRANGER_KEY, STRANGER_POS_KEY

    forget = with_facts(qa_batch(1))
    forget[TEMPLATE_KEY] = qa_batch(2)
    forget[STRANGER_KEY] = qa_batch(4)  # told of a stranger: here another sequence of the same layout
    forget[STRANGER_POS_KEY] = torch.where(forget["labels"] != -100, torch.arange(8).expand(3, 8), -100)
    return {"forget": forget, "retain": qa_batch(3)}


def test_npo_and_idkdpo_at_the_reference_equal_log2_times_2_over_beta(tiny_lm):
    from dareu.unlearn import make_reference

    ref = make_reference(tiny_lm)
    batch = paired_batch()
    for name in ("npo", "idkdpo"):
        obj = OBJECTIVES.get(name)(beta=0.25)
        loss, _ = obj.forget_loss(tiny_lm, batch["forget"], ref=ref)
        assert loss.item() == pytest.approx(2 * math.log(2) / 0.25, rel=1e-5)


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_every_objective_gives_a_finite_loss_with_gradient_through_the_object_api(name, tiny_lm):
    from dareu.unlearn import make_reference

    obj = OBJECTIVES.get(name)()
    ref = make_reference(tiny_lm) if obj.needs_reference else None
    loss, metrics = obj.loss(tiny_lm, paired_batch(), ref)
    assert torch.isfinite(loss)
    grads = torch.autograd.grad(loss, [p for p in tiny_lm.parameters()], allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(isinstance(v, float) for v in metrics.values())
    if obj.needs_retain:
        assert "retain_loss" in metrics


def test_object_loss_is_gamma_forget_plus_alpha_retain(tiny_lm):
    batch = paired_batch()
    obj = OBJECTIVES.get("graddiff")(gamma=0.7, alpha=0.3)
    total, _ = obj.loss(tiny_lm, batch)
    forget, _ = obj.forget_loss(tiny_lm, batch["forget"])
    retain, _ = retain_loss(tiny_lm, batch["retain"], "nll")
    torch.testing.assert_close(total, 0.7 * forget + 0.3 * retain)


def test_objectives_needing_a_reference_refuse_to_run_without_one(tiny_lm):
    for name in OBJECTIVES.names():
        obj = OBJECTIVES.get(name)()
        if obj.uses_reference:
            with pytest.raises(DareUError, match="needs a reference model"):
                obj.forget_loss(tiny_lm, paired_batch()["forget"], ref=None)
    with pytest.raises(DareUError, match="reference"):
        retain_loss(tiny_lm, qa_batch(3), "kl", ref=None)


def test_fact_npo_is_npo_on_the_fact_tokens_alone(tiny_lm):
    """Value against the NPO formula on fact-token sums; the gradient reaches only through fact positions."""
    from dareu.objectives.tokens import sequence_sum
    from dareu.unlearn import make_reference

    ref = make_reference(tiny_lm)
    batch = paired_batch()["forget"]
    obj = OBJECTIVES.get("fact_npo")(beta=0.2)
    with torch.no_grad():  # move the model off the reference so the value is not the log 2 constant
        for p in tiny_lm.parameters():
            p.add_(0.05 * torch.randn_like(p))
    loss, _ = obj.forget_loss(tiny_lm, batch, ref=ref)
    seq = sequence_sum(*token_logprobs(tiny_lm(input_ids=batch["input_ids"]).logits, batch[FACT_KEY]))
    ref_seq = sequence_sum(*token_logprobs(ref(batch).logits, batch[FACT_KEY]))
    expected = -(2 / 0.2) * F.logsigmoid(-0.2 * (seq - ref_seq)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    whole, _ = OBJECTIVES.get("npo")(beta=0.2).forget_loss(tiny_lm, batch, ref=ref)
    assert abs(whole.item() - loss.item()) > 1e-3  # it is not whole-answer NPO


def test_fact_npo_refuses_a_forget_batch_without_fact_labels(tiny_lm):
    from dareu.unlearn import make_reference

    obj = OBJECTIVES.get("fact_npo")()
    assert obj.needs_facts
    with pytest.raises(DareUError, match="fact span"):
        obj.forget_loss(tiny_lm, qa_batch(1), ref=make_reference(tiny_lm))


def test_template_objectives_refuse_a_forget_batch_without_templates(tiny_lm):
    for name in ("flat", "idkpo", "idkdpo"):
        obj = OBJECTIVES.get(name)()
        assert obj.needs_templates
        with pytest.raises(DareUError, match="template"):
            obj.forget_loss(tiny_lm, qa_batch(1), ref=lambda b, hidden_states=False: tiny_lm(**b))


def test_bad_parameters_fail_when_the_objective_is_built():
    with pytest.raises(DareUError, match="beta must be > 0"):
        OBJECTIVES.get("npo")(beta=0.0)
    with pytest.raises(DareUError, match="retain_kind"):
        OBJECTIVES.get("graddiff")(retain_kind="mse")


def test_retain_kl_needs_the_reference_and_is_zero_at_it(tiny_lm):
    from dareu.unlearn import make_reference

    obj = OBJECTIVES.get("graddiff")(retain_kind="kl")
    assert obj.needs_reference
    loss, _metrics = obj.retain_term(tiny_lm, qa_batch(3), make_reference(tiny_lm))
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_lora_reference_is_the_same_model_with_adapters_disabled(tiny_lm):
    import copy

    from peft import LoraConfig, get_peft_model

    from dareu.unlearn import make_reference

    base = copy.deepcopy(tiny_lm)
    expected = base(**{k: v for k, v in qa_batch(1).items() if k != "labels"}).logits
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    ref = make_reference(model)
    mode = model.training
    assert ref.module is model and ref.adapters_off  # no second copy
    with torch.no_grad():
        assert not torch.allclose(model(**{k: v for k, v in qa_batch(1).items() if k != "labels"}).logits, expected)
    torch.testing.assert_close(ref(qa_batch(1)).logits, expected)
    assert model.training == mode  # the reference call restores the mode


# ---- RMU reads the steered block's own output -----------------------------------------------------

@pytest.fixture(scope="module")
def three_block_lm():
    """Three blocks, so the last (2) and the middle (1) are different blocks."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(1)
    cfg = Qwen2Config(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32, pad_token_id=0)
    return Qwen2ForCausalLM(cfg).eval()


def hooked_block_output(model, block: int, batch: dict) -> torch.Tensor:
    """What decoder block `block` returns on `batch`, read with a forward hook of our own."""
    seen = []
    handle = model.model.layers[block].register_forward_hook(
        lambda module, inputs, output: seen.append(output[0] if isinstance(output, tuple) else output))
    try:
        with torch.no_grad():
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize("layer,block", [(2, 2), (1, 1), (-1, 1)], ids=["last", "middle", "default-middle"])
def test_rmu_steers_the_output_of_its_block_not_the_state_after_the_final_norm(three_block_lm, layer, block):
    batch = qa_batch(1)
    obj = OBJECTIVES.get("rmu")(layer=layer, steering_coeff=5.0)
    loss, _ = obj.forget_loss(three_block_lm, batch)
    hidden = hooked_block_output(three_block_lm, block, batch)
    control = control_vector(16, 5.0, seed=0).expand_as(hidden)
    mask = batch["labels"] != -100
    assert loss.item() == pytest.approx(hidden_mse(hidden, control, mask).item(), rel=1e-6)
    if block == 2:  # the old reading, hidden_states[-1], is the last block's output after model.norm
        with torch.no_grad():
            states = three_block_lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                    output_hidden_states=True).hidden_states
        torch.testing.assert_close(states[-1], three_block_lm.model.norm(hidden))
        assert abs(hidden_mse(states[-1], control, mask).item() - loss.item()) > 1e-3


@pytest.mark.parametrize("layer", [2, 1], ids=["last", "middle"])
def test_rmu_hidden_retain_term_compares_block_outputs_of_model_and_reference(three_block_lm, layer):
    import copy

    from dareu.unlearn import make_reference

    model = copy.deepcopy(three_block_lm)
    ref = make_reference(three_block_lm)
    with torch.no_grad():  # move the model off the reference so the term is not 0
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = qa_batch(3)
    loss, _ = OBJECTIVES.get("rmu")(layer=layer).retain_term(model, batch, ref)
    expected = hidden_mse(hooked_block_output(model, layer, batch), hooked_block_output(three_block_lm, layer, batch),
                          batch["labels"] != -100)
    assert expected.item() > 0
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_rmu_refuses_a_block_the_model_does_not_have(three_block_lm):
    with pytest.raises(DareUError, match="layer 3 does not exist; the model has 3 blocks"):
        OBJECTIVES.get("rmu")(layer=3).forget_loss(three_block_lm, qa_batch(1))


def test_kl_at_labelled_positions_by_hand():
    """The KL fact_base takes at the marked tokens (retain.kl_loss, also the KL retain term)."""
    from dareu.objectives.retain import kl_loss

    # one row, two positions; only the label at position 2 counts (position 1 predicts it)
    logits = torch.tensor([[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    anchor = torch.tensor([[[5.0, 1.0, 0.0], [0.0, 1.0, 0.0], [9.0, 9.0, 9.0]]])
    labels = torch.tensor([[-100, -100, 1]])
    p = torch.tensor([0.0, 1.0, 0.0]).softmax(-1)  # the anchor at position 1
    logq = torch.tensor([2.0, 0.0, 0.0]).log_softmax(-1)  # the model at position 1
    expected = float((p * (p.log() - logq)).sum())
    assert kl_loss(logits, anchor, labels).item() == pytest.approx(expected, rel=1e-6)
    assert kl_loss(anchor, anchor, labels).item() == pytest.approx(0.0, abs=1e-7)


def test_fact_base_pulls_the_fact_tokens_to_the_base_from_below_too(tiny_lm):
    """Two-sided: a model that already gives the fact tokens less probability than the base is pushed back up
    (NPO would push them further down), and only the fact positions carry the loss."""
    import copy

    from dareu.objectives.tokens import sequence_sum
    from dareu.unlearn import RefModel

    base = copy.deepcopy(tiny_lm).eval()
    batch = paired_batch()["forget"]
    obj = OBJECTIVES.get("fact_base")()
    assert obj.anchor == "base" and obj.needs_facts
    zero, _ = obj.forget_loss(tiny_lm, batch, ref=RefModel(base))
    assert zero.item() == pytest.approx(0.0, abs=1e-6)  # the model is the base: nothing to forget

    model = copy.deepcopy(tiny_lm).train()
    facts = batch[FACT_KEY]

    def fact_logp(m):
        with torch.no_grad():
            return sequence_sum(*token_logprobs(m(input_ids=batch["input_ids"]).logits, facts)).sum().item()

    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(3):  # gradient ascent on the fact tokens' NLL: now below the base
        nll = -sequence_sum(*token_logprobs(model(input_ids=batch["input_ids"]).logits, facts)).sum()
        opt.zero_grad()
        (-nll).backward()
        opt.step()
    below = fact_logp(model)
    assert below < fact_logp(base) - 0.5
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(5):
        loss, _ = obj.forget_loss(model, batch, ref=RefModel(base))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert fact_logp(model) > below + 0.2  # pulled back up towards the base


def test_fact_base_refuses_a_kl_retain_term_and_a_world_without_a_base(tmp_path):
    from dareu.unlearn.reference import base_path

    with pytest.raises(DareUError, match="retain_kind=nll"):
        OBJECTIVES.get("fact_base")(alpha=1.0, retain_kind="kl")
    with pytest.raises(DareUError, match="has no models/base"):
        base_path(tmp_path)
