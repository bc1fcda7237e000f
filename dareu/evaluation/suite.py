"""Every key of eval.json, registered once: a function of the evaluation context (the model's per-sample
values) or, for `derived` metrics, of other entries plus the retain model's logs.

Each entry has open-unlearning's layout `{"agg_value": float | None, "value_by_index": {id: {...}}}`, with
open-unlearning's per-sample field names (`prob`, `avg_loss`, `score`, `rougeL_recall`, `generation`), so
its tooling reads our logs and ours reads its. Names follow open-unlearning, except where DareU's contract
fixes them: `forget_rouge` / `retain_rouge` are open-unlearning's `forget_Q_A_ROUGE` / `retain_Q_A_ROUGE`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dareu.errors import DareUError
from dareu.evaluation import metrics as M
from dareu.registry import Registry
from dareu.rouge import rouge_l


@dataclass(frozen=True)
class Metric:
    name: str
    compute: Callable
    roles: tuple[str, ...] = ()      # benchmark roles it reads (checked before any work)
    needs: tuple[str, ...] = ()      # entries it is computed from
    derived: bool = False            # computed from entries (+ retain logs), not from the model
    attributor: bool = False         # only when an attributor is given
    facts: bool = False              # needs the benchmark's `fact` column
    judge: bool = False              # only when a judge model (the model before fine-tuning) is given


METRICS: Registry[Metric] = Registry("metric")
ORDER: list[str] = []  # registration order = the order of eval.json and of the table


def metric(name: str, roles=(), needs=(), derived=False, attributor=False, facts=False, judge=False):
    def add(fn):
        METRICS.register(name)(Metric(name, fn, tuple(roles), tuple(needs), derived, attributor, facts, judge))
        ORDER.append(name)
        return fn

    return add


def entry(agg, by_index: dict | None = None, **extra) -> dict:
    agg = None if agg is None or (isinstance(agg, float) and np.isnan(agg)) else float(agg)
    return {"agg_value": agg, "value_by_index": by_index or {}, **extra}


def scores(result: dict, key: str = "score") -> list[float]:
    """A per-sample field of an entry, in index order (e.g. the truth ratios of forget_truth_ratio)."""
    return [v[key] for v in result["value_by_index"].values() if v.get(key) is not None]


# Model utility = harmonic mean of these nine, in TOFU's aggregate_eval_stat.py order (the sum inside the
# harmonic mean is then the same float sum as TOFU's).
UTILITY_COMPONENTS = ("ra_Q_A_ROUGE", "ra_Q_A_Prob_normalised", "ra_Truth_Ratio",
                      "wf_Q_A_ROUGE", "wf_Q_A_Prob_normalised", "wf_Truth_Ratio",
                      "retain_rouge", "retain_Q_A_Prob", "retain_Truth_Ratio")
PREFIX = {"forget": "forget", "retain": "retain", "real_authors": "ra", "world_facts": "wf"}


# -- TOFU: probabilities, truth ratios, ROUGE ----------------------------------------------------------------
def _prob(ctx, role: str, column: str) -> dict:
    losses = ctx.losses(role, column)
    probs = M.probability(losses)
    by = {i: {"prob": float(p), "avg_loss": float(lo)} for i, p, lo in zip(ctx.ids(role), probs, losses)}
    return entry(probs.mean(), by)


def _truth_ratio(ctx, role: str, correct_column: str) -> tuple[list[str], np.ndarray]:
    """Per row that has perturbed answers (TOFU: only its retain_perturbed subset of the retain QA has them)."""
    wrong = ctx.perturbed_losses(role)
    keep = [i for i, w in enumerate(wrong) if w]
    if not keep:
        raise DareUError(f"no {role} QA has perturbed answers; the truth ratio needs them (TOFU's *_perturbed files)")
    ids, correct = ctx.ids(role), ctx.losses(role, correct_column)
    return [ids[i] for i in keep], M.truth_ratio(correct[keep], [wrong[i] for i in keep])


def _rouge(ctx, role: str) -> dict:
    gens = ctx.greedy(role)
    values = [rouge_l(r["answer"], g) for r, g in zip(ctx.rows(role), gens)]
    by = {i: {"rougeL_recall": v, "generation": g} for i, v, g in zip(ctx.ids(role), values, gens)}
    return entry(np.mean(values), by)


@metric("forget_Q_A_Prob", roles=("forget",))
def forget_prob(ctx):
    """Mean length-normalised probability of the forget answers."""
    return _prob(ctx, "forget", "answer")


@metric("forget_Q_A_PARA_Prob", roles=("forget",))
def forget_para_prob(ctx):
    """Mean length-normalised probability of the paraphrased forget answers."""
    return _prob(ctx, "forget", "paraphrased_answer")


@metric("forget_Q_A_PERT_Prob", roles=("forget",))
def forget_pert_prob(ctx):
    """Mean length-normalised probability of the perturbed (wrong) forget answers."""
    ids, losses = ctx.ids("forget"), ctx.perturbed_losses("forget")
    by = {i: {"prob": M.probability(lo).tolist(), "avg_loss": list(lo)} for i, lo in zip(ids, losses)}
    return entry(np.mean([np.mean(M.probability(lo)) for lo in losses]), by)


@metric("forget_truth_ratio", roles=("forget",))
def forget_truth_ratio(ctx):
    """Per-sample truth ratio (perturbed vs paraphrased answer); aggregate `mean min(R, 1/R)`."""
    ids, ratios = _truth_ratio(ctx, "forget", "paraphrased_answer")
    return entry(M.truth_ratio_forget(ratios), {i: {"score": float(r)} for i, r in zip(ids, ratios)})


@metric("forget_rouge", roles=("forget",))
def forget_rouge(ctx):
    """ROUGE-L recall of greedy answers to the forget questions (open-unlearning's forget_Q_A_ROUGE)."""
    return _rouge(ctx, "forget")


@metric("retain_Q_A_Prob", roles=("retain",))
def retain_prob(ctx):
    """Mean length-normalised probability of the retain answers (fixed evenly spread subset)."""
    return _prob(ctx, "retain", "answer")


@metric("retain_rouge", roles=("retain",))
def retain_rouge(ctx):
    """ROUGE-L recall of greedy retain answers (open-unlearning's retain_Q_A_ROUGE)."""
    return _rouge(ctx, "retain")


@metric("retain_Truth_Ratio", roles=("retain",))
def retain_truth_ratio(ctx):
    """Truth ratio on the retain subset (paraphrased vs perturbed, as TOFU); aggregate `mean max(0, 1-R)`."""
    ids, ratios = _truth_ratio(ctx, "retain", "paraphrased_answer")
    return entry(M.truth_ratio_utility(ratios), {i: {"score": float(r)} for i, r in zip(ids, ratios)})


def _knowledge_metrics(role: str) -> None:
    """Real authors and world facts: normalised probability, ROUGE, truth ratio of answer vs perturbed
    (their perturbed answers share the answer's form, as in TOFU's ra/wf sets)."""
    p = PREFIX[role]

    @metric(f"{p}_Q_A_Prob_normalised", roles=(role,))
    def prob_normalised(ctx):
        """Mean `P(a) / (P(a) + sum_j P(a~_j))` over the role's QA."""
        ids, true, wrong = ctx.ids(role), ctx.losses(role, "answer"), ctx.perturbed_losses(role)
        values = [float(M.normalised_probability([t], [w])[0]) for t, w in zip(true, wrong)]
        return entry(np.mean(values), {i: {"prob": v} for i, v in zip(ids, values)})

    @metric(f"{p}_Q_A_ROUGE", roles=(role,))
    def rouge(ctx):
        """ROUGE-L recall of greedy answers."""
        return _rouge(ctx, role)

    @metric(f"{p}_Truth_Ratio", roles=(role,))
    def truth(ctx):
        """Truth ratio of the answer against its perturbations; aggregate `mean max(0, 1-R)`."""
        ids, ratios = _truth_ratio(ctx, role, "answer")
        return entry(M.truth_ratio_utility(ratios), {i: {"score": float(r)} for i, r in zip(ids, ratios)})


_knowledge_metrics("real_authors")
_knowledge_metrics("world_facts")


# -- memorisation and membership inference --------------------------------------------------------------------
def _forget_detail(ctx):
    return ctx.answer_stats("forget", "answer", detail=True)


@metric("extraction_strength", roles=("forget",))
def extraction_strength(ctx):
    """Mean extraction strength of the forget answers under teacher forcing (lower = forgotten)."""
    values = [M.extraction_strength(s.preds, s.labels) for s in _forget_detail(ctx)]
    return entry(np.mean(values), {i: {"score": v} for i, v in zip(ctx.ids("forget"), values)})


@metric("exact_memorization", roles=("forget",))
def exact_memorization(ctx):
    """Mean fraction of forget answer tokens predicted exactly under teacher forcing."""
    values = [M.exact_memorization(s.preds, s.labels) for s in _forget_detail(ctx)]
    return entry(M.mean_or_none(values), {i: {"score": v} for i, v in zip(ctx.ids("forget"), values)})


def _mia(ctx, score: Callable) -> dict:
    """AUC of forget vs holdout answers; value_by_index holds every sample's score and its side."""
    sides = {}
    for role in ("forget", "holdout"):
        stats = ctx.answer_stats(role, "answer", detail=True)
        sides[role] = [score(s, r) for s, r in zip(stats, ctx.rows(role))]
    by = {i: {"score": v, "split": role} for role in sides for i, v in zip(ctx.ids(role), sides[role])}
    return entry(M.mia_auc(sides["forget"], sides["holdout"]), by)


@metric("mia_loss", roles=("forget", "holdout"))
def mia_loss(ctx):
    """Membership AUC (forget vs holdout) of the mean answer loss."""
    return _mia(ctx, lambda s, r: s.avg_loss)


@metric("mia_zlib", roles=("forget", "holdout"))
def mia_zlib(ctx):
    """Membership AUC of the loss over the answer's zlib-compressed length."""
    return _mia(ctx, lambda s, r: M.zlib_score(s.avg_loss, r["answer"]))


@metric("mia_min_k", roles=("forget", "holdout"))
def mia_min_k(ctx):
    """Membership AUC of Min-K% Prob (k = cfg.min_k)."""
    return _mia(ctx, lambda s, r: M.min_k(s.logprobs, ctx.cfg.min_k))


@metric("mia_min_k_plus_plus", roles=("forget", "holdout"))
def mia_min_k_plus_plus(ctx):
    """Membership AUC of Min-K%++ (k = cfg.min_k)."""
    return _mia(ctx, lambda s, r: M.min_k_plus_plus(s.logprobs, s.mu, s.var, ctx.cfg.min_k))


# -- DareU: fact leakage and attribution -----------------------------------------------------------------------
def _leakage(ctx, question: str, sampled: bool) -> dict:
    rows, ids = ctx.rows("forget"), ctx.ids("forget")
    gens = ctx.sampled("forget", question) if sampled else [[g] for g in ctx.greedy("forget", question)]
    by, values = {}, []
    for i, r, outs in zip(ids, rows, gens):
        leaks = [M.fact_leaks(g, r.get("fact", "")) for g in outs]
        value = None if leaks[0] is None else float(np.mean(leaks))
        values.append(value)
        by[i] = {"score": value, "generation": outs if sampled else outs[0]}
    return entry(M.mean_or_none(values), by)


@metric("fact_leakage", roles=("forget",), facts=True)
def fact_leakage(ctx):
    """Fraction of greedy answers to the forget questions that state the QA's fact (no classifier involved)."""
    return _leakage(ctx, "question", sampled=False)


@metric("fact_leakage_sampled", roles=("forget",), facts=True)
def fact_leakage_sampled(ctx):
    """Fraction of sampled answers (cfg.num_samples per question, temperature cfg.temperature) stating the fact."""
    return _leakage(ctx, "question", sampled=True)


@metric("fact_leakage_paraphrased", roles=("forget",), facts=True)
def fact_leakage_paraphrased(ctx):
    """fact_leakage on the paraphrased questions."""
    return _leakage(ctx, "paraphrased_question", sampled=False)


@metric("fact_leakage_sampled_paraphrased", roles=("forget",), facts=True)
def fact_leakage_sampled_paraphrased(ctx):
    """fact_leakage_sampled on the paraphrased questions."""
    return _leakage(ctx, "paraphrased_question", sampled=True)


@metric("forget_attribution", roles=("forget",), attributor=True)
def forget_attribution(ctx):
    """Mean probability the attributor gives the true owner of each greedy forget answer (prompt = question)."""
    rows, gens = ctx.rows("forget"), ctx.greedy("forget")
    probs = np.asarray(ctx.attributor.score([r["question"] for r in rows], gens))
    values = probs[np.arange(len(rows)), ctx.owner_columns]
    by = {i: {"score": float(v), "generation": g} for i, v, g in zip(ctx.ids("forget"), values, gens)}
    return entry(values.mean(), by)


# -- derived: from entries and the retain model's logs --------------------------------------------------------
@metric("fluency", roles=("forget",), judge=True)
def fluency(ctx):
    """Per-token probability (the geometric mean, eos included) of each greedy forget answer under the judge:
    the model before it learned the owners (the world's base model; the pretrained LM on a real benchmark).
    An answer cut short ("Peldra Ilutor won the.") or off-topic text scores low; a well-formed sentence with
    a value that is nobody's in particular scores about as high as the retain model's answers."""
    from dareu.evaluation.scoring import score_answers

    judge, judge_tok = ctx.judge
    rows, gens = ctx.rows("forget"), ctx.greedy("forget")
    stats = score_answers(judge, judge_tok, [(r["question"], g) for r, g in zip(rows, gens)], ctx.cfg.batch_size)
    values = np.exp(-np.array([s.avg_loss for s in stats]))
    by = {i: {"score": float(v), "generation": g} for i, v, g in zip(ctx.ids("forget"), values, gens)}
    return entry(values.mean(), by)


@metric("model_utility", needs=UTILITY_COMPONENTS, derived=True)
def model_utility(results: dict, ref) -> dict:
    """Harmonic mean of the nine utility numbers {Prob., ROUGE-L, Truth Ratio} x {retain, real authors,
    world facts}; one zero makes it 0."""
    parts = {k: results[k]["agg_value"] for k in UTILITY_COMPONENTS}
    if any(v is None for v in parts.values()):
        return entry(None, components=parts, note="a utility component is missing")
    return entry(M.harmonic_mean(list(parts.values())), components=parts)


@metric("forget_quality", needs=("forget_truth_ratio",), derived=True)
def forget_quality(results: dict, ref) -> dict:
    """KS-test p-value of the per-sample forget truth ratios against the retain model's (1.0 = same
    distribution). `noise_ceiling` beside it: the second retain seed's forget quality against the first."""
    if ref.retain is None or "forget_truth_ratio" not in ref.retain:
        return entry(None, note="no retain-model logs; pass retain_logs (dareu eval computes them)")
    p, stat = M.ks_test(scores(results["forget_truth_ratio"]), scores(ref.retain["forget_truth_ratio"]))
    return entry(p, ks_statistic=stat, noise_ceiling=ref.noise_ceiling())


@metric("noise_ceiling", derived=True)
def noise_ceiling(results: dict, ref) -> dict:
    """Forget quality of the second retain seed against the first: the best a method can be told apart from
    retraining at this sample size."""
    return entry(ref.noise_ceiling(), note="retain seed 2 vs retain seed 1")


@metric("privleak", needs=("mia_min_k",), derived=True)
def privleak(results: dict, ref) -> dict:
    """PrivLeak from the Min-K% AUCs of the model and the retain model (open-unlearning falls back to a
    retain AUC of 0.5 without logs; so do we, and say so in `note`)."""
    auc = results["mia_min_k"]["agg_value"]
    if ref.retain is not None and "mia_min_k" in ref.retain:
        return entry(M.privleak(auc, ref.retain["mia_min_k"]["agg_value"]),
                     retain_auc=ref.retain["mia_min_k"]["agg_value"])
    return entry(M.privleak(auc, 0.5), retain_auc=0.5, note="no retain-model logs: retain AUC taken as 0.5")


TOW_TERMS = {"forget": "forget_rouge", "retain": "retain_rouge", "utility": "model_utility"}


@metric("tug_of_war", needs=tuple(TOW_TERMS.values()), derived=True)
def tug_of_war(results: dict, ref) -> dict:
    """Tug-of-War against the retain model over forget ROUGE-L, retain ROUGE-L and model utility."""
    if ref.retain is None or any(k not in ref.retain for k in TOW_TERMS.values()):
        return entry(None, note="no retain-model logs")
    ours = {t: results[k]["agg_value"] for t, k in TOW_TERMS.items()}
    theirs = {t: ref.retain[k]["agg_value"] for t, k in TOW_TERMS.items()}
    terms = {t: 1 - abs(ours[t] - theirs[t]) for t in TOW_TERMS}
    return entry(M.tug_of_war(list(ours.values()), list(theirs.values())), terms=terms)
