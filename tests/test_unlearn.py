"""Short unlearning runs on the tiny world: every method forgets, retain-regularised ones keep retain,
the run folder contract, resume, NaN handling, LoRA, and bad input stopping with one clear line."""

from __future__ import annotations

import pytest
import torch
from transformers import TrainerCallback

from dareu.cli import main
from dareu.errors import DareUError
from dareu.objectives import OBJECTIVES
from dareu.runs import read_json
from dareu.unlearn import load_run_config, run_config_class, run_unlearn

# Test scale: 10 steps of 4 forget QA (the tiny world's forget10 has 12), lr 1e-3 decaying linearly.
FAST = ["train.batch_size=4", "train.grad_accum=1", "train.save_steps=1000", "train.logging_steps=5",
        "train.probe_qa=24", "train.max_steps=10", "train.learning_rate=1e-3", "train.lr_scheduler=linear",
        "train.warmup_ratio=0.1"]
# Per-method changes that keep each assertion clear of its threshold. The importance weight (1 − p)^β is ~0 on
# every token of a fully memorised model, so SatImp and SimImp barely move in 10 small steps (SimImp's β = 5
# gives weights ~1e-12); SimSat's γ = 0.1 and IdkDPO's template preference are slow; NPO is fast.
TEST_OVERRIDES = {"satimp": ["train.max_steps=40", "train.learning_rate=3e-3"],
                  "simimp": ["params.beta=1"],
                  "simsat": ["train.max_steps=20"],
                  "idkdpo": ["train.max_steps=20"],
                  "npo": ["train.learning_rate=7e-4"],
                  "fact_npo": ["train.learning_rate=5e-4"]}
# Forget answer probability must end this much below a retain-only run's (γ = 0: fine-tuning on retain QA alone
# already lowers it by ~0.01, so the margin shows the forget term did the work).
MIN_FORGET_DROP = 0.02
RETAIN_BOUND = 0.1  # retain-regularised methods: retain answer probability falls by less than this
RETAIN_METHODS = [m for m in OBJECTIVES.names() if OBJECTIVES.get(m)().needs_retain]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices: one thread is faster than two threads fighting other jobs for two cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def config(world, method: str, *overrides: str):
    return load_run_config(method, [*FAST, *TEST_OVERRIDES.get(method, []), *overrides],
                           flags={"world": str(world), "split": "forget10", "model": str(world / "models" / "target")})


@pytest.fixture(scope="module")
def method_runs(tiny_world, tmp_path_factory):
    """One short run per method, made on first use and shared by the tests below."""
    done: dict[str, dict] = {}

    def get(method: str) -> dict:
        if method not in done:
            out = tmp_path_factory.mktemp(method) / "run"
            done[method] = {"summary": run_unlearn(config(tiny_world, method), out), "out": out}
        return done[method]

    return get


