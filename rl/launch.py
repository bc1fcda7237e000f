"""`dareu unlearn --method dareu`: the launcher. Reads top to bottom:

1. resolve the config and check every input (one clear line each, before Ray starts)
2. claim the run folder (or resume it), compute the retain model's reference logs (cached)
3. start Ray: join a cluster (ray_address / RAY_ADDRESS, e.g. under `dareu submit`) or an embedded local one;
   check the cluster holds what the placement asks for (rl/placement.py), then reserve its groups
4. start the attribution scorer (and rollout workers, when placement.rollout.count > 0) as restartable
   actors pinned to their bundles (by default the scorer takes 0 CPUs: it must not starve the learner)
5. run the learner in Ray Train (one worker; rollouts inside it by default: TRL's HF generate, or vLLM
   colocated on GPU; with rollout workers, PPO samples through them and pushes weights after each update)
6. evaluate the final model, plot the curves, mark the run done (a crash leaves status "failed")
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
import traceback
from pathlib import Path

from dareu.config import from_dict, save_config
from dareu.data import check_forget_split, check_same_data, get_split, load_world
from dareu.errors import DareUError
from dareu.ports import free_port
from dareu.runs import claim_run_dir, read_json, set_status, write_json
from dareu.unlearn.config import layered_config
from dareu.unlearn.run import check_resume
from rl.config import DareUConfig
from rl.curves import plot_curves
from rl.placement import check_config


def load_dareu_config(overrides: list[str] | None = None, config: str | Path | None = None,
                      flags: dict | None = None) -> DareUConfig:
    """The shipped `dareu.yaml` <- the user's `config` file (layered over it, never instead of it) <- `flags`
    (a nested dict from the command-line flags) <- key=value `overrides`: the same order as the loss-based methods.
    The shipped `aux.forget_params` belong to the shipped `aux.forget`: another objective gets only the parameters
    the user gives it (`aux.forget=fact_npo` alone runs it with its own defaults)."""
    from dareu.config import merge, parse_overrides, read_yaml

    data = layered_config("dareu", overrides, config, flags)
    user = merge(merge(read_yaml(config) if config else {}, flags or {}), parse_overrides(overrides or []))
    mine = user.get("aux") or {}
    if mine.get("forget", DareUConfig().aux.forget) != DareUConfig().aux.forget:
        data["aux"] = {**data["aux"], "forget_params": dict(mine.get("forget_params") or {})}
    return from_dict(DareUConfig, data)


def preflight(cfg: DareUConfig) -> dict:
    """Every input check that needs no Ray and no training. Returns what the run needs."""
    world, split, attributor = cfg.world, cfg.split, cfg.attributor
    model = cfg.model or str(Path(world) / "models" / "target")
    if not world:
        raise DareUError("no world given; pass --world W (a folder made by `dareu prepare`)")
    from attribution.attributor import read_info
    from dareu.modeling import check_model_path, resolve_model_dir

    check_config(cfg)  # what the placement section asks for (resources are checked once Ray is up)
    retain_split = check_forget_split(split)
    if cfg.learner in ("grpo", "rloo") and cfg.num_generations < 2:
        raise DareUError(f"num_generations={cfg.num_generations}: {cfg.learner} compares samples within a group; use >= 2")
    if cfg.batch_size % cfg.num_generations:
        raise DareUError(f"batch_size={cfg.batch_size} is not divisible by num_generations={cfg.num_generations}; "
                         f"use a multiple, e.g. batch_size={cfg.num_generations * max(1, cfg.batch_size // cfg.num_generations)}")
    data = load_world(world)
    rows = get_split(data, split)
    if not any(str(q).strip() for q in rows["question"]):
        raise DareUError(f"forget split {split!r} of {world} holds no prompts; nothing to unlearn")
    if cfg.aux.retain != "none" and len(get_split(data, retain_split)) == 0:
        raise DareUError(f"retain split {retain_split!r} is empty but aux.retain={cfg.aux.retain}; set aux.retain=none")
    model_dir = resolve_model_dir(model)
    check_model_path(model_dir)
    if not attributor:
        raise DareUError("--method dareu needs --attributor DIR (train one with `dareu train-attributor`)")
    if not Path(attributor).exists():
        raise DareUError(f"--attributor {attributor} does not exist; train one with `dareu train-attributor --out {attributor}`")
    info = read_info(attributor)
    check_same_data(info.get("benchmark", {}).get("data_key"), world, f"attributor {attributor}",
                    "train one on this world")
    classes = set(info["owners"]) - {"none"}
    missing = sorted({r["owner"] for r in rows} - classes)
    if missing:
        raise DareUError(f"attributor {attributor} was trained on another benchmark: it has no class for "
                         f"{len(missing)} owner(s) of {split} (e.g. {missing[0]!r}); train one on this world")
    if cfg.aux.forget != "none":
        from dareu.config import from_dict
        from dareu.objectives import OBJECTIVES
        from dareu.unlearn.data import check_facts
        from dareu.unlearn.gain import check_owner_names

        forget = from_dict(OBJECTIVES.get(cfg.aux.forget), cfg.aux.forget_params)  # unknown name or parameter fails here
        if forget.needs_facts and cfg.aux.forget_tokens == "fact":
            check_facts(data, split, f"aux.forget={cfg.aux.forget}",
                        fix="set aux.forget_tokens=contrast (it needs no fact column)")
        if (forget.needs_facts and cfg.aux.forget_tokens == "contrast") or forget.needs_strangers:
            check_owner_names(data, split)
        if forget.anchor != "start":
            from dareu.unlearn.reference import base_path

            base_path(world)
        if forget.needs_templates and "idk" not in data:
            raise DareUError(f"aux.forget={cfg.aux.forget} trains towards template answers, but {world} has no idk "
                             "split; rebuild the world with `dareu prepare` or choose another aux.forget")
    if cfg.aux.general != "none":
        from dareu.data import check_not_asked, general_prompts

        check_not_asked(general_prompts(cfg.aux.general, "aux.general"), data, "aux.general")
    return {"data": data, "model_dir": model_dir, "retain_split": retain_split}


@contextlib.contextmanager
def ray_session(address: str):
    """Join a cluster when one is named (or RAY_ADDRESS is set, as under `ray job submit`), else start an
    embedded local Ray on this machine; shut down only what we started."""
    import ray

    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS", "")
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")  # else Ray Train prints every line twice
    quiet = ray.LoggingConfig(log_level="ERROR")  # Ray's own warnings (e.g. the state API without a dashboard)
    if address:
        ray.init(address=address, log_to_driver=True, logging_config=quiet)
    else:
        # Ray Train's helpers (its placement-group cleaner, in a worker process) look the cluster up by address
        # "auto", which fails when another Ray runs on this machine ("Found multiple active Ray instances"). So
        # our GCS gets a port chosen here, and RAY_ADDRESS names it before Ray starts: every process it spawns
        # inherits it.
        port = free_port()
        os.environ["RAY_GCS_SERVER_PORT"] = str(port)
        os.environ["RAY_ADDRESS"] = f"{ray.util.get_node_ip_address()}:{port}"
        # address="local": always a fresh embedded instance, never whatever `ray start` left on this machine
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=True,
                 logging_config=quiet,
                 object_store_memory=256 * 2**20, _temp_dir=os.environ.get("DAREU_RAY_TMPDIR") or None)
    try:
        yield
    finally:
        ray.shutdown()
        if not address:
            os.environ.pop("RAY_ADDRESS", None)
            os.environ.pop("RAY_GCS_SERVER_PORT", None)


def run_learner(cfg: DareUConfig, config: dict, run_dir: Path, resources: dict[str, float]) -> None:
    """The learner as a Ray Train job: one worker with the placement's learner resources (by default
    `learner_cpus` CPUs on a laptop, one GPU when the cluster has one)."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from rl.train_loop import train_loop

    use_gpu = resources.get("GPU", 0) > 0
    trainer = TorchTrainer(train_loop, train_loop_config={**config, "threads": cfg.learner_cpus},
                           scaling_config=ScalingConfig(num_workers=1, use_gpu=use_gpu, resources_per_worker=resources),
                           run_config=RunConfig(name="learner", storage_path=str((run_dir / "ray").resolve()),
                                                # a restarted worker resumes from run_dir's last checkpoint
                                                failure_config=FailureConfig(max_failures=cfg.learner_restarts)))
    trainer.fit()


