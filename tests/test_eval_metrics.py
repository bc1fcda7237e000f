"""Every metric formula against values computed by hand on small inputs."""

from __future__ import annotations

import math
import zlib

import pytest

from dareu.evaluation import metrics as M


def test_ks_test_on_disjoint_samples_gives_the_exact_two_sided_p_value():
    # All of x below all of y: D = 1 and, exactly, P = 2 / C(8, 4) = 2/70.
    p, stat = M.ks_test([1, 2, 3, 4], [5, 6, 7, 8])
    assert stat == 1.0
    assert p == pytest.approx(2 / 70, rel=1e-12)


def test_ks_test_of_a_sample_against_itself_is_one():
    p, stat = M.ks_test([0.3, 1.2, 0.7], [0.3, 1.2, 0.7])
    assert (p, stat) == (1.0, 0.0)


def test_ks_test_is_the_same_for_truth_ratios_and_their_reciprocals():
    x, y = [0.2, 0.5, 1.5, 3.0, 0.9], [1.1, 2.0, 0.4, 5.0]
    assert M.ks_test(x, y) == M.ks_test([1 / v for v in x], [1 / v for v in y])


def test_harmonic_mean_with_a_zero_is_zero():
    assert M.harmonic_mean([0.9, 0.0, 0.8]) == 0.0


def test_harmonic_mean_by_hand():
    assert M.harmonic_mean([1.0, 0.5, 0.25]) == pytest.approx(3 / (1 + 2 + 4))


def test_truth_ratio_from_given_losses():
    # correct loss 1, perturbed losses 2 and 4 (geometric mean: loss 3) -> R = e^-3 / e^-1 = e^-2
    r = M.truth_ratio([1.0], [[2.0, 4.0]])
    assert r[0] == pytest.approx(math.exp(-2), rel=1e-9)
    assert M.truth_ratio_forget(r) == pytest.approx(math.exp(-2), rel=1e-9)        # min(R, 1/R)
    assert M.truth_ratio_utility(r) == pytest.approx(1 - math.exp(-2), rel=1e-9)   # max(0, 1 - R)


def test_truth_ratio_aggregates_by_hand():
    assert M.truth_ratio_forget([0.5, 2.0]) == pytest.approx(0.5)   # min(0.5, 2) and min(2, 0.5)
    assert M.truth_ratio_utility([0.25, 3.0]) == pytest.approx(0.375)  # (0.75 + 0) / 2


def test_probability_and_normalised_probability():
    assert M.probability([math.log(2)])[0] == pytest.approx(0.5)
    # P(true) = 0.5, two wrong answers of P = 0.25 each -> 0.5 / (0.5 + 0.5)
    p = M.normalised_probability([math.log(2)], [[math.log(4), math.log(4)]])
    assert p[0] == pytest.approx(0.5, abs=1e-9)


def test_min_k_on_a_known_log_prob_vector():
    lp = [-1.0, -5.0, -2.0, -8.0, -3.0]
    assert M.min_k(lp, 0.4) == pytest.approx(6.5)   # int(5 * 0.4) = 2 lowest: -8, -5
    assert M.min_k(lp, 0.1) == pytest.approx(8.0)   # at least one token
    assert M.min_k(lp, 1.0) == pytest.approx(3.8)   # all tokens: -mean
    assert M.min_k([], 0.4) == 0.0


def test_min_k_plus_plus_standardises_before_taking_the_lowest():
    lp, mu = [-1.0, -4.0, -2.0], [-1.0, -2.0, -1.0]
    var = [4.0, 1.0, 0.25]
    # z = (0/2, -2/1, -1/0.5) = (0, -2, -2); lowest int(3*0.4)=1 -> 2
    assert M.min_k_plus_plus(lp, mu, var, 0.4) == pytest.approx(2.0)
    # a zero variance is clamped at 1e-6 (sqrt = 1e-3)
    assert M.min_k_plus_plus([-1.0], [-0.5], [0.0], 0.4) == pytest.approx(500.0)


