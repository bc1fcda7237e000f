"""DareU as a Ray cluster workload, on one loopback head (`ray start --head --node-ip-address=127.0.0.1`)
started once for this module and stopped at its end (only that head: other Ray instances on the
machine are left alone). Jobs go through `dareu submit`; placement is checked against the head; rollout
workers and the scorer are killed mid-run."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from dareu.errors import DareUError
from dareu.runs import read_json
from tests.ray_head import HEAD_CPUS, env, free_port

REPO = Path(__file__).resolve().parents[1]
RUN = ["max_completion_length=12", "batch_size=8", "num_generations=4", "aux.batch_size=4", "eval_every=0"]


@pytest.fixture(scope="module")
def connected(head):
    """This test process as a driver of the head (for in-process runs and placement checks)."""
    import ray
    from ray._private import ray_constants

    # LOOPBACK for this process: Ray read the variable when it was imported, so set what it derived
    cluster_mode, ray_constants.ENABLE_RAY_CLUSTER = ray_constants.ENABLE_RAY_CLUSTER, False
    ray.init(address=head.address, log_to_driver=False, logging_config=ray.LoggingConfig(log_level="ERROR"))
    yield head
    ray.shutdown()
    ray_constants.ENABLE_RAY_CLUSTER = cluster_mode


def _new_pid(actor, old: int, timeout: float = 300) -> bool:
    """Whether the actor came back in another process (ray.kill is asynchronous: poll)."""
    import ray

    deadline = time.time() + timeout
    while time.time() < deadline:
        if ray.get(actor.pid.remote()) != old:
            return True
        time.sleep(0.2)
    return False


def _dareu(*argv: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dareu.cli", *argv], env=env(), capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, check=False)


def _cfg(*overrides: str):
    from dareu.config import load_config
    from rl.config import DareUConfig

    return load_config(DareUConfig, REPO / "configs" / "methods" / "dareu.yaml", list(overrides))


def _run_config(world, attributor, overrides):
    from rl.launch import load_dareu_config

    return load_dareu_config(overrides, flags={"world": str(world), "attributor": str(attributor),
                                               "model": str(world / "models" / "target")})


# -- bad input: one clear line each, never a hang ---------------------------------------------------

def test_an_address_nobody_listens_on_is_one_clear_line():
    nobody = f"http://127.0.0.1:{free_port()}"
    for argv in (["submit", "--address", nobody, "--", "dareu", "unlearn", "--world", "/w", "--method", "dareu",
                  "--out", "/o"], ["status", "--address", nobody], ["logs", "JOB", "--address", nobody]):
        done = _dareu(*argv, timeout=120)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and f"no Ray cluster answers at {nobody}" in lines[0]


def test_an_embedded_ray_beside_another_tells_its_workers_which_cluster_is_theirs(head):
    """Ray Train's helpers run in worker processes and find "their" cluster by address "auto"; with the module's
    head running too, that lookup fails ("multiple active Ray instances") unless the embedded Ray's workers carry
    RAY_ADDRESS naming it."""
    import os

    import ray

    from rl.launch import ray_session

    assert not ray.is_initialized() and "RAY_ADDRESS" not in os.environ
    with ray_session(""):
        ours = ray.get_runtime_context().gcs_address
        assert ours.rsplit(":", 1)[1] != head.address.rsplit(":", 1)[1]

        @ray.remote(num_cpus=0)
        def seen_by_a_worker() -> str | None:
            return os.environ.get("RAY_ADDRESS")

        assert ray.get(seen_by_a_worker.remote()) == ours
    assert "RAY_ADDRESS" not in os.environ and "RAY_GCS_SERVER_PORT" not in os.environ


def test_placement_asks_are_checked_before_ray_starts():
    from rl.placement import check_config

    with pytest.raises(DareUError, match="needs learner=ppo"):
        check_config(_cfg("placement.rollout.count=2"))
    with pytest.raises(DareUError, match="learner.colocated=true cannot be satisfied"):
        check_config(_cfg("placement.learner.colocated=true"))
    with pytest.raises(DareUError, match="separate reference actor is not built"):
        check_config(_cfg("placement.reference.count=1"))
    check_config(_cfg())  # the default: rollouts and reference inside the learner, a 0-CPU scorer


def test_default_placement_keeps_the_single_machine_layout():
    from rl.placement import Placement

    plan = Placement(_cfg(), {"CPU": 2.0})
    assert plan.learner == {"CPU": 1.0} and plan.pools == []  # learner_cpus CPUs; no groups, no rollout actors
    assert plan.options("scorer") == {"num_cpus": 0.0, "num_gpus": 0.0}
    assert Placement(_cfg(), {"CPU": 8.0, "GPU": 1.0}).learner == {"GPU": 1.0}  # one GPU when the cluster has one


def test_colocated_roles_share_bundles_and_fractions_of_a_gpu():
    from rl.placement import Placement

    cfg = _cfg("learner=ppo", "placement.rollout.count=2", "placement.rollout.num_gpus=0.5",
               "placement.rollout.colocated=true", "placement.scorer.num_gpus=0.5", "placement.scorer.num_cpus=1",
               "placement.scorer.colocated=true")
    plan = Placement(cfg, {"CPU": 8.0, "GPU": 2.0})
    [pool] = plan.pools
    assert pool.roles == ["rollout", "scorer"]
    assert pool.bundles == [{"CPU": 2.0, "GPU": 1.0}, {"CPU": 1.0, "GPU": 0.5}]  # bundle 0: rollout 0 + the scorer


def test_more_gpus_than_the_cluster_has_names_what_is_missing(connected, tiny_world, tiny_attributor, tmp_path):
    from rl.launch import run_unlearn

    out = tmp_path / "run"
    overrides = ["learner=ppo", "placement.rollout.count=2", "placement.rollout.num_gpus=1", "max_steps=2", *RUN]
    start = time.time()
    with pytest.raises(DareUError, match=r"placement needs 2 GPU \(rollout 2x1\) but the cluster has 0 GPU available"):
        run_unlearn(_run_config(tiny_world, tiny_attributor, overrides), out)
    assert time.time() - start < 300  # an error, not a wait
    assert read_json(out / "status.json")["state"] == "failed"


def test_unsatisfiable_placement_is_an_error_not_a_hang(connected):
    from rl.placement import Placement

    spread = Placement(_cfg("learner=ppo", "placement.rollout.count=2", "placement.strategy=STRICT_SPREAD"),
                       {"CPU": HEAD_CPUS})
    with pytest.raises(DareUError, match="STRICT_SPREAD puts each of the 2 rollout bundles on a different node"):
        spread.check_cluster()
    # a group the cluster could hold but cannot reserve now (another group holds the CPUs): bounded wait
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    holder = placement_group([{"CPU": HEAD_CPUS - 0.5}])
    ray.get(holder.ready())
    try:
        late = Placement(_cfg("learner=ppo", "placement.rollout.count=2", "placement.wait_s=2"), {"CPU": HEAD_CPUS})
        with pytest.raises(DareUError, match="not reserved within 2s"):
            late.reserve()
        assert late.pools[0].group is None
    finally:
        remove_placement_group(holder)  # asynchronous: wait until the next test can have the CPUs again
        deadline = time.time() + 60
        while ray.available_resources().get("CPU", 0) < HEAD_CPUS and time.time() < deadline:
            time.sleep(0.2)


# -- rollout workers and weight sync --------------------------------------------------------------

def test_rollout_worker_samples_what_the_learner_would_after_a_weight_push_and_after_a_restart(
        connected, tiny_world, tiny_data, tmp_path):
    import ray

    from dareu.modeling import load_model, load_tokenizer, prompt_text
    from rl.placement import Placement
    from rl.ppo_loop import sample
    from rl.rollout import RolloutPool, start_workers

    cfg = _cfg("learner=ppo", "placement.rollout.count=2", "placement.rollout.num_cpus=0.5", *RUN)
    target = str(tiny_world / "models" / "target")
    tok = load_tokenizer(target)
    model = load_model(target, dtype=torch.float32)
    prompts = [prompt_text(tok, r["question"]) for r in list(tiny_data["forget10"])[:2]]
    on_disk = sample(model, tok, prompts, cfg, seed=5)
    torch.manual_seed(0)
    with torch.no_grad():  # the learner's weights move away from the model on disk
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    learner = sample(model, tok, prompts, cfg, seed=5)
    assert learner[3] != on_disk[3]

    plan = Placement(cfg, ray.cluster_resources())
    plan.check_cluster()
    plan.reserve()
    try:
        workers = start_workers(plan, tmp_path, target, cfg)
        one = RolloutPool(workers[:1])
        one.push(model)
        pushed = one.sample(tok, prompts, cfg, seed=5)
        assert torch.equal(pushed[0], learner[0]) and torch.equal(pushed[1], learner[1]) and pushed[3] == learner[3]
        # a restarted worker comes back with the weights on disk and catches up before it samples
        before = ray.get(workers[0].pid.remote())
        ray.kill(workers[0], no_restart=False)
        again = one.sample(tok, prompts, cfg, seed=5)
        assert _new_pid(workers[0], before)
        assert torch.equal(again[0], learner[0]) and again[3] == learner[3]
        # two workers: one push (one object in the store), each samples its share of the prompts
        both = RolloutPool(workers)
        both.push(model)
        ids, _, n_prompt, texts = both.sample(tok, prompts, cfg, seed=5)
        assert ids.shape[0] == len(prompts) * cfg.num_generations == len(texts) and n_prompt == learner[2]
        assert {i["version"] for i in ray.get([w.info.remote() for w in workers])} == {both.version}
    finally:
        plan.release()


# -- fault tolerance ------------------------------------------------------------------------------

def test_run_completes_its_planned_steps_when_the_scorer_and_a_rollout_worker_are_killed_mid_run(
        connected, tiny_world, tiny_attributor, tmp_path):
    import ray

    from rl.launch import run_unlearn

    out = tmp_path / "run"
    steps = 6
    overrides = ["learner=ppo", "placement.rollout.count=2", "placement.rollout.num_cpus=0.5",
                 f"max_steps={steps}", "save_steps=1", *RUN]
    killed: dict = {}

    def kill_when_training():
        deadline = time.time() + 900
        while not (out / "checkpoints" / "checkpoint-1").is_dir() and time.time() < deadline:
            time.sleep(0.1)
        names = ray.util.list_named_actors()  # this driver's namespace: the run's actors
        scorer = ray.get_actor(next(n for n in names if n.startswith("dareu-scorer-")))
        rollout = ray.get_actor(next(n for n in names if n.startswith("dareu-rollout-") and n.endswith("-1")))
        before = ray.get([scorer.pid.remote(), rollout.pid.remote()])
        killed["last_checkpoint_at_kill"] = (out / "checkpoints" / f"checkpoint-{steps}").exists()
        ray.kill(scorer, no_restart=False)
        ray.kill(rollout, no_restart=False)
        killed["restarted"] = [_new_pid(scorer, before[0]), _new_pid(rollout, before[1])]

    thread = threading.Thread(target=kill_when_training, daemon=True)
    thread.start()
    assert run_unlearn(_run_config(tiny_world, tiny_attributor, overrides), out)["seconds"] > 0
    thread.join(timeout=60)
    assert killed.get("last_checkpoint_at_kill") is False  # the kill landed mid-run
    assert killed["restarted"] == [True, True]
    assert read_json(out / "status.json")["state"] == "done"
    log = read_json(out / "trainer_log.json")
    assert [e["step"] for e in log if "reward" in e] == list(range(1, steps + 1))
    assert all(e["rollout/push_seconds"] >= 0 for e in log if "reward" in e)


def test_a_learner_worker_killed_mid_run_is_restarted_from_its_checkpoint_and_logs_each_step_once(
        connected, tiny_world, tiny_attributor, tmp_path):
    """What Ray's memory monitor does to a learner when the machine runs short: SIGKILL. Ray Train restarts the
    worker (learner_restarts) and the new one resumes from the run's last checkpoint."""
    import os
    import signal

    from ray.util.state import list_actors

    from rl.launch import run_unlearn

    out = tmp_path / "run"
    steps = 20
    killed: dict = {}

    def kill_when_checkpointed():
        deadline = time.time() + 900
        workers = []
        while not workers and time.time() < deadline:  # the worker's pid first: the state API takes a moment
            workers = list_actors(address=connected.dashboard,
                                  filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])
        # trainer_state.json is the last file the Trainer writes into a checkpoint
        while not (out / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file() and time.time() < deadline:
            time.sleep(0.05)
        killed["at_step"] = max(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("checkpoint-*"))
        os.kill(workers[0].pid, signal.SIGKILL)

    thread = threading.Thread(target=kill_when_checkpointed, daemon=True)
    thread.start()
    run_unlearn(_run_config(tiny_world, tiny_attributor, [f"max_steps={steps}", "save_steps=2", *RUN]), out)
    thread.join(timeout=60)
    assert 2 <= killed["at_step"] < steps  # the kill landed mid-run
    assert read_json(out / "status.json")["state"] == "done"
    assert read_json(out / "learner.json")["resumed_from"] is not None  # the restarted worker resumed
    log = read_json(out / "trainer_log.json")
    assert [e["step"] for e in log if "reward" in e] == list(range(1, steps + 1))


# -- job launch -----------------------------------------------------------------------------------

def test_submit_wait_runs_a_short_deattribution_job_and_its_result_is_read_back(head, tiny_world, tiny_attributor,
                                                                               tmp_path):
    out = tmp_path / "run"
    done = _dareu("submit", "--address", head.dashboard, "--wait", "--", "dareu", "unlearn", "--world", str(tiny_world),
                  "--method", "dareu", "--attributor", str(tiny_attributor), "--out", str(out), "max_steps=2", *RUN)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    job = re.search(r"submitted (\S+) to", done.stdout).group(1)
    assert f"dareu logs {job} --follow --address {head.dashboard}" in done.stdout  # how to follow it
    assert "[dareu] step 2/2" in done.stdout and f"job {job} SUCCEEDED" in done.stdout  # followed to the end
    assert read_json(out / "status.json")["state"] == "done"
    assert (out / "model" / "config.json").is_file() and "forget_quality" in read_json(out / "eval.json")
    status = _dareu("status", job, "--address", head.dashboard, timeout=120)
    assert status.returncode == 0 and f"{job}: SUCCEEDED" in status.stdout and "exit code: 0" in status.stdout
    assert "[dareu] step 2/2" in _dareu("logs", job, "--address", head.dashboard, timeout=120).stdout
    unknown = _dareu("status", "raysubmit_nosuchjob", "--address", head.dashboard, timeout=120)
    assert unknown.returncode == 2 and "no job 'raysubmit_nosuchjob'" in unknown.stderr


def test_submit_wait_exits_with_the_jobs_exit_code_when_it_fails(head, tmp_path):
    missing = tmp_path / "no-world"
    done = _dareu("submit", "--address", head.dashboard, "--wait", "--", "dareu", "unlearn", "--world", str(missing),
                  "--method", "npo", "--out", str(tmp_path / "run"), timeout=300)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]  # the job's bad-input exit code
    assert "dareu unlearn: error:" in done.stdout and re.search(r"job \S+ FAILED", done.stderr)


