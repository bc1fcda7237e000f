"""Nothing of the user's is lost and every input is checked: the cases a new user hit, each made small.

Every refusal is one line on stderr with exit code 2, before any model loads, and leaves the folder as it was.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dareu.cli import main
from dareu.errors import DareUError
from dareu.runs import MARKER, claim_run_dir, run_kind, set_status

REPO = Path(__file__).resolve().parents[1]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- 1-3: the folder guard ------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["npo", "dareu"])
def test_overwrite_never_deletes_a_folder_dareu_did_not_make(method, tiny_world, tiny_attributor, tmp_path, capsys):
    out = tmp_path / "x"
    out.mkdir()
    (out / "thesis.txt").write_text("four years of work")
    extra = ["--attributor", str(tiny_attributor)] if method == "dareu" else []
    rc = main(["unlearn", "--world", str(tiny_world), "--method", method, "--out", str(out), "--overwrite",
               "--max-steps", "1", *extra])
    assert rc == 2 and "not made by DareU" in _one_line_error(capsys)
    assert (out / "thesis.txt").read_text() == "four years of work" and len(list(out.iterdir())) == 1


def test_overwrite_with_resume_is_refused_for_dareu_and_keeps_the_folder(tiny_world, tiny_attributor, tmp_path,
                                                                         capsys):
    out = tmp_path / "run"
    claim_run_dir(out, "unlearn")
    set_status(out, "running")
    before = _snapshot(out)
    rc = main(["unlearn", "--world", str(tiny_world), "--method", "dareu", "--attributor", str(tiny_attributor),
               "--out", str(out), "--overwrite", "--resume"])
    assert rc == 2 and "contradict" in _one_line_error(capsys)
    assert _snapshot(out) == before


@pytest.mark.parametrize("method", ["npo", "dareu"])
def test_resume_on_a_folder_that_is_not_a_run_writes_nothing(method, tiny_world, tiny_attributor, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "data.csv").write_text("a,b\n")
    extra = ["--attributor", str(tiny_attributor)] if method == "dareu" else []
    rc = main(["unlearn", "--world", str(tiny_world), "--method", method, "--out", str(out), "--resume", *extra])
    assert rc == 2 and "not made by DareU" in _one_line_error(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["data.csv"]


def test_resume_with_a_changed_setting_is_refused_naming_it_and_keeps_the_saved_config(
        tiny_world, tiny_attributor, tmp_path, capsys):
    from rl.launch import load_dareu_config

    out = tmp_path / "run"
    cfg = load_dareu_config(flags={"world": str(tiny_world), "attributor": str(tiny_attributor),
                                   "model": str(tiny_world / "models" / "target")})
    claim_run_dir(out, "unlearn")  # a killed run: its folder, config and status, no checkpoint yet
    from dareu.config import save_config

    save_config(cfg, out / "config.yaml")
    set_status(out, "running")
    saved = (out / "config.yaml").read_text()
    rc = main(["unlearn", "--world", str(tiny_world), "--method", "dareu", "--attributor", str(tiny_attributor),
               "--out", str(out), "--resume", "max_steps=7", "learning_rate=0.1"])
    err = _one_line_error(capsys)
    assert rc == 2 and "learning_rate" in err and "max_steps" in err and "other settings" in err
    assert (out / "config.yaml").read_text() == saved


def test_a_run_folder_of_another_kind_is_refused(tmp_path):
    out = tmp_path / "att"
    claim_run_dir(out, "attributor")
    (out / "model.bin").write_text("weights")
    with pytest.raises(DareUError, match="holds a DareU attributor folder, not a unlearn one"):
        claim_run_dir(out, "unlearn", overwrite=True)
    assert (out / "model.bin").is_file()


def test_overwrite_replaces_a_run_folder_of_the_same_kind(tmp_path):
    out = tmp_path / "run"
    claim_run_dir(out, "unlearn")
    (out / "old.json").write_text("{}")
    path, existed = claim_run_dir(out, "unlearn", overwrite=True)
    assert not existed and sorted(p.name for p in path.iterdir()) == [MARKER] and run_kind(path) == "unlearn"


def test_runs_made_before_the_marker_are_recognised_by_their_files(tmp_path):
    run = tmp_path / "old-run"
    run.mkdir()
    (run / "config.yaml").write_text("method: npo\n")
    set_status(run, "done")
    assert run_kind(run) == "unlearn"
    (tmp_path / "plain").mkdir()
    assert run_kind(tmp_path / "plain") is None


def test_compare_refuses_a_non_empty_out_and_never_writes_into_a_collected_run(tiny_world, tmp_path, capsys):
    # a finished run made elsewhere, with an eval/ folder of its own that compare must not replace
    run = tmp_path / "runA"
    assert main(["unlearn", "--world", str(tiny_world), "--method", "ga", "--out", str(run), "--max-steps", "1",
                 "train.probe_qa=0"]) == 0
    (run / "eval").mkdir()
    (run / "eval" / "notes.txt").write_text("mine")
    before = _snapshot(run)
    capsys.readouterr()
    busy = tmp_path / "nonempty"
    busy.mkdir()
    (busy / "paper.tex").write_text("draft")
    rc = main(["compare", "--world", str(tiny_world), "--methods", "ga", "--run", f"ga={run}", "--out", str(busy)])
    assert rc == 2 and "not made by DareU" in _one_line_error(capsys)
    assert sorted(p.name for p in busy.iterdir()) == ["paper.tex"]
    out = tmp_path / "cmp"
    assert main(["compare", "--world", str(tiny_world), "--methods", "ga", "--run", f"ga={run}", "--out", str(out)]) == 0
    assert _snapshot(run) == before  # collected runs are read, never written
    assert (out / "collected" / "ga" / "eval" / "eval.json").is_file()


# ---- 4-5, 8: values checked before any model loads ------------------------------------------------------

@pytest.mark.parametrize("override, key", [
    ("max_steps=-1", "max_steps"), ("learning_rate=-1", "learning_rate"), ("temperature=0", "temperature"),
    ("save_steps=0", "save_steps"), ("reward.name=foo", "reward.name"), ("utility_floor=2", "utility_floor"),
    ("max_completion_length=0", "max_completion_length"), ("aux.forget=foo", "aux.forget"),
    ("ppo.clip_coef=0", "ppo.clip_coef"),
])
def test_dareu_values_out_of_range_stop_before_the_run_folder(override, key, tiny_world, tiny_attributor, tmp_path,
                                                               capsys):
    out = tmp_path / "r"
    rc = main(["unlearn", "--world", str(tiny_world), "--method", "dareu", "--attributor", str(tiny_attributor),
               "--out", str(out), override])
    err = _one_line_error(capsys)
    assert rc == 2 and f"'{key}'" in err and not out.exists()


@pytest.mark.parametrize("override, key", [
    ("train.learning_rate=-1", "train.learning_rate"), ("train.optim=foo", "train.optim"),
    ("train.lr_scheduler=foo", "train.lr_scheduler"), ("train.save_steps=0", "train.save_steps"),
    ("lora.dropout=1.5", "lora.dropout"), ("train.trainable=(", "train.trainable"),
])
def test_loss_based_values_out_of_range_stop_before_the_run_folder(override, key, tiny_world, tmp_path, capsys):
    out = tmp_path / "r"
    rc = main(["unlearn", "--world", str(tiny_world), "--method", "npo", "--out", str(out), override])
    err = _one_line_error(capsys)
    assert rc == 2 and f"'{key}'" in err and not out.exists()


def test_a_misspelt_choice_suggests_the_right_one(tiny_world, tmp_path, capsys):
    rc = main(["unlearn", "--world", str(tiny_world), "--method", "npo", "--out", str(tmp_path / "r"),
               "train.lr_scheduler=cosin"])
    assert rc == 2 and "did you mean cosine" in _one_line_error(capsys)


@pytest.mark.parametrize("method", ["npo", "dareu"])
def test_max_steps_zero_is_refused_not_ignored(method, tiny_world, tiny_attributor, tmp_path, capsys):
    extra = ["--attributor", str(tiny_attributor)] if method == "dareu" else []
    rc = main(["unlearn", "--world", str(tiny_world), "--method", method, "--out", str(tmp_path / "r"),
               "--max-steps", "0", *extra])
    assert rc == 2 and "--max-steps 0" in _one_line_error(capsys)


def test_config_file_is_layered_over_the_shipped_method_defaults(tmp_path):
    from dareu.unlearn import load_run_config
    from rl.launch import load_dareu_config

    mine = tmp_path / "my.yaml"
    mine.write_text("max_steps: 10\n")
    cfg = load_dareu_config(config=mine)
    shipped = yaml.safe_load((REPO / "configs" / "methods" / "dareu.yaml").read_text())
    assert cfg.max_steps == 10
    assert cfg.aux.forget == shipped["aux"]["forget"] and cfg.aux.retain_coef == shipped["aux"]["retain_coef"]
    mine.write_text("train:\n  max_steps: 10\n")
    npo = load_run_config("npo", config=mine)
    shipped = yaml.safe_load((REPO / "configs" / "methods" / "npo.yaml").read_text())
    assert npo.train.max_steps == 10 and npo.train.learning_rate == shipped["train"]["learning_rate"]


def test_flags_override_the_config_and_key_value_overrides_override_flags_for_both_paths(tiny_world):
    from dareu.unlearn import load_run_config
    from rl.launch import load_dareu_config

    assert load_dareu_config(["max_steps=5"], flags={"max_steps": 9}).max_steps == 5
    assert load_run_config("npo", ["train.max_steps=5"], flags={"train": {"max_steps": 9}}).train.max_steps == 5


# ---- 11-13: messages and help ------------------------------------------------------------------------------

def test_compare_checks_collected_runs_before_any_evaluation(tiny_world, tmp_path, capsys):
    rc = main(["compare", "--world", str(tiny_world), "--methods", "npo", "--run", f"npo={tmp_path / 'nope'}",
               "--out", str(tmp_path / "c")])
    assert rc == 2 and "does not exist" in _one_line_error(capsys)
    rc = main(["compare", "--world", str(tiny_world), "--methods", "ga", "--run", f"npo={tmp_path}",
               "--out", str(tmp_path / "c")])
    assert rc == 2 and "not in --methods" in _one_line_error(capsys)
    assert not (tmp_path / "c").exists()


def test_misspelt_section_suggests_the_whole_key(tiny_world, tmp_path, capsys):
    rc = main(["unlearn", "--world", str(tiny_world), "--method", "npo", "--out", str(tmp_path / "r"),
               "trian.learning_rate=1e-4"])
    assert rc == 2 and "train.learning_rate" in _one_line_error(capsys)


def test_unknown_method_lists_dareu_too(tiny_world, tmp_path, capsys):
    rc = main(["unlearn", "--world", str(tiny_world), "--method", "dareuu", "--out", str(tmp_path / "r")])
    err = _one_line_error(capsys)
    assert rc == 2 and "npo" in err and "dareu (RL" in err


def test_unknown_command_suggests_the_closest(capsys):
    assert main(["unlaern"]) == 2
    assert "did you mean unlearn" in _one_line_error(capsys)


def test_attack_and_thread_flags_are_one_line_each(tiny_world, tmp_path, capsys):
    model = str(tiny_world / "models" / "target")
    rc = main(["attack", "--world", str(tiny_world), "--model", model, "--attacks", "relern", "--out", str(tmp_path / "a")])
    assert rc == 2 and "unknown attack 'relern' (did you mean relearn" in _one_line_error(capsys)
    rc = main(["eval", "--world", str(tiny_world), "--model", model, "--threads", "0", "--out", str(tmp_path / "e")])
    assert rc == 2 and "--threads 0: give a number of threads >= 1" in _one_line_error(capsys)
    assert not (tmp_path / "a").exists() and not (tmp_path / "e").exists()


def test_unlearn_help_lists_the_rl_keys_with_their_shipped_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["unlearn", "--method", "dareu", "--help"])
    text = capsys.readouterr().out
    shipped = yaml.safe_load((REPO / "configs" / "methods" / "dareu.yaml").read_text())
    assert "train.learning_rate" in text and "reward.plausibility_coef" in text and "placement.scorer.num_cpus" in text
    assert f"aux.forget = {shipped['aux']['forget']!r}" in text
    assert f"aux.retain_coef = {shipped['aux']['retain_coef']!r}" in text


@pytest.mark.parametrize("command", ["prepare", "world", "eval", "train-attributor", "demo"])
def test_help_example_override_is_a_real_key_of_the_command(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    example = re.search(r"e\.g\.\s+([\w.]+)=", text).group(1)
    assert f"  {example} = " in text  # listed among the command's own config keys


def test_prepare_help_shows_the_base_training_default_it_uses(capsys):
    from dareu.prepare import PrepareConfig

    with pytest.raises(SystemExit):
        main(["prepare", "--help"])
    assert f"base_train.epochs = {PrepareConfig().base_train.epochs!r}" in capsys.readouterr().out


def test_dareu_help_imports_no_heavy_library():
    code = "import sys; from dareu.cli import main\ntry: main(['--help'])\nexcept SystemExit: pass\n" \
           "heavy = [m for m in ('torch', 'transformers', 'ray', 'datasets') if m in sys.modules]\nprint(heavy)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stderr[-500:]


def test_submit_refuses_a_bad_method_or_key_before_it_contacts_a_cluster(capsys):
    nobody = "http://127.0.0.1:9"  # nothing listens: reaching it would be a different error
    for inner, says in ((["--method", "npx"], "unknown objective 'npx'"),
                        (["--method", "npo", "train.learning_rate=-1"], "'train.learning_rate' must be > 0"),
                        (["--method", "dareu", "reward.nam=x"], "did you mean reward.name")):
        rc = main(["submit", "--address", nobody, "--", "dareu", "unlearn", "--world", "/w", "--out", "/o", *inner])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and says in err[-1], err


def test_a_submitted_job_runs_the_submitters_own_dareu_without_an_activated_venv():
    from dareu.commands.jobs import entrypoint

    line = entrypoint(["dareu", "--help"])
    done = subprocess.run(["/bin/sh", "-c", line], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0 and "usage: dareu" in done.stdout, done.stderr[-500:]


def test_an_attributor_made_from_another_build_of_the_data_is_refused(tiny_world, tiny_attributor, tmp_path, capsys):
    import json
    import shutil

    other = tmp_path / "other-att"
    shutil.copytree(tiny_attributor, other)
    info = json.loads((other / "attributor.json").read_text())
    assert info["benchmark"]["data_key"]  # recorded when it was trained
    info["benchmark"]["data_key"] = "0123456789abcdef"  # same owners, another build of the world
    (other / "attributor.json").write_text(json.dumps(info))
    rc = main(["eval", "--world", str(tiny_world), "--model", str(tiny_world / "models" / "target"),
               "--attributor", str(other), "--out", str(tmp_path / "e")])
    assert rc == 2 and "made from other data" in _one_line_error(capsys) and not (tmp_path / "e").exists()
    rc = main(["unlearn", "--world", str(tiny_world), "--method", "dareu", "--attributor", str(other),
               "--out", str(tmp_path / "r")])
    assert rc == 2 and "made from other data" in _one_line_error(capsys) and not (tmp_path / "r").exists()


def test_a_bad_retain_model_is_reported_as_the_retain_model(tiny_world, tmp_path, capsys):
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    rc = main(["eval", "--world", str(tiny_world), "--model", str(tiny_world / "models" / "target"),
               "--retain-model", str(empty), "--out", str(tmp_path / "e")])
    err = _one_line_error(capsys)
    assert rc == 2 and f"--retain-model {empty}: no model there" in err


@pytest.mark.parametrize("command, override, key", [
    ("eval", "batch_size=0", "batch_size"), ("eval", "temperature=-1", "temperature"),
    ("train-attributor", "tfidf.C=-1", "tfidf.C"), ("train-attributor", "llm.epochs=-1", "llm.epochs"),
    ("train-attributor", "data.test_fraction=0.95", "data.test_fraction"),
    ("prepare", "finetune.learning_rate=-1", "finetune.learning_rate"), ("prepare", "workers=0", "workers"),
    ("prepare", "model.num_heads=3", "model.hidden_size"),
])
def test_every_commands_values_are_checked_before_its_folder(command, override, key, tiny_world, tmp_path, capsys):
    out = tmp_path / "out"
    argv = {"eval": ["--world", str(tiny_world), "--model", str(tiny_world / "models" / "target")],
            "train-attributor": ["--world", str(tiny_world), "--kind", "tfidf"], "prepare": []}[command]
    rc = main([command, *argv, "--out", str(out), override])
    err = _one_line_error(capsys)
    assert rc == 2 and f"'{key}'" in err and not out.exists()


def test_compare_rows_with_a_seed_are_the_method_with_that_seed_and_a_bad_seed_is_one_line():
    from dareu.commands.compare import method_seed

    assert method_seed("npo") == ("npo", [])
    assert method_seed("dareu@2") == ("dareu", ["seed=2"])
    with pytest.raises(DareUError, match="after @ comes a seed"):
        method_seed("dareu@two")


def test_serve_refuses_a_store_that_holds_other_files_and_a_short_token_before_listening(tmp_path, capsys, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["serve", "--store", str(mine), "--ray-address", "http://127.0.0.1:9"]) == 2
    assert "is not empty and holds no request store" in _one_line_error(capsys)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    monkeypatch.setenv("DAREU_TOKEN", "short")
    assert main(["serve", "--store", str(tmp_path / "s"), "--ray-address", "http://127.0.0.1:9"]) == 2
    assert "shorter than 16 characters" in _one_line_error(capsys)
    assert main(["serve", "--store", str(tmp_path / "s"), "--max-running", "0"]) == 2
    assert "--max-running 0: give 1 or more" in _one_line_error(capsys)
