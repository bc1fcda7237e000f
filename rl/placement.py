"""Placement as data: which role runs where, with which resources (the `placement` config section).

A run has four roles. Read top to bottom, this is where each one goes:

  learner    a Ray Train worker group (one worker); Ray Train reserves its placement group itself
  rollout    count 0: inside the learner process (HF generate, or vLLM colocated on its GPU: the default);
             count N: N rollout actors (rl/rollout.py), one bundle each, weights pushed after every update
  scorer     one restartable attribution-scorer actor; no bundle when it asks for nothing (0 CPUs, the
             laptop default, so it never starves the learner on a 2-core machine)
  reference  inside the learner (count 0): the frozen copy the KL term needs

A role that is not colocated gets a placement group of its own (one bundle per actor). Colocated roles
share one group whose bundle i holds actor i of each of them, so fractional GPUs land on one device
(OpenRLHF's colocate trick: rollout 0.5 + scorer 0.5 of one GPU).

Nothing is created before `check` has compared the demand with the cluster (verl's
`_check_resource_available`): a missing GPU, a bundle no node can hold, or a strategy the nodes cannot
follow is one clear line naming what is missing, and a group that still does not come up within
`wait_s` is removed and reported, never waited on forever.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Literal

from dareu.config import field
from dareu.errors import DareUError

ROLES = ("learner", "rollout", "scorer", "reference")


@dataclass
class RoleConfig:
    count: int = field(1, help="Actors of this role; 0 = the role runs inside the learner process.")
    num_cpus: float = field(1.0, help="Ray CPUs per actor.")
    num_gpus: float = field(0.0, help="GPUs per actor; a fraction shares one GPU (e.g. 0.5).")
    colocated: bool = field(False, help="Share one placement group with the other colocated roles (bundle i holds "
                                        "actor i of each, so fractional GPUs land on one device); false = a group "
                                        "of its own, one bundle per actor.")


@dataclass
class LearnerRole(RoleConfig):
    count: int = field(1, help="Ray Train workers of the learner (one is supported).")
    num_cpus: float = field(-1.0, help="Ray CPUs of the learner worker; -1 = learner_cpus (none when it has a GPU).")
    num_gpus: float = field(-1.0, help="GPUs of the learner worker; -1 = one when the cluster has a GPU, else none.")
    colocated: bool = field(False, help="Must stay false: Ray Train reserves the learner's placement group itself.")


@dataclass
class RolloutRole(RoleConfig):
    count: int = field(0, help="Rollout actors; 0 = rollouts inside the learner (HF generate, or vLLM colocated on "
                               "its GPU). N > 0 needs learner=ppo: HF generate on CPU, vLLM on a GPU.")


@dataclass
class ScorerRole(RoleConfig):
    count: int = field(1, help="Attribution scorer actors (exactly one).")
    num_cpus: float = field(0.0, help="Ray CPUs of the scorer; 0 so it never starves the learner on a small machine.")


@dataclass
class ReferenceRole(RoleConfig):
    count: int = field(0, help="0 = the reference model runs inside the learner (the only form built).")
    num_cpus: float = field(0.0, help="Ray CPUs of a reference actor (unused while count is 0).")


@dataclass
class PlacementConfig:
    learner: LearnerRole = field(default_factory=LearnerRole, help="The learner: one Ray Train worker.")
    rollout: RolloutRole = field(default_factory=RolloutRole, help="Rollout workers (default: inside the learner).")
    scorer: ScorerRole = field(default_factory=ScorerRole, help="The attribution scorer actor.")
    reference: ReferenceRole = field(default_factory=ReferenceRole, help="The reference model (inside the learner).")
    strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = field(
        "PACK", help="How each placement group spreads its bundles over nodes (Ray's strategies).")
    wait_s: float = field(60.0, help="Seconds to wait for a placement group to be reserved before failing "
                                     "(resources held by other jobs).")
    rollout_restarts: int = field(3, help="Times a rollout actor is restarted after a failure (its call is retried).")


def check_config(cfg) -> None:
    """What a placement section can ask for, checked before Ray starts (one clear line each)."""
    p: PlacementConfig = cfg.placement
    for role in ROLES:
        r = getattr(p, role)
        if r.count < 0 or (role != "learner" and (r.num_cpus < 0 or r.num_gpus < 0)) or r.num_cpus < -1 \
                or r.num_gpus < -1:
            raise DareUError(f"placement.{role}: count, num_cpus and num_gpus must be >= 0 (-1 = auto on the learner)")
    if p.learner.count != 1:
        raise DareUError(f"placement.learner.count={p.learner.count}: one learner worker is supported (data-parallel "
                         "learners are not built yet)")
    if p.learner.colocated:
        raise DareUError("placement.learner.colocated=true cannot be satisfied: the learner is a Ray Train worker "
                         "group that reserves its own placement group; colocate the other roles with each other, or "
                         "give the learner a fractional num_gpus (e.g. 0.5) to share a GPU with them")
    if p.scorer.count != 1:
        raise DareUError(f"placement.scorer.count={p.scorer.count}: the run uses exactly one scorer actor")
    if p.reference.count != 0:
        raise DareUError(f"placement.reference.count={p.reference.count}: a separate reference actor is not built; "
                         "the reference runs inside the learner (count 0)")
    if p.rollout.count and cfg.learner != "ppo":
        raise DareUError(f"placement.rollout.count={p.rollout.count} needs learner=ppo: TRL's {cfg.learner} "
                         "generates inside its trainer (keep rollout.count=0; on a GPU it uses vLLM colocated)")
    if p.rollout.count and cfg.lora:
        raise DareUError("placement.rollout.count > 0 with lora=true is not supported yet; set rollout.count=0")
    if p.rollout.count and cfg.rollout_backend == "vllm" and p.rollout.num_gpus <= 0:
        raise DareUError("rollout_backend=vllm with rollout actors needs placement.rollout.num_gpus > 0")


def _bundle(cpus: float, gpus: float) -> dict[str, float]:
    return {k: v for k, v in (("CPU", cpus), ("GPU", gpus)) if v > 0}


def _fmt(res: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in res.items()) + "}" if res else "{}"


@dataclass
class Pool:
    """One placement group: `bundles[i]` is what actor i of each member role uses."""

    name: str
    roles: list[str]
    bundles: list[dict[str, float]]
    group: Any = None


class Placement:
    """The resolved plan: learner resources, pools, and the actors started in them."""

    def __init__(self, cfg, cluster: dict[str, float]):
        p: PlacementConfig = cfg.placement
        self.cfg, self.strategy, self.wait_s = p, p.strategy, p.wait_s
        gpus = p.learner.num_gpus if p.learner.num_gpus >= 0 else (1.0 if cluster.get("GPU", 0) > 0 else 0.0)
        cpus = p.learner.num_cpus if p.learner.num_cpus >= 0 else (0.0 if gpus else float(cfg.learner_cpus))
        self.learner = _bundle(cpus, gpus)  # what Ray Train reserves per worker
        self.roles = {r: getattr(p, r) for r in ROLES}
        # actor roles that need resources get bundles; the rest (e.g. the 0-CPU scorer) schedule freely
        actors = [r for r in ("rollout", "scorer") if self.roles[r].count and self._needs(r)]
        self.pools: list[Pool] = []
        shared = [r for r in actors if self.roles[r].colocated]
        if shared:
            n = max(self.roles[r].count for r in shared)
            bundles = [_bundle(sum(self.roles[r].num_cpus for r in shared if self.roles[r].count > i),
                               sum(self.roles[r].num_gpus for r in shared if self.roles[r].count > i))
                       for i in range(n)]
            self.pools.append(Pool("colocated", shared, bundles))
        for r in actors:
            if not self.roles[r].colocated:
                role = self.roles[r]
                self.pools.append(Pool(r, [r], [_bundle(role.num_cpus, role.num_gpus)] * role.count))
        self.started: list[Any] = []

    def _needs(self, role: str) -> bool:
        return bool(_bundle(self.roles[role].num_cpus, self.roles[role].num_gpus))

    def pool_of(self, role: str) -> Pool | None:
        return next((pool for pool in self.pools if role in pool.roles), None)

    def describe(self) -> str:
        parts = [f"learner 1x{_fmt(self.learner)} (Ray Train)"]
        for role in ("rollout", "scorer"):
            r = self.roles[role]
            if not r.count:
                parts.append(f"{role} inside the learner")
                continue
            pool = self.pool_of(role)
            where = f"in group '{pool.name}'" if pool else "no bundle"
            parts.append(f"{role} {r.count}x{_fmt(_bundle(r.num_cpus, r.num_gpus))} {where}")
        return "placement: " + ", ".join(parts) + f" [{self.strategy}]"

    # -- 1. does the cluster have it? (before anything is created)
    def check(self, available: dict[str, float], total: dict[str, float], nodes: list[dict[str, float]]) -> None:
        demand: dict[str, list[tuple[str, int, float]]] = {}  # resource -> [(role, actors, each)]
        for key, value in self.learner.items():
            demand.setdefault(key, []).append(("learner", 1, value))
        for pool in self.pools:
            for role in pool.roles:
                r = self.roles[role]
                for key, value in _bundle(r.num_cpus, r.num_gpus).items():
                    demand.setdefault(key, []).append((role, r.count, value))
        for key, parts in demand.items():
            need = sum(n * each for _, n, each in parts)
            have = available.get(key, 0.0)
            if need > have + 1e-9:
                detail = " + ".join(f"{role} {n}x{each:g}" for role, n, each in parts)
                held = f" ({total.get(key, 0.0):g} in total, the rest in use)" if total.get(key, 0.0) > have else ""
                fix = ("add GPU nodes or lower placement.<role>.num_gpus" if key == "GPU" else
                       "start Ray with more CPUs (ray start --num-cpus) or lower placement.<role>.num_cpus")
                raise DareUError(f"placement needs {need:g} {key} ({detail}) but the cluster has {have:g} {key} "
                                 f"available{held}; {fix}")
        largest = {key: max((n.get(key, 0.0) for n in nodes), default=0.0) for key in ("CPU", "GPU")}
        for name, bundles in [("learner", [self.learner])] + [(p.name, p.bundles) for p in self.pools]:
            for bundle in bundles:
                if not any(all(n.get(k, 0.0) >= v - 1e-9 for k, v in bundle.items()) for n in nodes):
                    raise DareUError(f"placement cannot be satisfied: a {name} bundle {_fmt(bundle)} must fit on one "
                                     f"node but no node has that much (largest: {_fmt(largest)}); use smaller bundles "
                                     "(fewer GPUs per actor, more actors)")
        for pool in self.pools:
            if self.strategy == "STRICT_SPREAD" and len(pool.bundles) > len(nodes):
                raise DareUError(f"placement cannot be satisfied: strategy STRICT_SPREAD puts each of the "
                                 f"{len(pool.bundles)} {pool.name} bundles on a different node but the cluster has "
                                 f"{len(nodes)} node(s); use PACK or SPREAD, or add nodes")
            if self.strategy == "STRICT_PACK":
                whole = {k: sum(b.get(k, 0.0) for b in pool.bundles) for k in ("CPU", "GPU")}
                if not any(all(n.get(k, 0.0) >= v - 1e-9 for k, v in whole.items()) for n in nodes):
                    raise DareUError(f"placement cannot be satisfied: strategy STRICT_PACK puts all {pool.name} "
                                     f"bundles ({_fmt(whole)}) on one node but no node has that much (largest: "
                                     f"{_fmt(largest)}); use PACK")

    def check_cluster(self) -> None:
        """`check` against the live cluster (Ray must be initialised)."""
        import ray

        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        self.check(ray.available_resources(), ray.cluster_resources(), nodes)

    # -- 2. reserve the groups (bounded wait)
    def reserve(self) -> None:
        import ray
        from ray.util.placement_group import placement_group, remove_placement_group

        for pool in self.pools:
            pool.group = placement_group(pool.bundles, strategy=self.strategy, name=f"dareu-{pool.name}")
            if not pool.group.wait(timeout_seconds=self.wait_s):
                remove_placement_group(pool.group)
                pool.group = None
                self.release()
                raise DareUError(f"placement group '{pool.name}' ({len(pool.bundles)}x{_fmt(pool.bundles[0])}) was "
                                 f"not reserved within {self.wait_s:g}s; available now: "
                                 f"{_fmt(_bundle(ray.available_resources().get('CPU', 0), ray.available_resources().get('GPU', 0)))}"
                                 "; other jobs may hold them (ray status), or raise placement.wait_s")

    # -- 3. pin actors to bundles
    def options(self, role: str, index: int = 0) -> dict[str, Any]:
        """Ray actor options for actor `index` of `role`: its resources, and its bundle when it has one."""
        r = self.roles[role]
        opts: dict[str, Any] = {"num_cpus": r.num_cpus, "num_gpus": r.num_gpus}
        pool = self.pool_of(role)
        if pool is not None and pool.group is not None:
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                pool.group, placement_group_bundle_index=index, placement_group_capture_child_tasks=True)
        return opts

    def start(self, role: str, cls, *args, index: int = 0, name: str | None = None, restarts: int = 0):
        """Start actor `index` of `role`, restartable `restarts` times (its calls retried as often)."""
        import ray

        handle = ray.remote(cls).options(name=name, max_restarts=restarts, max_task_retries=restarts,
                                         **self.options(role, index)).remote(*args)
        self.started.append(handle)
        return handle

    def release(self) -> None:
        """Stop the actors started here and give the groups back (a job's groups also go when it ends)."""
        import ray
        from ray.util.placement_group import remove_placement_group

        for handle in self.started:
            with contextlib.suppress(Exception):  # already gone
                ray.kill(handle, no_restart=True)
        self.started.clear()
        for pool in self.pools:
            if pool.group is not None:
                remove_placement_group(pool.group)
                pool.group = None