def test_a_stopped_job_resumes_from_its_checkpoint_when_resubmitted(head, tiny_world, tiny_attributor, tmp_path):
    from ray.job_submission import JobSubmissionClient

    out = tmp_path / "run"
    # PPO writes each checkpoint atomically, so wherever the stop lands, the latest checkpoint is whole
    steps = 20
    unlearn = ["dareu", "unlearn", "--world", str(tiny_world), "--method", "dareu", "--attributor",
               str(tiny_attributor), "--out", str(out), "--learner", "ppo", f"max_steps={steps}", "save_steps=2", *RUN]
    first = _dareu("submit", "--address", head.dashboard, "--", *unlearn, timeout=300)
    assert first.returncode == 0, first.stderr
    job = re.search(r"submitted (\S+) to", first.stdout).group(1)
    deadline = time.time() + 900
    while not (out / "checkpoints" / "checkpoint-2").is_dir() and time.time() < deadline:
        time.sleep(0.05)
    JobSubmissionClient(head.dashboard).stop_job(job)  # as a crash or a pre-empted node would
    while "STOPPED" not in (status := _dareu("status", job, "--address", head.dashboard, timeout=120)).stdout:
        assert time.time() < deadline, status.stdout + status.stderr
        time.sleep(1)
    assert read_json(out / "status.json")["state"] != "done"  # never mistaken for success
    assert not (out / "trainer_log.json").exists()  # stopped mid-training

    again = _dareu("submit", "--address", head.dashboard, "--wait", "--", *unlearn, "--resume")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert read_json(out / "status.json")["state"] == "done"
    log = read_json(out / "trainer_log.json")
    assert [e["step"] for e in log if "reward" in e] == list(range(1, steps + 1))  # none lost, none repeated
    assert read_json(out / "learner.json")["resumed_from"].startswith("checkpoint-")  # not a fresh start