@pytest.fixture(scope="module")
def retain_only(tiny_world, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("retain_only") / "run"
    return run_unlearn(config(tiny_world, "graddiff", "params.gamma=0"), out)


@pytest.mark.parametrize("method", OBJECTIVES.names())
def test_short_run_lowers_forget_answer_probability(method, method_runs, retain_only):
    summary = method_runs(method)["summary"]
    assert summary["steps"] > 0 and summary["after"]["forget_prob"] < summary["before"]["forget_prob"]
    assert summary["after"]["forget_prob"] < retain_only["after"]["forget_prob"] - MIN_FORGET_DROP, summary


@pytest.mark.parametrize("method", RETAIN_METHODS)
def test_retain_regularised_run_keeps_retain_probability_within_bound(method, method_runs):
    summary = method_runs(method)["summary"]
    assert summary["after"]["retain_prob"] > summary["before"]["retain_prob"] - RETAIN_BOUND, summary


def test_run_folder_holds_resolved_config_model_log_and_status(method_runs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = method_runs("npo")["out"]
    saved = run_config_class("npo")
    from dareu.config import from_dict, read_yaml

    cfg = from_dict(saved, read_yaml(out / "config.yaml"))
    assert cfg.method == "npo" and cfg.params.beta == 0.1 and cfg.train.learning_rate == 7e-4
    status = read_json(out / "status.json")
    assert status["state"] == "done" and status["steps"] == 10
    log = read_json(out / "trainer_log.json")
    assert any("forget_nll" in row and "npo_weight" in row for row in log)
    assert (out / "model" / "model.safetensors").is_file()
    AutoModelForCausalLM.from_pretrained(out / "model")
    AutoTokenizer.from_pretrained(out / "model")


class Killed(Exception):
    pass


class KillAfter(TrainerCallback):
    """Simulates a crash: raises once `step` optimizer steps are done (before that step is checkpointed)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Killed(f"killed at step {state.global_step}")


def test_killed_run_resumes_from_its_last_checkpoint_to_the_same_steps_and_weights(tiny_world, tmp_path):
    from safetensors.torch import load_file

    cfg = config(tiny_world, "npo", "train.max_steps=6", "train.save_steps=2", "train.probe_qa=0")
    run_unlearn(cfg, tmp_path / "whole")
    with pytest.raises(Killed):
        run_unlearn(cfg, tmp_path / "killed", callbacks=[KillAfter(3)])
    assert read_json(tmp_path / "killed" / "status.json")["state"] == "failed"
    summary = run_unlearn(cfg, tmp_path / "killed", resume=True)
    assert summary["steps"] == 6
    assert read_json(tmp_path / "killed" / "status.json")["resumed_from"].endswith("checkpoint-2")
    whole = load_file(tmp_path / "whole" / "model" / "model.safetensors")
    resumed = load_file(tmp_path / "killed" / "model" / "model.safetensors")
    for name, tensor in whole.items():
        torch.testing.assert_close(resumed[name], tensor, atol=1e-6, rtol=1e-5)


def test_resume_refuses_a_changed_config(tiny_world, tmp_path):
    cfg = config(tiny_world, "ga", "train.max_steps=2", "train.probe_qa=0")
    run_unlearn(cfg, tmp_path / "run")
    changed = config(tiny_world, "ga", "train.max_steps=2", "train.probe_qa=0", "train.learning_rate=5e-3")
    with pytest.raises(DareUError, match="train.learning_rate"):
        run_unlearn(changed, tmp_path / "run", resume=True)


def test_nan_loss_stops_keeps_last_checkpoint_and_says_the_step(tiny_world, tmp_path):
    from safetensors.torch import load_file

    cfg = config(tiny_world, "ga", "train.learning_rate=1e30", "train.warmup_ratio=0", "train.save_steps=1",
                 "train.probe_qa=0")
    with pytest.raises(DareUError, match=r"loss is nan at step 2; stopped, last checkpoint kept: .*checkpoint-1"):
        run_unlearn(cfg, tmp_path / "run")
    status = read_json(tmp_path / "run" / "status.json")
    assert status["state"] == "failed" and status["step"] == 2 and "nan" in status["reason"]
    weights = load_file(tmp_path / "run" / "checkpoints" / "checkpoint-1" / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())
    assert (tmp_path / "run" / "trainer_log.json").is_file()


def test_lora_run_forgets_and_saves_a_merged_model_and_the_adapter(tiny_world, tmp_path):
    from transformers import AutoModelForCausalLM

    cfg = config(tiny_world, "npo", "lora.enabled=true", "train.learning_rate=2e-3")
    summary = run_unlearn(cfg, tmp_path / "run")
    assert summary["after"]["forget_prob"] < summary["before"]["forget_prob"] - 0.1, summary
    assert summary["after"]["retain_prob"] > summary["before"]["retain_prob"] - RETAIN_BOUND, summary
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model")
    assert not any("lora" in name for name, _ in model.named_parameters())


def test_cli_unlearn_writes_the_run_folder_with_flag_values(tiny_world, tmp_path):
    out = tmp_path / "run"
    rc = main(["unlearn", "--world", str(tiny_world), "--method", "simnpo", "--max-steps", "2", "--out", str(out),
               "train.batch_size=2", "train.probe_qa=4", "params.beta=2.0"])
    assert rc == 0
    cfg = read_json(out / "status.json")
    assert cfg["state"] == "done" and cfg["steps"] == 2
    text = (out / "config.yaml").read_text()
    assert "max_steps: 2" in text and "beta: 2.0" in text and str(tiny_world / "models" / "target") in text


# ---- bad input: one line, before any training -------------------------------------------------

def test_unknown_method_lists_the_registered_ones(tiny_world, tmp_path, capsys):
    rc = main(["unlearn", "--world", str(tiny_world), "--method", "npx", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "unknown objective 'npx'" in err and "npo" in err and "satimp" in err and "flat" in err
    assert not (tmp_path / "r").exists()


def test_method_with_retain_term_needs_a_retain_split(tiny_world, tmp_path):
    with pytest.raises(DareUError, match="retain term .*alpha=1.0.*data.retain_split"):
        run_unlearn(config(tiny_world, "npo", "data.retain_split=none"), tmp_path / "r")
    assert not (tmp_path / "r").exists()
    # without its retain term the same method runs on forget data alone
    run_unlearn(config(tiny_world, "npo", "data.retain_split=none", "params.alpha=0", "train.max_steps=1",
                       "train.probe_qa=0"), tmp_path / "r2")


def test_existing_out_is_not_overwritten_without_overwrite(tiny_world, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DareUError, match="not made by DareU"):
        run_unlearn(config(tiny_world, "ga"), out)
    assert (out / "keep.txt").read_text() == "mine"


def test_unknown_config_key_names_the_closest_valid_one(tiny_world):
    with pytest.raises(DareUError, match="params.beta"):
        config(tiny_world, "npo", "params.bta=0.2")


def test_missing_template_file_is_refused_before_training(tiny_world, tmp_path):
    with pytest.raises(DareUError, match="template file"):
        run_unlearn(config(tiny_world, "flat", f"data.templates={tmp_path / 'none.txt'}"), tmp_path / "r")


def test_template_file_supplies_the_answers(tiny_world, tmp_path):
    from dareu.data import load_world
    from dareu.unlearn import load_templates

    path = tmp_path / "idk.txt"
    path.write_text("No idea.\n\nNot something I know.\n")
    assert load_templates(load_world(tiny_world), str(path)) == ["No idea.", "Not something I know."]


def test_every_registered_method_has_a_yaml_whose_defaults_load(tiny_world):
    from dareu.unlearn.config import method_yaml

    for method in OBJECTIVES.names():
        assert method_yaml(method) is not None, method
        cfg = config(tiny_world, method)
        assert cfg.method == method and isinstance(cfg.params, OBJECTIVES.get(method))


def test_fact_labels_keep_exactly_the_tokens_that_state_the_fact(tiny_world, tiny_data):
    from dareu.modeling import load_tokenizer
    from dareu.objectives import FACT_KEY
    from dareu.unlearn import build_unlearn_data

    tok = load_tokenizer(str(tiny_world / "models" / "target"))
    data = build_unlearn_data(tiny_data, tok, "forget10", "auto", None)
    for item, row in zip(data.forget, tiny_data["forget10"]):
        kept = [t for t in item[FACT_KEY] if t != -100]
        assert tok.decode(kept).strip() == row["fact"]
        assert all(f in (-100, y) for f, y in zip(item[FACT_KEY], item["labels"]))  # a sub-mask of the labels
    batch = next(data.batches(4, seed=0))["forget"]
    assert batch[FACT_KEY].shape == batch["labels"].shape


def test_fact_npo_on_a_split_without_facts_is_refused_before_training(tiny_world, tmp_path):
    from dareu.data import load_world

    data = load_world(tiny_world)
    data["forget10"] = data["forget10"].map(lambda r: {"fact": ""})
    data.save_to_disk(str(tmp_path / "bare" / "data"))
    cfg = config(tmp_path / "bare", "fact_npo")
    cfg.model = str(tiny_world / "models" / "target")
    with pytest.raises(DareUError, match="state no `fact`.*npo"):
        run_unlearn(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_batches_pair_forget_retain_and_template_rows_and_repeat_with_the_seed(tiny_world, tiny_data):
    from dareu.modeling import load_tokenizer
    from dareu.objectives import TEMPLATE_KEY
    from dareu.unlearn import build_unlearn_data

    tok = load_tokenizer(str(tiny_world / "models" / "target"))
    data = build_unlearn_data(tiny_data, tok, "forget10", "auto", "idk")
    first = [next(data.batches(4, seed=7)) for _ in range(2)]
    batch = first[0]
    assert batch["forget"]["input_ids"].shape[0] == 4 == batch["retain"]["input_ids"].shape[0]
    template = batch["forget"][TEMPLATE_KEY]
    assert template["input_ids"].shape[0] == 4
    # row i of the template batch asks forget question i: the prompt tokens agree
    for i in range(4):
        n_prompt = int((batch["forget"]["labels"][i] == -100).logical_and(batch["forget"]["attention_mask"][i] == 1).sum())
        assert torch.equal(template["input_ids"][i, :n_prompt], batch["forget"]["input_ids"][i, :n_prompt])
    torch.testing.assert_close(first[0]["forget"]["input_ids"], first[1]["forget"]["input_ids"])  # same seed
    # one pass of the schedule visits every forget QA once
    assert sorted(f for f, _, _ in data.schedule(len(data.forget), seed=0)) == list(range(len(data.forget)))
