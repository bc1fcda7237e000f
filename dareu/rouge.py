"""ROUGE-L as TOFU and MUSE compute it (rouge_score, stemming on)."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(reference: str, prediction: str, kind: str = "recall") -> float:
    score = _scorer().score(reference, prediction)["rougeL"]
    return {"recall": score.recall, "f1": score.fmeasure, "precision": score.precision}[kind]


def rouge_l_many(references: list[str], predictions: list[str], kind: str = "recall") -> list[float]:
    return [rouge_l(r, p, kind) for r, p in zip(references, predictions, strict=True)]
