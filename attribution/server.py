"""A thin scorer to run as a Ray actor (the RL learner's reward) or in-process.

    scorer = ray.remote(AttributorServer).options(num_cpus=1).remote(path, threads=1)
    probs = ray.get(scorer.owner_probability.remote(prompts, responses, owners))

Nothing here imports Ray: the same class runs in-process.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from attribution.attributor import load_attributor


class AttributorServer:
    def __init__(self, path: str, threads: int | None = None, expect_owners: Sequence[str] | None = None):
        import torch

        if threads:
            torch.set_num_threads(threads)  # an actor should use the cores Ray gave it, not the machine's
        self.attributor = load_attributor(path)
        if expect_owners is not None:
            self.attributor.check_owners(expect_owners)

    def owners(self) -> list[str]:
        return list(self.attributor.owners)

    def info(self) -> dict:
        return self.attributor.info()

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        return self.attributor.score(prompts, responses)

    def owner_probability(self, prompts: Sequence[str], responses: Sequence[str], owners: Sequence[str]) -> np.ndarray:
        return self.attributor.owner_probability(prompts, responses, owners)
