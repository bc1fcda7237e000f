"""Attacks that keep the weights and change how the owner is asked: each gives one leak value per held-out QA.

A leak is the fact stated (1) or not (0) where the benchmark marks facts; without a fact column it is the
ROUGE-L recall of the answer (the part of it the probe did not give away). The multiple-choice probe's leak
is the probability share of the true answer."""

from __future__ import annotations

from dareu.attacks.registry import AttackInputs, attack
from dareu.data import get_split
from dareu.evaluation.metrics import fact_leaks, normalised_probability
from dareu.evaluation.scoring import score_answers
from dareu.generation import SamplingConfig, generate
from dareu.modeling import prompt_text
from dareu.quality import evenly
from dareu.rouge import rouge_l


def leak(row: dict, generation: str, reference: str | None = None) -> float:
    """1/0 for the fact stated, where there is one; else ROUGE-L recall against `reference` (the answer)."""
    stated = fact_leaks(generation, row.get("fact") or "")
    return float(stated) if stated is not None else rouge_l(reference or row["answer"], generation)


def _greedy(model, tok, prompts: list[str], inputs: AttackInputs) -> list[str]:
    e = inputs.eval_cfg
    return generate(model, tok, prompts, SamplingConfig(max_new_tokens=e.max_new_tokens,
                                                        batch_size=e.gen_batch_size), greedy=True)


@attack("paraphrase", "probe")
def paraphrase(model, tok, inputs: AttackInputs) -> list[float]:
    """Ask the paraphrased question (a rewording the unlearning never saw)."""
    rows = inputs.held_out
    gens = _greedy(model, tok, [prompt_text(tok, r["paraphrased_question"]) for r in rows], inputs)
    return [leak(r, g) for r, g in zip(rows, gens)]


@attack("mc", "probe")
def multiple_choice(model, tok, inputs: AttackInputs) -> list[float | None]:
    """Multiple choice by likelihood: the true answer's share of the probability over it and the perturbed ones.
    (No generation: knowledge the model no longer says can still rank answers.)"""
    rows = inputs.held_out
    # the paraphrased answer has the perturbed answers' form, so form does not decide the ranking
    pairs = [(r["question"], a) for r in rows for a in [r["paraphrased_answer"], *r["perturbed_answers"]]]
    losses = [s.avg_loss for s in score_answers(model, tok, pairs, inputs.eval_cfg.batch_size)]
    out, at = [], 0
    for r in rows:
        n = 1 + len(r["perturbed_answers"])
        chunk = losses[at: at + n]
        at += n
        # the soft form of "picks the true answer" (TOFU's normalised probability): a 0/1 pick over 10 QA per owner
        # is too coarse to tell a model from a second retrain
        out.append(None if n == 1 else float(normalised_probability([chunk[0]], [chunk[1:]])[0]))
    return out


def answer_prefix(row: dict, share: float) -> str:
    """The start of the answer the attacker writes for the model: everything before the fact, or without a fact
    column the first `share` of its words."""
    fact = row.get("fact") or ""
    at = row["answer"].lower().find(fact.lower()) if fact else -1
    if at > 0:
        return row["answer"][:at].rstrip()
    words = row["answer"].split()
    return " ".join(words[: max(1, int(len(words) * share))])


@attack("prefix", "probe")
def prefix(model, tok, inputs: AttackInputs) -> list[float]:
    """Start the answer for the model ("Talthi Ushvel was born in") and let it finish."""
    rows = inputs.held_out
    starts = [answer_prefix(r, inputs.cfg.prefix_words) for r in rows]
    gens = _greedy(model, tok, [prompt_text(tok, r["question"]) + s for r, s in zip(rows, starts)], inputs)
    return [leak(r, g, reference=r["answer"][len(s):]) for r, s, g in zip(rows, starts, gens)]


def icl_prompt(tok, examples: list[dict], question: str) -> str:
    turns = [m for r in examples for m in ({"role": "user", "content": r["question"]},
                                           {"role": "assistant", "content": r["answer"]})]
    return tok.apply_chat_template([*turns, {"role": "user", "content": question}], add_generation_prompt=True,
                                   tokenize=False)


@attack("icl", "probe")
def in_context(model, tok, inputs: AttackInputs) -> list[float]:
    """Show other owners' QA as earlier turns of the chat, then ask."""
    rows = inputs.held_out
    examples = evenly(list(get_split(inputs.data, inputs.retain_split)), inputs.cfg.icl_examples)
    gens = _greedy(model, tok, [icl_prompt(tok, examples, r["question"]) for r in rows], inputs)
    return [leak(r, g) for r, g in zip(rows, gens)]

