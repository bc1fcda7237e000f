"""The client of the attribution scorer actor (attribution.AttributorServer), shaped like an in-process
attributor: `score(prompts, responses)` and `owners`.

The launcher starts the actor with restarts (`max_restarts`) and retried calls (`max_task_retries`), so a
crashed scorer costs a retry, not the run.
"""

from __future__ import annotations

import numpy as np


class RemoteAttributor:
    """`score(prompts, responses)` and `owners` over a named scorer actor."""

    def __init__(self, actor_name: str, namespace: str | None = None):
        import ray

        self.actor = ray.get_actor(actor_name, namespace=namespace)
        self.owners = ray.get(self.actor.owners.remote())

    def score(self, prompts, responses) -> np.ndarray:
        import ray

        return ray.get(self.actor.score.remote(list(prompts), list(responses)))
