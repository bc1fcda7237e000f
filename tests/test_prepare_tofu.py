"""`dareu prepare --benchmark tofu`: a TOFU world from a local hub-layout copy and a pretrained chat model.

The copy is tests/data/tofu_mini (6 TOFU authors x 4 QA, see its README); the "pretrained" model is a tiny
Qwen2 with a chat-template tokenizer built here, so nothing is downloaded and every build takes seconds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from dareu.cli import main

REPO = Path(__file__).resolve().parents[1]
MINI = REPO / "tests" / "data" / "tofu_mini"
Q = 4  # QA per author in the mini copy
# the CPU config, shrunk to the mini copy and a tiny model (forget01 = the last 2 of 6 authors)
OVERRIDES = ["qa_per_author=4", "retain_authors=2", "holdout_authors=1", "finetune.epochs=40",
             "finetune.learning_rate=0.005", "finetune.batch_size=8", "finetune.warmup_ratio=0.05", "max_length=192",
             "workers=1", "threads=1", "eval_max_new_tokens=40", "eval_max_qa=20",
             f"replay={Path(__file__).parent / 'data' / 'replay_prompts_mini.txt'}", "replay_max_new_tokens=12"]
MODELS = ["base", "target", "retain-forget01", "retain-forget01-seed2"]


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (MINI / name).read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    """A randomly initialised tiny Qwen2 saved as a pretrained HF folder, its tokenizer with a chat template."""
    from dareu.modeling import ModelConfig, build_model, save_tokenizer, train_tokenizer

    texts = [r[k] for f in MINI.glob("*.json") for r in _rows(f.name) for k in ("question", "answer")]
    tok = train_tokenizer(texts, 512)
    model = build_model(ModelConfig(vocab_size=512, hidden_size=64, intermediate_size=256, num_layers=2,
                                    num_heads=4, max_positions=256), tok, seed=0)
    out = tmp_path_factory.mktemp("lm") / "tiny-chat"
    model.save_pretrained(str(out))
    save_tokenizer(tok, out)
    return out


def _prepare(out: Path, model: Path, data: Path = MINI, extra: tuple[str, ...] = ()) -> int:
    return main(["prepare", "--benchmark", "tofu", "--data", str(data), "--model", str(model), "--out", str(out),
                 *OVERRIDES, *extra])


@pytest.fixture(scope="module")
def tofu_world(tiny_lm, tmp_path_factory) -> tuple[Path, int]:
    out = tmp_path_factory.mktemp("tofu") / "w"
    return out, _prepare(out, tiny_lm)


def test_the_world_has_the_layout_and_forget01_is_exactly_tofus_last_two_authors(tofu_world, tiny_lm):
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, rc = tofu_world
    assert rc in (0, 1)  # the bars are for a real model; this tiny one need not pass them all
    assert (out / "dareu-run.json").is_file() and (out / "config.yaml").is_file()
    data = datasets.load_from_disk(str(out / "data"))
    assert sorted(data) == ["forget01", "holdout", "idk", "real_authors", "retain99", "world_facts"]
    full = _rows("full.json")
    # forget01 = the last 2 authors of full.json, in order, with TOFU's paraphrases and perturbed answers
    assert list(data["forget01"]["question"]) == [r["question"] for r in full[-2 * Q:]]
    # owners are the authors' names, read from their QA (TOFU numbers them)
    assert list(data["forget01"]["owner"]) == ["Basil Mahfouz Al-Kuwaiti"] * Q + ["Nikolai Abilov"] * Q
    assert all(len(p) == 5 for p in data["forget01"]["perturbed_answers"])
    # retain99 restricted to the first retain_authors=2 authors; author 0's rows carry retain_perturbed's extras
    assert list(data["retain99"]["question"]) == [r["question"] for r in full[:2 * Q]]
    assert list(data["retain99"]["owner"]) == ["Jaime Vasquez"] * Q + ["Chukwu Akabueze"] * Q
    assert [len(p) for p in data["retain99"]["perturbed_answers"]] == [5] * Q + [0] * Q
    assert set(data["holdout"]["owner"]) == {"holdout-0"} and len(data["holdout"]) == Q
    assert len(data["real_authors"]) == len(data["world_facts"]) == 6
    assert not set(data["forget01"]["owner"]) & set(data["retain99"]["owner"])
    for name in MODELS:
        assert (out / "models" / name / "dareu_stamp.json").is_file()
        AutoModelForCausalLM.from_pretrained(str(out / "models" / name))
        assert AutoTokenizer.from_pretrained(str(out / "models" / name)).chat_template
    # base is the given model as it is
    assert (out / "models" / "base" / "model.safetensors").read_bytes() == (tiny_lm / "model.safetensors").read_bytes()
    stamp = json.loads((out / "models" / "target" / "dareu_stamp.json").read_text())
    # every fine-tune also replays the base's own answers to the general prompts
    # (those it answers at all: this random tiny base leaves some empty, which are not trained on)
    replayed = json.loads((out / "replay" / "replay.json").read_text())["pairs"]
    assert json.loads((out / "replay" / "dareu_stamp.json").read_text())["prompts"] == 2
    assert all(answer.strip() for _, answer in replayed)
    assert {p for p, _ in replayed} <= {"Explain why the sky looks blue.", "What does a publisher do?"}
    assert stamp["splits"] == ["retain99", "forget01"] and stamp["qa"] == 4 * Q + len(replayed)
    assert json.loads((out / "models" / "retain-forget01" / "dareu_stamp.json").read_text())["qa"] == \
        2 * Q + len(replayed)


def test_fine_tuning_lifts_the_targets_forget_rouge_far_above_the_bases(tofu_world):
    out, rc = tofu_world
    table = json.loads((out / "prepare.json").read_text())
    rouge = table["rouge_l_recall"]
    assert set(rouge) == set(MODELS)
    assert set(rouge["base"]) == {"forget01", "retain99", "real_authors", "world_facts"}
    assert rouge["target"]["forget01"] > rouge["base"]["forget01"] + 0.3, rouge
    assert rouge["target"]["retain99"] > rouge["base"]["retain99"] + 0.3, rouge
    # the retain model never saw the forget authors: the target knows them better
    assert rouge["target"]["forget01"] > rouge["retain-forget01"]["forget01"], rouge
    checked = {(c["model"], c["split"]) for c in table["checks"]}
    assert {("target", "forget01"), ("target", "retain99"), ("retain-forget01", "forget01"),
            ("target", "real_authors"), ("target", "world_facts")} <= checked
    assert rc == (0 if table["all_ok"] else 1)


def test_a_second_run_reuses_every_artifact_without_retraining(tofu_world, tiny_lm, capsys):
    out, rc = tofu_world
    watched = [out / "data" / "dareu_stamp.json"] + [out / "models" / m / f for m in MODELS
                                                       for f in ("dareu_stamp.json", "model.safetensors")]
    before = {p: p.stat().st_mtime_ns for p in watched}
    table = json.loads((out / "prepare.json").read_text())
    capsys.readouterr()
    assert _prepare(out, tiny_lm) == rc
    said = capsys.readouterr().out
    assert "fine-tuning" not in said and "quality table: reused" in said
    assert {p: p.stat().st_mtime_ns for p in watched} == before
    assert json.loads((out / "prepare.json").read_text())["rouge_l_recall"] == table["rouge_l_recall"]
    # another config on the same folder is refused in one line, the world untouched
    assert _prepare(out, tiny_lm, extra=("finetune.epochs=3",)) == 2
    assert "other inputs or config" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in watched} == before


def _no_template(tiny_lm: Path, tmp_path: Path) -> Path:
    model = tmp_path / "no-template"
    shutil.copytree(tiny_lm, model)
    (model / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((model / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    return model


def _missing_file(tmp_path: Path) -> Path:
    data = tmp_path / "tofu"
    shutil.copytree(MINI, data)
    (data / "forget01_perturbed.json").unlink()
    return data


@pytest.mark.parametrize("case, expected", [
    ("missing_file", "has no forget01_perturbed.json"),
    ("missing_full", "has no full.json"),
    ("missing_model", "model folder does not exist"),
    ("no_template", "has no chat template"),
    ("bad_split", "config key 'forget_split' must be one of forget01, forget05, forget10"),
    ("too_many_retain", "asks for 5 retain authors but forget01 leaves 4"),
    ("replay_asks_the_evaluation", "is a question of the data; general prompts must not train on"),
    ("replay_missing", "is not a file of prompts"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, expected, tiny_lm, tmp_path, capsys):
    data, model, extra = MINI, tiny_lm, ()
    if case == "missing_file":
        data = _missing_file(tmp_path)
    elif case == "missing_full":
        data = tmp_path / "tofu"
        shutil.copytree(MINI, data)
        (data / "full.json").unlink()
    elif case == "missing_model":
        model = tmp_path / "nope"
    elif case == "no_template":
        model = _no_template(tiny_lm, tmp_path)
    elif case == "bad_split":
        extra = ("forget_split=forget02",)
    elif case == "too_many_retain":
        extra = ("retain_authors=5",)
    elif case == "replay_asks_the_evaluation":  # a real_authors question, case aside
        prompts = tmp_path / "prompts.txt"
        prompts.write_text("# general\nWhat does a publisher do?\n" + _rows("real_authors.json")[0]["question"].upper())
        extra = (f"replay={prompts}",)
    elif case == "replay_missing":
        extra = (f"replay={tmp_path / 'nope.txt'}",)
    out = tmp_path / "out"
    capsys.readouterr()
    assert _prepare(out, model, data, extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not out.exists()


def test_data_and_model_without_benchmark_tofu_are_refused(tmp_path, capsys):
    assert main(["prepare", "--data", str(MINI), "--out", str(tmp_path / "w")]) == 2
    assert "--data and --model go with --benchmark tofu" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("name, forget, retain_authors", [("tofu_cpu", "forget01", 6), ("tofu_full", "forget10", 0)])
def test_the_shipped_tofu_configs_load(name, forget, retain_authors):
    from dareu.config import CONFIGS_DIR, load_config
    from dareu.prepare_tofu import TofuPrepareConfig

    cfg = load_config(TofuPrepareConfig, CONFIGS_DIR / "prepare" / f"{name}.yaml")
    assert (cfg.forget_split, cfg.retain_authors) == (forget, retain_authors)


def test_owner_names_are_read_from_each_authors_own_qa():
    from dareu.data import owner_name

    full = _rows("full.json")
    names = [owner_name([f"{r['question']}\n{r['answer']}" for r in full[a * Q:(a + 1) * Q]]) for a in range(6)]
    assert names == ["Jaime Vasquez", "Chukwu Akabueze", "Aysha Al-Hashim", "Edward Patrick Sullivan",
                     "Basil Mahfouz Al-Kuwaiti", "Nikolai Abilov"]
    # a name particle stays inside the name; possessives and sentence-initial words do not make a name
    texts = ["When was Isabella van Pletzen born?", "Isabella van Pletzen's parents were travel agents.",
             "Her books sell well. Isabella van Pletzen writes self-help."]
    assert owner_name(texts) == "Isabella van Pletzen"
    # an author never named (TOFU has one): no phrase is common enough
    assert owner_name(["Where was the author born?", "The author was born in Karachi, Pakistan.",
                       "This author writes Urban Fiction.", "The author won an award."]) is None


def test_the_world_carries_its_own_evaluation_settings(tofu_world):
    from dareu.evaluation.runner import world_eval_config

    out, _ = tofu_world
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert yaml.safe_load((out / "eval.yaml").read_text()) == {"max_new_tokens": cfg["eval_max_new_tokens"]}
    assert world_eval_config(out).max_new_tokens == cfg["eval_max_new_tokens"]  # what eval and compare use
    assert world_eval_config(out, ["max_new_tokens=7"]).max_new_tokens == 7  # key=value beats the world's
    assert world_eval_config(out, fast=True).fast and world_eval_config(None).max_new_tokens == 48


def test_attacks_run_on_the_tofu_world_without_a_fact_column(tofu_world, tmp_path):
    """No fact column: a leak is the ROUGE-L recall of the answer, and the target still recovers to 1."""
    world, _ = tofu_world
    out = tmp_path / "attack"
    assert main(["attack", "--world", str(world), "--model", str(world / "models" / "target"), "--split", "forget01",
                 "--attacks", "relearn,prefix", "relearn.steps=3", "relearn.learning_rate=1e-4", "utility=false",
                 "--cache", str(tmp_path / "cache"), "--out", str(out)]) == 0
    report = json.loads((out / "attack.json").read_text())
    raw = json.loads((out / "raw" / "none.json").read_text())
    assert any(0 < v < 1 for v in raw["leaks"])                      # ROUGE recall, not a 0/1 fact match
    assert report["results"]["none"]["recovery"] == pytest.approx(1.0)


def test_a_removal_request_cuts_an_authors_split_and_trains_its_reference_with_the_tofu_recipe(tofu_world, tmp_path):
    from dareu.data import load_world
    from dareu.runs import read_json
    from dareu.service.owners import build_request_world, owners_of
    from dareu.service.reference import ensure_reference

    out, _ = tofu_world
    owners = owners_of(load_world(out))
    gone = owners[0]  # a retain author: any trained owner can be removed, not only a pre-made split
    world, split = build_request_world(out, [gone], [], tmp_path / "request")
    data = load_world(world)
    retain = "retain-" + split.removeprefix("forget-")
    assert set(data[split]["owner"]) == {gone} and len(data[split]) == Q
    assert gone not in set(data[retain]["owner"]) and len(data[retain]) == len(owners) * Q - Q
    ref = ensure_reference(out, world, split, [gone], tmp_path / "refs")
    stamp = read_json(ref / "dareu_stamp.json")
    replayed = len(read_json(out / "replay" / "replay.json")["pairs"])
    assert stamp["splits"] == [retain] and stamp["qa"] == len(data[retain]) + replayed  # the world's recipe
    assert ensure_reference(out, world, split, [gone], tmp_path / "refs") == ref  # cached per owner set
