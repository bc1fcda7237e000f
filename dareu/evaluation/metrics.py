"""Metric formulas over per-sample values: no model, no data loading, each checked by hand in the tests.

Notation (TOFU, open-unlearning `src/evals/metrics/`): for an answer `a` to a question, `L(a)` is the mean
negative log-likelihood of its tokens under teacher forcing (eos included, as `evaluate_probability` does)
and `P(a) = exp(-L(a))` its length-normalised probability. Where papers and open-unlearning disagree,
these functions follow open-unlearning and say so.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from dareu.world import mentions_fact

EPS = 1e-10  # open-unlearning's guard against division by zero


def probability(avg_losses: Sequence[float]) -> np.ndarray:
    """Per-sample length-normalised answer probability `P(a) = exp(-L(a))`."""
    return np.exp(-np.asarray(avg_losses, dtype=float))


def normalised_probability(true_losses: Sequence[float], wrong_losses: Sequence[Sequence[float]]) -> np.ndarray:
    """Per-sample `P(a) / (P(a) + sum_j P(a~_j))`: TOFU's probability for real authors and world facts
    (open-unlearning `probability_w_options`, with its +1e-10 in the denominator)."""
    correct = probability(true_losses)
    wrong = probability(np.asarray(wrong_losses, dtype=float)).sum(axis=-1)
    return correct / (correct + wrong + EPS)


def truth_ratio(correct_losses: Sequence[float], wrong_losses: Sequence[Sequence[float]]) -> np.ndarray:
    """Per-sample truth ratio `R = P~ / P(a^)`, where `P~ = exp(-mean_j L(a~_j))` is the geometric mean of the
    perturbed answers' normalised probabilities and `a^` the paraphrased answer (forget/retain) or the answer
    itself (real authors/world facts). open-unlearning averages the losses first (`aggregate_to_1D`); TOFU's
    original `get_model_utility` used the arithmetic mean of probabilities instead."""
    wrong = np.array([np.mean(np.asarray(w, dtype=float)) for w in wrong_losses])  # rows may differ in count
    return np.exp(-wrong) / (np.exp(-np.asarray(correct_losses, dtype=float)) + EPS)


def truth_ratio_forget(ratios: Sequence[float]) -> float:
    """Forget-set aggregate `mean_i min(R_i, 1/R_i)`: 1 when true and wrong answers are equally likely
    (open-unlearning `closer_to_1_better`)."""
    r = np.asarray(ratios, dtype=float)
    return float(np.mean(np.minimum(r, 1 / (r + EPS))))


def truth_ratio_utility(ratios: Sequence[float]) -> float:
    """Retain / real-author / world-fact aggregate `mean_i max(0, 1 - R_i)`: high when the true answer is
    preferred (open-unlearning `true_better`)."""
    r = np.asarray(ratios, dtype=float)
    return float(np.mean(np.maximum(0, 1 - r)))


def ks_test(model_ratios: Sequence[float], retain_ratios: Sequence[float]) -> tuple[float, float]:
    """Forget quality: (p-value, statistic) of the two-sample KS test between the per-sample forget truth
    ratios of the model and of the retain model (`scipy.stats.ks_2samp`). TOFU's legacy code tests the
    reciprocals `1/R`; the KS test is invariant to that monotone map, so the p-value is the same."""
    from scipy.stats import ks_2samp

    res = ks_2samp(np.asarray(model_ratios, dtype=float), np.asarray(retain_ratios, dtype=float))
    return float(res.pvalue), float(res.statistic)


def harmonic_mean(values: Sequence[float]) -> float:
    """Model utility: harmonic mean of the nine utility numbers (`scipy.stats.hmean`). One zero makes it 0."""
    v = np.asarray(values, dtype=float)
    if np.any(v < 0):
        raise ValueError(f"harmonic mean of negative values {v.tolist()}")
    if np.any(v == 0):
        return 0.0
    from scipy.stats import hmean

    return float(hmean(v))


def exact_memorization(preds: Sequence[int], labels: Sequence[int]) -> float | None:
    """Fraction of answer tokens whose teacher-forced argmax is the label (eos excluded, as open-unlearning's
    `tokenwise_vocab_logprobs` drops it). None for an empty answer."""
    p, y = np.asarray(preds), np.asarray(labels)
    if len(y) == 0:
        return None
    return float((p == y).mean())


def extraction_strength(preds: Sequence[int], labels: Sequence[int]) -> float:
    """`1 - k/n`, k the smallest index from which every teacher-forced argmax matches the labels.

    Follows open-unlearning, including its edge case: when not even the last token matches, its loop ends
    at k = n-1 and ES = 1/n (SatImp's `eval_es.py` gives 0 there). An empty answer scores 0."""
    p, y = list(preds), list(labels)
    n = len(y)
    if n == 0:
        return 0.0
    k = 0
    for k in range(n):
        if p[k:] == y[k:]:
            break
    return 1 - k / n


def min_k(token_logprobs: Sequence[float], k: float = 0.4) -> float:
    """Min-K% Prob membership score: minus the mean of the lowest `max(1, int(n*k))` token log-probs (eos
    excluded). Higher = less likely a member. An empty answer scores 0 (open-unlearning)."""
    lp = np.sort(np.asarray(token_logprobs, dtype=float))
    if lp.size == 0:
        return 0.0
    return float(-np.mean(lp[: max(1, int(len(lp) * k))]))


def min_k_plus_plus(token_logprobs: Sequence[float], mu: Sequence[float], var: Sequence[float],
                    k: float = 0.4) -> float:
    """Min-K%++: each token's log-prob standardised by the mean `mu` and variance `var` of the log-prob under
    the model's own next-token distribution (variance clamped at 1e-6), then Min-K% of those z-scores."""
    lp = np.asarray(token_logprobs, dtype=float)
    if lp.size == 0:
        return 0.0
    z = (lp - np.asarray(mu, dtype=float)) / np.sqrt(np.maximum(np.asarray(var, dtype=float), 1e-6))
    return min_k(z, k)


def zlib_score(avg_loss: float, text: str) -> float:
    """zlib membership score: the answer's mean token loss over its zlib-compressed length in bytes."""
    return float(avg_loss) / max(len(zlib.compress(text.encode("utf-8"))), 1)


def mia_auc(forget_scores: Sequence[float], holdout_scores: Sequence[float]) -> float:
    """ROC AUC of telling forget (label 0) from holdout (label 1) by a score that is higher for non-members
    (open-unlearning's `mia_auc`): 1 when every forget sample looks more like a member than every holdout one,
    0.5 when they look alike."""
    from sklearn.metrics import roc_auc_score

    scores = np.concatenate([np.asarray(forget_scores, float), np.asarray(holdout_scores, float)])
    labels = np.array([0] * len(forget_scores) + [1] * len(holdout_scores))
    return float(roc_auc_score(labels, scores))


def privleak(auc: float, retain_auc: float) -> float:
    """PrivLeak (MUSE) from Min-K% AUCs: `(s - r) / r * 100` with `s = 1 - auc`, `r = 1 - retain_auc`
    (open-unlearning flips both AUCs to MUSE's convention, and adds 1e-10 to the denominator). About 0 is
    ideal; strongly negative = the forget set is still recognisable (under-unlearning)."""
    s, r = 1 - auc, 1 - retain_auc
    return (s - r) / (r + EPS) * 100


def fact_leaks(generation: str, fact: str) -> bool | None:
    """Does a generated answer state the fact? Case-insensitive, whole words ("7" is not in "27");
    None when there is no fact."""
    if not fact:
        return None
    return mentions_fact(generation, fact)


def tug_of_war(model: Sequence[float], retain: Sequence[float]) -> float:
    """Tug-of-War (Zhao et al. 2024): `prod_t (1 - |m_t(unlearned) - m_t(retain)|)` over metrics in [0, 1]
    (here forget ROUGE-L, retain ROUGE-L, model utility). 1 = indistinguishable from the retain model."""
    return float(np.prod([1 - abs(a - b) for a, b in zip(model, retain, strict=True)]))


def mean_or_none(values) -> float | None:
    """Mean of the values that are not None (None when none are left)."""
    kept = [float(v) for v in values if v is not None]
    return float(np.mean(kept)) if kept else None
