"""The one attribution scorer actor: the RL learner's reward runs it as a Ray actor, tests run it in-process.

    scorer = ray.remote(AttributorServer).options(num_cpus=0).remote(path)
    probs = ray.get(scorer.score.remote(prompts, responses))             # (n, classes), owners + none

Nothing here imports Ray: the same class runs in-process. rl/scorer.py has the client side.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from attribution.attributor import load_attributor


class AttributorServer:
    def __init__(self, path: str, threads: int | None = None, expect_owners: Sequence[str] | None = None):
        from dareu import threads as thread_choice

        # an actor uses the threads it was given (OMP_NUM_THREADS in a Ray worker), not the machine's
        thread_choice.pin(max(1, threads or int(os.environ.get("OMP_NUM_THREADS", "1") or 1)), "the scorer's CPUs")
        self.attributor = load_attributor(path)
        if expect_owners is not None:
            self.attributor.check_owners(expect_owners)

    def owners(self) -> list[str]:
        return list(self.attributor.owners)

    def info(self) -> dict:
        return self.attributor.info()

    def pid(self) -> int:
        return os.getpid()

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        return self.attributor.score(list(prompts), list(responses))

    def owner_probability(self, prompts: Sequence[str], responses: Sequence[str], owners: Sequence[str]) -> np.ndarray:
        return self.attributor.owner_probability(prompts, responses, owners)
