"""`dareu demo --fast` end to end, the comparison report, and the refusal to mix references."""

from __future__ import annotations

import shutil

import pytest

from dareu.cli import main
from dareu.commands.compare import COLUMNS, check_same_reference, pareto_front
from dareu.errors import DareUError
from dareu.runs import MARKER, claim_run_dir, read_json, write_json


@pytest.fixture(scope="module")
def fast_demo(tiny_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    claim_run_dir(out, "demo")  # a demo folder whose first stage is done:
    # the fast demo's world is the tiny world: reuse the session's (prepare sees valid stamps)
    shutil.copytree(tiny_world, out / "world", ignore=shutil.ignore_patterns("eval"))
    assert main(["demo", "--fast", "--out", str(out)]) == 0
    return out


def test_fast_demo_reports_every_column_for_every_method(fast_demo):
    report = read_json(fast_demo / "report.json")
    methods = report["methods"]
    assert "dareu" in methods and len(methods) >= 3
    for name in [*methods, "target", "retain", "retain_seed2"]:
        row = report["rows"][name]
        missing = [c for c in COLUMNS if c != "wall_seconds" and row[c] is None]
        assert not missing, (name, missing)
    for m in methods:
        assert report["rows"][m]["wall_seconds"] > 0
    assert report["rows"]["retain"]["forget_quality"] == pytest.approx(1.0)
    text = (fast_demo / "report.md").read_text()
    assert all(f"| {m} |" in text for m in methods) and "**" in text
    for png in ("pareto.png", "attribution.png"):
        assert (fast_demo / png).stat().st_size > 10_000


def test_demo_rerun_reuses_everything(fast_demo):
    weights = fast_demo / "runs" / "dareu" / "model" / "model.safetensors"
    attributor = fast_demo / "attributor" / "report.json"
    before = weights.stat().st_mtime_ns, attributor.stat().st_mtime_ns
    assert main(["demo", "--fast", "--out", str(fast_demo)]) == 0
    assert (weights.stat().st_mtime_ns, attributor.stat().st_mtime_ns) == before  # the README times the re-run


def test_demo_refuses_its_folder_with_other_settings_and_touches_nothing(fast_demo, capsys):
    report = fast_demo / "report.json"
    before = report.stat().st_mtime_ns
    assert main(["demo", "--fast", "--out", str(fast_demo), "dareu_overrides=[max_steps=11]"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "dareu_overrides" in err and "--overwrite" in err
    assert report.stat().st_mtime_ns == before


def test_overwrite_starts_the_demo_over_but_keeps_a_world_of_the_same_settings(tmp_path):
    from dareu.commands.demo import DemoConfig, check_demo_out
    from dareu.config import to_dict

    def made(cfg):
        out = tmp_path / "d"
        shutil.rmtree(out, ignore_errors=True)
        for sub in ("world", "attributor", "runs"):
            (out / sub).mkdir(parents=True)
        (out / "report.json").write_text("{}")
        write_json(out / "demo_config.json", to_dict(cfg))
        return out

    def names(out):
        return {p.name for p in out.iterdir()} - {MARKER}

    out = made(DemoConfig())
    check_demo_out(out, DemoConfig(), overwrite=False)  # same settings: everything stays
    assert names(out) == {"world", "attributor", "runs", "report.json", "demo_config.json"}
    check_demo_out(out, DemoConfig(attributor_kind="llm"), overwrite=True)
    assert names(out) == {"world"}
    out = made(DemoConfig())
    (out / "notes.txt").write_text("mine")  # a file the demo did not write survives starting over
    check_demo_out(out, DemoConfig(prepare_overrides=[]), overwrite=True)  # another world: nothing kept
    assert names(out) == {"notes.txt"}


def test_compare_refuses_runs_evaluated_against_another_retain_model(fast_demo, tmp_path):
    run = tmp_path / "npo-elsewhere"
    shutil.copytree(fast_demo / "runs" / "npo", run)
    meta = read_json(run / "eval" / "eval_meta.json")
    write_json(run / "eval" / "eval_meta.json", {**meta, "retain": "/somewhere/else/retain-forget10"})
    with pytest.raises(DareUError, match="evaluated against retain model"):
        from dareu.commands.compare import compare

        compare(str(fast_demo / "world"), "forget10", ["npo"], tmp_path / "cmp", runs={"npo": str(run)})
    with pytest.raises(DareUError, match="evaluated on split 'forget05'"):
        check_same_reference({**meta, "split": "forget05"}, "forget10", meta["retain"], "run x")


def test_pareto_front_keeps_only_undominated_methods():
    rows = {"a": {"forget_quality": 0.5, "model_utility": 0.5}, "b": {"forget_quality": 0.4, "model_utility": 0.4},
            "c": {"forget_quality": 0.1, "model_utility": 0.9}}
    assert pareto_front(rows, ["a", "b", "c"]) == ["a", "c"]


def test_labels_of_points_close_together_do_not_overlap_or_leave_the_plot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dareu.commands.compare import label_offsets

    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    points = [("graddiff", 0.5620, 1e-11, False), ("satimp", 0.5618, 8e-12, False), ("far", 0.50, 1e-2, False),
              ("retain_seed2", 0.60, 0.7, True)]
    ax.scatter([p[1] for p in points], [p[2] for p in points])
    ax.set_yscale("log")
    fig.tight_layout()
    offsets = label_offsets(ax, points)
    assert offsets[0] == (5, 4, "left") and offsets[2] == (5, 4, "left")  # free places keep the default
    assert offsets[1] != offsets[0]  # the second of two close points moves its label
    assert offsets[3][2] == "right"  # a long name at the right edge is written to the left of its point
    plt.close(fig)