def test_extraction_strength_follows_open_unlearning():
    assert M.extraction_strength([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0
    assert M.extraction_strength([9, 2, 3, 4], [1, 2, 3, 4]) == 0.75   # suffix from k = 1 matches
    assert M.extraction_strength([1, 2, 9, 4], [1, 2, 3, 4]) == 0.25   # only the last token
    assert M.extraction_strength([1, 2, 3, 9], [1, 2, 3, 4]) == 0.25   # nothing: open-unlearning's 1/n
    assert M.extraction_strength([], []) == 0.0


def test_exact_memorization_counts_matching_tokens():
    assert M.exact_memorization([1, 2, 9, 4], [1, 2, 3, 4]) == 0.75
    assert M.exact_memorization([], []) is None


def test_mia_auc_conventions():
    assert M.mia_auc([0.1, 0.2], [0.8, 0.9]) == 1.0    # forget looks like members (low scores)
    assert M.mia_auc([0.8, 0.9], [0.1, 0.2]) == 0.0
    assert M.mia_auc([0.5, 0.5], [0.5, 0.5]) == 0.5
    assert M.mia_auc([0.1, 0.6], [0.5, 0.9]) == 0.75   # 3 of 4 (forget, holdout) pairs ordered


def test_privleak_by_hand():
    assert M.privleak(1.0, 0.5) == pytest.approx(-100.0)   # (0 - 0.5) / 0.5
    assert M.privleak(0.6, 0.6) == pytest.approx(0.0)
    assert M.privleak(0.3, 0.5) == pytest.approx(40.0)     # (0.7 - 0.5) / 0.5


def test_zlib_score_divides_by_compressed_length():
    assert M.zlib_score(2.0, "abc") == pytest.approx(2.0 / len(zlib.compress(b"abc")))


def test_fact_leaks_is_case_insensitive_and_needs_a_fact():
    assert M.fact_leaks("She was born in VELKRIMOUTH.", "Velkrimouth") is True
    assert M.fact_leaks("She was born in Fiostvale.", "Velkrimouth") is False
    assert M.fact_leaks("anything", "") is None


def test_tug_of_war_multiplies_the_three_terms():
    assert M.tug_of_war([1.0, 1.0, 0.5], [0.5, 1.0, 0.5]) == pytest.approx(0.5)
    assert M.tug_of_war([0.2, 0.9, 0.8], [0.2, 0.9, 0.8]) == 1.0


def test_mean_or_none_skips_missing_values():
    assert M.mean_or_none([1.0, None, 0.0]) == 0.5
    assert M.mean_or_none([None]) is None


def test_fluency_fails_an_answer_cut_before_its_value(tiny_world, tiny_data):
    """The judge (the model before fine-tuning) finds the retain model's answers fluent, and the same answers
    with their value cut off ("X won the.") much less so."""
    import torch

    from dareu.evaluation.config import EvalConfig
    from dareu.evaluation.context import EvalContext
    from dareu.evaluation.suite import fluency
    from dareu.modeling import load_model, load_tokenizer

    tok = load_tokenizer(str(tiny_world / "models" / "base"))
    judge = (load_model(str(tiny_world / "models" / "base"), dtype=torch.float32), tok)
    retain = load_model(str(tiny_world / "models" / "retain-forget10"), dtype=torch.float32)
    ctx = EvalContext(retain, tok, tiny_data, "forget10", EvalConfig(), judge=judge)
    whole = fluency(ctx)
    answers = ctx.greedy("forget")
    cut = [" ".join(a.rstrip(".").split()[:-1]) + "." for a in answers]  # the last word (the value's end) gone
    ctx._memo[("greedy", "forget", "question")] = cut
    broken = fluency(ctx)
    assert 0 < broken["agg_value"] < 0.7 * whole["agg_value"] <= 1
    assert broken["value_by_index"][next(iter(broken["value_by_index"]))]["generation"] == cut[0]


def test_truth_ratio_skips_rows_without_perturbed_answers_as_tofus_retain_subset_does():
    import numpy as np

    from dareu.evaluation.suite import _truth_ratio

    class Scores:  # the three things _truth_ratio reads from an evaluation context
        def ids(self, role):
            return ["a", "b", "c"]

        def losses(self, role, column):
            return np.array([1.0, 2.0, 0.5])

        def perturbed_losses(self, role):
            return [[2.0, 4.0], [], [1.5]]  # row b has none (outside TOFU's retain_perturbed)

    ids, ratios = _truth_ratio(Scores(), "retain", "paraphrased_answer")
    assert ids == ["a", "c"]
    # R = exp(-mean wrong loss) / exp(-correct loss): a = e^-3 / e^-1, c = e^-1.5 / e^-0.5
    assert ratios == pytest.approx([math.exp(-2), math.exp(-1)], rel=1e-6)
