"""The attacker's half and the held-out half of every forget owner's QA.

Relearning is measured the way Hu et al. (ICLR 2025) measure it: the attacker fine-tunes on some of an
owner's QA and we look at the QA it never saw. Every attack is scored on the held-out half, so all rows of an
attack table are measured on the same questions."""

from __future__ import annotations

from collections import defaultdict


def owner_halves(rows: list[dict]) -> tuple[list[int], list[int]]:
    """(taught, held_out) row indices: each owner's rows alternate between the halves, in data order (an owner
    with one QA keeps it held out)."""
    seen: dict[str, int] = defaultdict(int)
    taught, held_out = [], []
    for i, r in enumerate(rows):
        (taught if seen[r["owner"]] % 2 == 1 else held_out).append(i)
        seen[r["owner"]] += 1
    return taught, held_out


def with_forget_rows(data, split: str, keep: list[int]):
    """The benchmark with the forget split cut down to rows `keep` (the other splits unchanged)."""
    import datasets

    out = dict(data.items())
    out[split] = data[split].select(keep)
    return datasets.DatasetDict(out)
