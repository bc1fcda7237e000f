"""Classification report of an attributor on a labelled set: accuracy, macro-F1, per-forget-owner
AUROC, ECE and a confusion summary."""

from __future__ import annotations

from collections import Counter

import numpy as np

from attribution.calibration import expected_calibration_error
from attribution.data import NONE, Example


def label_ids(owners: list[str], examples: list[Example]) -> np.ndarray:
    index = {o: i for i, o in enumerate(owners)}
    return np.array([index[e.label] for e in examples], dtype=np.int64)


def auroc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve; None when only one class is present."""
    from sklearn.metrics import roc_auc_score

    if positive.all() or not positive.any():
        return None
    return float(roc_auc_score(positive, scores))


def confusion_summary(owners: list[str], labels: np.ndarray, preds: np.ndarray, top: int = 8) -> dict:
    """Where the errors go: owner->none, none->owner, owner->another owner, and the most frequent pairs."""
    none = owners.index(NONE)
    wrong = labels != preds
    pairs = Counter((owners[t], owners[p]) for t, p in zip(labels[wrong], preds[wrong]))
    return {
        "errors": int(wrong.sum()),
        "owner_to_none": int((wrong & (labels != none) & (preds == none)).sum()),
        "none_to_owner": int((wrong & (labels == none)).sum()),
        "owner_to_other_owner": int((wrong & (labels != none) & (preds != none)).sum()),
        "top_pairs": [{"true": t, "pred": p, "count": c} for (t, p), c in pairs.most_common(top)],
    }


def classification_report(owners: list[str], examples: list[Example], probs: np.ndarray,
                          forget_owners: list[str]) -> dict:
    from sklearn.metrics import f1_score

    labels = label_ids(owners, examples)
    preds = probs.argmax(axis=1)
    by_kind: dict[str, list[bool]] = {}
    for e, ok in zip(examples, labels == preds):
        by_kind.setdefault(e.kind, []).append(bool(ok))
    index = {o: i for i, o in enumerate(owners)}
    aurocs = {o: auroc(probs[:, index[o]], labels == index[o]) for o in forget_owners if o in index}
    valid = [v for v in aurocs.values() if v is not None]
    return {
        "n": len(examples),
        "accuracy": float((labels == preds).mean()) if len(labels) else 0.0,
        "macro_f1": float(f1_score(labels, preds, labels=np.unique(labels), average="macro", zero_division=0))
        if len(labels) else 0.0,
        "ece": expected_calibration_error(probs, labels),
        "accuracy_by_kind": {k: float(np.mean(v)) for k, v in sorted(by_kind.items())},
        "auroc_forget": aurocs,
        "auroc_forget_mean": float(np.mean(valid)) if valid else None,
        "confusion": confusion_summary(owners, labels, preds),
    }
