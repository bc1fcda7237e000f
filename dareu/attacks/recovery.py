"""Recovery: how much of what an owner's removal took away an attack gives back.

    recovery = (leak(model) - leak(retain)) / (leak(target) - leak(retain)), clipped to [0, 1],

each model attacked the same way. 0: the owner is as gone as if the model had never been trained on them;
1: as known as before unlearning. By construction the retain model scores 0 and the target 1. An owner whose
target leaks no more than the retain model under the attack has nothing to recover (None)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np


def recovery(model: float, retain: float, target: float, min_gap: float = 1e-6) -> float | None:
    gap = target - retain
    if gap < min_gap:
        return None
    return float(np.clip((model - retain) / gap, 0.0, 1.0))


def by_owner(owners: list[str], leaks: list[float | None]) -> dict[str, float]:
    """Mean leak per owner over the rows that have one."""
    acc: dict[str, list[float]] = defaultdict(list)
    for o, v in zip(owners, leaks, strict=True):
        if v is not None:
            acc[o].append(float(v))
    return {o: float(np.mean(v)) for o, v in acc.items()}


def owner_recovery(model: dict[str, float], retain: dict[str, float], target: dict[str, float]) -> dict[str, float | None]:
    return {o: recovery(model[o], retain[o], target[o]) for o in model if o in retain and o in target}