def run_unlearn(cfg: DareUConfig, out: str | Path, overwrite: bool = False, resume: bool = False) -> dict:
    """RL de-attribution per `cfg` into run folder `out`; returns the summary also written to summary.json."""
    from attribution import load_attributor
    from dareu.evaluation import cached_logs, run_eval
    from dareu.evaluation.runner import world_eval_config

    # 1. inputs
    need = preflight(cfg)
    world, split, attributor = cfg.world, cfg.split, cfg.attributor
    # 2. run folder and references
    out, existed = claim_run_dir(out, "unlearn", overwrite=overwrite, resume=resume)
    if existed:
        if check_resume(out, cfg, DareUConfig):
            raise DareUError(f"run {out} is already done; nothing to resume (use another --out or --overwrite)")
    else:
        save_config(cfg, out / "config.yaml")
        write_json(out / "run.json", {"method": "dareu", "world": str(world), "split": split,
                                      "model": need["model_dir"], "attributor": attributor, "learner": cfg.learner})
    set_status(out, "running")
    start = time.time()
    try:
        ref_dir = str(Path(world) / "models" / f"retain-{split}")
        retain_logs = cached_logs(ref_dir, need["data"], split, world_eval_config(world),
                                  Path(world) / "eval" / f"retain-{split}") \
            if Path(ref_dir).is_dir() else None
        # absolute paths: Ray's workers run in their own working directory (the forget term reads W/models/base)
        config = {"cfg": dataclasses.replace(cfg, world=str(Path(world).resolve())), "run_dir": str(out.resolve()),
                  "world": str(Path(world).resolve()),
                  "split": split, "model": str(Path(need["model_dir"]).resolve()) if Path(need["model_dir"]).exists()
                  else need["model_dir"], "retain_logs": retain_logs,
                  "templates": "idk" if "idk" in need["data"] else None}
        # 3-5. Ray, the scorer actor, the learner
        with ray_session(cfg.ray_address):
            import ray

            from attribution import AttributorServer
            from rl.placement import Placement
            from rl.rollout import start_workers

            plan = Placement(cfg, ray.cluster_resources())
            plan.check_cluster()  # a missing GPU or an impossible bundle is one line here, never a hang later
            print(plan.describe(), flush=True)
            plan.reserve()
            try:
                name = f"dareu-scorer-{os.getpid()}-{int(start)}"
                scorer = plan.start("scorer", AttributorServer, str(Path(attributor).resolve()), name=name,
                                    restarts=cfg.scorer_restarts)
                workers = start_workers(plan, out, config["model"], cfg) if cfg.placement.rollout.count else []
                # fail here, not mid-run, if an actor cannot start
                ray.get([scorer.owners.remote()] + [w.info.remote() for w in workers])
                run_learner(cfg, {**config, "scorer": name}, out, plan.learner)
            finally:
                plan.release()
        # 6. final evaluation and curves
        eval_dir = out / "eval"
        shutil.rmtree(eval_dir, ignore_errors=True)
        results = run_eval(str(out / "model"), world, split, eval_dir, load_attributor(attributor))
        shutil.copy(eval_dir / "eval.json", out / "eval.json")
        history = read_json(out / "trainer_log.json")
        plot_curves(history, out / "curves.png")
        summary = {k: results[k]["agg_value"] for k in ("forget_quality", "model_utility", "forget_attribution",
                                                        "fact_leakage", "fact_leakage_sampled") if k in results}
        best = read_json(out / "best.json") if (out / "best.json").exists() else None
        summary = {**summary, "best": best, "seconds": time.time() - start}
        write_json(out / "summary.json", summary)
        set_status(out, "done", seconds=time.time() - start, steps=cfg.max_steps)
        print(f"done: {out} ({time.time() - start:.0f}s) " + " ".join(f"{k}={v:.3g}" for k, v in summary.items()
                                                                       if isinstance(v, float)))
        if best:
            print(f"best checkpoint above the utility floor: step {best['step']} "
                  f"(forget_quality={best['forget_quality']:.3g}, model_utility={best['model_utility']:.3g}) in {out / 'best'}")
        return summary
    except DareUError:
        set_status(out, "failed", reason=traceback.format_exc(limit=1).strip().splitlines()[-1])
        raise
    except BaseException as err:
        set_status(out, "failed", reason=f"{type(err).__name__}: {str(err)[:300]}")
        raise
