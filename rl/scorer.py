"""The attribution scorer as a Ray actor, and a client that looks like an in-process attributor.

The actor restarts on failure (`max_restarts`) and its calls are retried (`max_task_retries`), so a
crashed scorer costs a retry, not the run.
"""

from __future__ import annotations

import numpy as np


class ScorerActor:
    """Holds one attributor; `score` returns probabilities over its classes (owners + none)."""

    def __init__(self, path: str):
        import os

        import torch

        from attribution import load_attributor

        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1") or 1)))
        self.attributor = load_attributor(path)
        self.calls = 0

    def owners(self) -> list[str]:
        return list(self.attributor.owners)

    def pid(self) -> int:
        import os

        return os.getpid()

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        self.calls += 1
        return self.attributor.score(prompts, responses)


def start_scorer(path: str, name: str, restarts: int):
    """A named scorer actor; 0 CPUs reserved so it never starves the learner on a 2-core machine."""
    import ray

    actor_cls = ray.remote(ScorerActor)
    return actor_cls.options(name=name, num_cpus=0, max_restarts=restarts, max_task_retries=restarts,
                             lifetime=None).remote(path)


class RemoteAttributor:
    """`score(prompts, responses)` and `owners` over a named scorer actor (same interface as in-process)."""

    def __init__(self, actor_name: str, namespace: str | None = None):
        import ray

        self.actor = ray.get_actor(actor_name, namespace=namespace)
        self.owners = ray.get(self.actor.owners.remote())

    def score(self, prompts, responses) -> np.ndarray:
        import ray

        return ray.get(self.actor.score.remote(list(prompts), list(responses)))

    def owner_probability(self, prompts, responses, owners) -> np.ndarray:
        probs = self.score(prompts, responses)
        index = {o: i for i, o in enumerate(self.owners)}
        return np.array([probs[i, index[o]] if o in index else 0.0 for i, o in enumerate(owners)])
