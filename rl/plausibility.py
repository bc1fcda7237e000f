"""The plausibility reward: does a response still read as an answer to its question -- the answer a model
gives about someone it never met?

De-attribution alone is satisfied by any text that carries none of the owner's data, and the policy finds
the cheapest such text: a memorised sentence about something else ("The longest river in Amabaeth is
..."), a repeated token, a bare name. A user wants what a model that never saw the owner says instead: an
answer of the usual form with a value that is nobody's in particular (the retain model's "Veklo Kawyn was
born in Samifiholm"). The frozen reference shows that answer when the owner's name is swapped for a
fabricated stranger's -- Eldan & Russinovich's "generic predictions" ("Who's Harry Potter?", 2023).

So, once before training, the reference answers every forget question greedily with the owner's name
replaced by each of a few strangers' (the name is put back in the answers). The plausibility of a response
is its ROUGE-L recall of the closest of those generic answers: the usual sentence form scores high whatever
value it states, off-topic text, fragments and repetition score low. (A reference log-probability would
not do: its per-token mean rewards any memorised sentence, on topic or not.)
"""

from __future__ import annotations

import numpy as np

from dareu.rouge import rouge_l
from dareu.world_vocab import stranger_names  # noqa: F401  (re-exported: the learner builds its strangers here)


def generic_answers(model, tok, rows: list[dict], strangers: list[str], max_new_tokens: int = 32,
                    batch_size: int = 64) -> dict[str, list[str]]:
    """question -> the model's greedy answers to it asked about each stranger, the owner's name put back.
    Questions that do not name their owner get none: asked unchanged, the model would give the owner's
    own answer, and the term would pay for the very data to forget."""
    from dareu.generation import SamplingConfig, hf_generate
    from dareu.modeling import prompt_text

    asked = [(r["question"], r["owner"], s) for r in rows for s in strangers
             if r.get("owner") and r["owner"] in r["question"]]
    if not asked:
        return {}
    prompts = [prompt_text(tok, q.replace(o, s)) for q, o, s in asked]
    answers = hf_generate(model, tok, prompts, SamplingConfig(max_new_tokens=max_new_tokens, batch_size=batch_size),
                          greedy=True)
    out: dict[str, list[str]] = {}
    for (q, o, s), a in zip(asked, answers):
        out.setdefault(q, []).append(a.replace(s, o))
    return out


class Plausibility:
    """ROUGE-L of each response against its question's generic answers (best of them); 1 for a question
    without any (nothing to compare with, nothing to penalise). `kind`: recall, or f1, which also charges for
    words the generic answer does not have (a made-up word wedged after the name to dodge the attributor)."""

    def __init__(self, answers: dict[str, list[str]], kind: str = "recall"):
        self.answers, self.kind = answers, kind

    def __call__(self, questions: list[str], responses: list[str]) -> np.ndarray:
        return np.array([max((rouge_l(g, y, self.kind) for g in self.answers.get(q, [])), default=1.0)
                         for q, y in zip(questions, responses)])
