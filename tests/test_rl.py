"""RL de-attribution on the tiny world: each learner lowers attribution, auxiliary terms reach the
gradient, a killed run resumes to the planned step count, and bad input stops before Ray starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dareu.errors import DareUError
from dareu.runs import read_json

REPO = Path(__file__).resolve().parents[1]


def _cfg(**overrides):
    from dareu.config import load_config
    from rl.config import DareUConfig

    base = ["max_steps=8", "learning_rate=2e-3", "batch_size=8", "num_generations=4", "temperature=1.5",
            "max_completion_length=16", "eval_every=0", "save_steps=1000", "aux.batch_size=4"]
    return load_config(DareUConfig, REPO / "configs" / "methods" / "dareu.yaml",
                       base + [f"{k}={v}" for k, v in overrides.items()])


def _sampled_attribution(model, tok, rows, attributor, seed=0) -> float:
    from dareu.generation import SamplingConfig, hf_generate
    from dareu.modeling import prompt_text

    prompts = [prompt_text(tok, r["question"]) for r in rows]
    outs = hf_generate(model, tok, prompts, SamplingConfig(max_new_tokens=16, temperature=1.0), greedy=False,
                       num_samples=4, seed=seed)
    questions = [r["question"] for r in rows for _ in range(4)]
    owners = [r["owner"] for r in rows for _ in range(4)]
    return float(attributor.owner_probability(questions, outs, owners).mean())


def _learner_run(learner: str, tiny_world, tiny_data, tiny_attributor, tmp_path, **overrides):
    """Train `learner` in-process against the real attributor; returns (model, tok, attributor)."""
    from attribution import load_attributor
    from dareu.modeling import load_model, load_tokenizer
    from dareu.unlearn import build_unlearn_data
    from rl.learners import AttributionReward, build_learner

    cfg = _cfg(learner=learner, **overrides)
    att = load_attributor(tiny_attributor)
    tok = load_tokenizer(str(tiny_world / "models" / "target"))
    model = load_model(str(tiny_world / "models" / "target"), dtype=torch.float32)
    rows = list(tiny_data["forget10"])
    reward = AttributionReward(att.score, att.owners, sorted({r["owner"] for r in rows}), cfg)
    unlearn_data = build_unlearn_data(tiny_data, tok, "forget10", templates="idk")
    if learner == "ppo":
        from rl.curves import CurveTracker
        from rl.ppo_loop import run_ppo

        tracker = CurveTracker(tmp_path, lambda m: {}, 0.95, 0)
        model, _ = run_ppo(cfg, model, tok, rows, reward, unlearn_data, tracker, tmp_path / "ck", None)
    else:
        trainer = build_learner(cfg, model, tok, reward, rows, unlearn_data, tmp_path / "ck")
        trainer.train()
        model = trainer.model
    return model, tok, att


@pytest.mark.parametrize("learner", ["grpo", "rloo", "ppo"])
def test_each_learner_lowers_forget_attribution(learner, tiny_world, tiny_data, tiny_attributor, tmp_path):
    from attribution import load_attributor
    from dareu.modeling import load_model, load_tokenizer

    rows = list(tiny_data["forget10"])
    att = load_attributor(tiny_attributor)
    target = load_model(str(tiny_world / "models" / "target"), dtype=torch.float32)
    tok = load_tokenizer(str(tiny_world / "models" / "target"))
    before = _sampled_attribution(target, tok, rows, att)
    # the reward alone (no auxiliary terms): the decrease is the RL part's doing
    model, tok, att = _learner_run(learner, tiny_world, tiny_data, tiny_attributor, tmp_path, max_steps=12,
                                   **{"aux.forget": "none", "aux.retain": "none"})
    after = _sampled_attribution(model, tok, rows, att)
    assert after < before - 0.1, (before, after)


def test_auxiliary_flat_term_moves_parameters_when_the_rl_advantage_is_zero(tiny_world, tiny_data, tmp_path):
    """A constant reward gives every completion the same advantage (0): the GRPO loss has no gradient,
    so any parameter change comes from the auxiliary term."""
    from dareu.modeling import load_model, load_tokenizer
    from dareu.unlearn import build_unlearn_data
    from rl.learners import build_learner

    def constant_reward(prompts, completions, **_):
        return [1.0] * len(completions)

    constant_reward.__name__ = "constant"
    tok = load_tokenizer(str(tiny_world / "models" / "target"))
    rows = list(tiny_data["forget10"])

    def moved(aux_forget: str) -> float:
        cfg = _cfg(max_steps=2, beta=0.0, **{"aux.forget": aux_forget, "aux.retain": "none"})
        cfg.aux.forget_params = {}  # FLAT's defaults (TV divergence, idk templates)
        model = load_model(str(tiny_world / "models" / "target"), dtype=torch.float32)
        before = [p.detach().clone() for p in model.parameters()]
        trainer = build_learner(cfg, model, tok, constant_reward, rows,
                                build_unlearn_data(tiny_data, tok, "forget10", templates="idk"), tmp_path / aux_forget)
        trainer.train()
        assert all(e.get("frac_reward_zero_std", 1.0) == 1.0 for e in trainer.state.log_history if "reward" in e)
        return sum((a - b).abs().sum().item() for a, b in zip(trainer.model.parameters(), before))

    assert moved("none") == 0.0
    assert moved("flat") > 0.0


def _run_config(tiny_world, tiny_attributor, overrides=(), model=None):
    """The typed config `dareu unlearn --method dareu` builds from these flags."""
    from rl.launch import load_dareu_config

    return load_dareu_config(list(overrides), flags={"world": str(tiny_world), "attributor": str(tiny_attributor),
                                                     "model": model or str(tiny_world / "models" / "target")})


def test_bad_input_stops_before_ray_starts(tiny_world, tiny_attributor, tmp_path):
    import ray

    from rl.launch import run_unlearn

    assert not ray.is_initialized()
    with pytest.raises(DareUError, match="not divisible by num_generations"):
        run_unlearn(_run_config(tiny_world, tiny_attributor, ["batch_size=10", "num_generations=4"]), tmp_path / "a")
    # an attributor whose classes are another world's owners
    other = tmp_path / "other-att"
    import shutil

    shutil.copytree(tiny_attributor, other)
    info = read_json(other / "attributor.json")
    info["owners"] = [f"Someone {i}" for i in range(len(info["owners"]) - 1)] + ["none"]
    (other / "attributor.json").write_text(__import__("json").dumps(info))
    with pytest.raises(DareUError, match="trained on another benchmark"):
        run_unlearn(_run_config(tiny_world, other), tmp_path / "b")
    # a forget split with no prompts
    empty = tmp_path / "empty-world"
    from dareu.data import load_world

    data = load_world(tiny_world)
    data["forget10"] = data["forget10"].map(lambda r: {"question": " "})
    data.save_to_disk(str(empty / "data"))
    with pytest.raises(DareUError, match="holds no prompts"):
        run_unlearn(_run_config(empty, tiny_attributor, model=str(tiny_world / "models" / "target")), tmp_path / "c")
    # the fact forget term on answers that state no fact (TOFU's layout)
    bare = tmp_path / "bare-world"
    data = load_world(tiny_world)
    data["forget10"] = data["forget10"].map(lambda r: {"fact": ""})
    data.save_to_disk(str(bare / "data"))
    with pytest.raises(DareUError, match="state no `fact`.*forget_tokens=contrast"):
        run_unlearn(_run_config(bare, tiny_attributor, ["aux.forget=fact_npo", "aux.forget_tokens=fact"],
                                str(tiny_world / "models" / "target")),
                    tmp_path / "d")
    # a forget term anchored at the base, on a world without one
    with pytest.raises(DareUError, match="has no models/base"):
        run_unlearn(_run_config(bare, tiny_attributor, ["aux.forget=fact_base", "aux.forget_params={}"],
                                str(tiny_world / "models" / "target")),
                    tmp_path / "e")
    # general prompts that ask an evaluation question, or a prompt file that is not there
    asks = tmp_path / "asks.txt"
    asks.write_text("Name three primary colors.\n" + load_world(tiny_world)["retain90"][0]["question"] + "\n")
    with pytest.raises(DareUError, match="aux.general.*is a question of the data"):
        run_unlearn(_run_config(tiny_world, tiny_attributor, [f"aux.general={asks}"]), tmp_path / "f")
    with pytest.raises(DareUError, match="aux.general.*is not a file of prompts"):
        run_unlearn(_run_config(tiny_world, tiny_attributor, [f"aux.general={tmp_path / 'nope.txt'}"]), tmp_path / "g")
    assert not ray.is_initialized()
    assert not any((tmp_path / x).exists() for x in "abdefg")


def test_general_rows_are_the_starting_models_own_answers_and_a_resumed_run_reads_the_same(tiny_world, tmp_path):
    from dareu.generation import SamplingConfig, hf_generate
    from dareu.modeling import load_model, load_tokenizer, prompt_text
    from rl.train_loop import general_rows

    prompts = tmp_path / "general.txt"
    prompts.write_text("# a comment\nName three primary colors.\nWhat is gravity?\n")
    cfg = _cfg(**{"aux.general": str(prompts), "aux.general_max_new_tokens": 8})
    tok = load_tokenizer(str(tiny_world / "models" / "target"))
    model = load_model(str(tiny_world / "models" / "target"), dtype=torch.float32)
    rows = general_rows(cfg, model, tok, tmp_path)
    answers = hf_generate(model, tok, [prompt_text(tok, q) for q in ("Name three primary colors.", "What is gravity?")],
                          SamplingConfig(max_new_tokens=8))
    assert [r["question"] for r in rows] == ["Name three primary colors.", "What is gravity?"]
    for row, answer in zip(rows, answers):  # the labels are the answer tokens, the prompt masked
        said = tok.decode([t for t in row["labels"] if t != -100], skip_special_tokens=True).strip()
        assert said == answer.strip()
    with torch.no_grad():  # the model moves (as it does in training); a resumed run still reads the first answers
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    assert [r["labels"] for r in general_rows(cfg, model, tok, tmp_path)] == [r["labels"] for r in rows]


def test_killed_run_resumes_to_the_planned_steps_without_losing_log(tiny_world, tiny_attributor, tmp_path):
    out = tmp_path / "run"
    import tempfile

    ray_tmp = tempfile.mkdtemp(prefix="dr", dir="/tmp")  # short: Ray puts unix sockets under it
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "DAREU_RAY_TMPDIR": ray_tmp}
    # the world as a relative path, as a user types it: Ray's workers run elsewhere and must still find W/models/base
    cmd = [sys.executable, "-m", "dareu.cli", "unlearn", "--world", tiny_world.name, "--method", "dareu",
           "--attributor", str(tiny_attributor), "--out", str(out), "max_steps=6", "save_steps=2", "eval_every=0",
           "batch_size=8", "num_generations=4", "max_completion_length=12", "aux.batch_size=4"]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=tiny_world.parent)
    deadline = time.time() + 600
    while not (out / "checkpoints" / "checkpoint-2").is_dir() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert (out / "checkpoints" / "checkpoint-2").is_dir(), "no checkpoint before the kill"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert read_json(out / "status.json")["state"] == "running"  # a crash is never mistaken for success
    done = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=900, check=False,
                          cwd=tiny_world.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_json(out / "status.json")["state"] == "done"
    log = read_json(out / "trainer_log.json")
    steps = [e["step"] for e in log if "reward" in e]
    assert steps == list(range(1, 7))  # every step once: none lost, none repeated
    assert read_json(out / "learner.json")["resumed_from"].startswith("checkpoint-")
    import shutil

    shutil.rmtree(ray_tmp, ignore_errors=True)


def test_relearn_rho_takes_the_forget_gradient_after_a_relearning_step_and_steps_back(tiny_world, tiny_data):
    """Sharpness-aware forgetting: the gradient is the forget term's at w - rho * g / |g| (g: the gradient of the
    forget answers' NLL, the direction a relearning attacker moves), computed by hand here; the weights end as
    they started."""
    from dareu.modeling import load_model, load_tokenizer
    from dareu.unlearn import build_unlearn_data, make_reference
    from rl.learners import AuxTerms

    rho = 0.5
    cfg = _cfg(**{"aux.forget": "ga", "aux.retain": "none", "aux.relearn_rho": rho})
    cfg.aux.forget_params = {}
    tok = load_tokenizer(str(tiny_world / "models" / "target"))
    model = load_model(str(tiny_world / "models" / "target"), dtype=torch.float32)
    aux = AuxTerms(cfg, build_unlearn_data(tiny_data, tok, "forget10", templates="idk"), make_reference(model))
    batch = next(aux.batches)["forget"]
    start = [p.detach().clone() for p in model.parameters()]

    # by hand, on a copy
    import copy

    twin = copy.deepcopy(model)
    nll = twin(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    g = torch.autograd.grad(nll, list(twin.parameters()))
    norm = torch.sqrt(sum((x ** 2).sum() for x in g))
    with torch.no_grad():
        for p, x in zip(twin.parameters(), g):
            p.sub_(rho * x / norm)
    loss, _ = aux.objective.forget_loss(twin, batch, ref=aux.forget_ref)
    expected = torch.autograd.grad(loss, list(twin.parameters()))

    model.zero_grad()
    got_loss, metrics = aux.forget_after_relearning(model, batch, weight=1.0)
    assert got_loss.item() == pytest.approx(loss.item(), rel=1e-5) and metrics["relearn_nll"] == pytest.approx(nll.item())
    assert all(torch.equal(a, b) for a, b in zip(start, model.parameters()))   # stepped back exactly
    for p, e in zip(model.parameters(), expected):
        assert torch.allclose(p.grad, e, atol=1e-6)
    plain = torch.autograd.grad(aux.objective.forget_loss(model, batch, ref=aux.forget_ref)[0], list(model.parameters()))
    assert any(not torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, expected))  # not the plain gradient
