"""Which answer tokens to forget, from what a real removal request has: the target and the model before it
was fine-tuned on the owners (the base). No fact column.

The gain of an answer token is log p_target(token) - log p_base(token): how much the fine-tune raised it.
The owner's facts were learned in the fine-tune; the sentence template, and words the question already
gives, were predictable before it. `gain_labels` keeps the tokens whose gain passes a threshold, in the
same layout as the fact labels (`dareu.objectives.FACT_KEY`), so the objectives that forget marked tokens
(fact NPO) run on them unchanged.
"""

from __future__ import annotations

import torch

from dareu.objectives.tokens import IGNORE, token_logprobs
from dareu.sft import QACollator
from dareu.world_vocab import stranger_names


@torch.no_grad()
def token_gains(target, base, items: list[dict], batch_size: int = 32,
                other_items: list[dict] | None = None) -> list[list[float]]:
    """Per item, per position of its `labels`: log p_target - log p_base of the label token (0 off the answer).
    With `other_items` (the same answers after other prompts), `base` scores those instead."""
    return [[a - b for a, b in zip(t, o)] for t, o in
            zip(answer_logprobs(target, items, batch_size), answer_logprobs(base, other_items or items, batch_size))]


@torch.no_grad()
def answer_logprobs(model, items: list[dict], batch_size: int = 32) -> list[list[float]]:
    """Per item, log p(answer token) aligned to the answer's own positions: entry j is the j-th answer token
    (prompts of different lengths line up)."""
    collate = QACollator(pad_id=0)
    out: list[list[float]] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start: start + batch_size]
        batch = collate([{"input_ids": i["input_ids"], "labels": i["labels"]} for i in chunk])
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logp, mask = token_logprobs(logits, batch["labels"])  # position t predicts label t+1
        for row, m in zip(logp, mask):
            out.append(row[m].tolist())
    return out


def stranger_contrast(target, tok, rows: list[dict], strangers: list[str], batch_size: int = 32) -> list[list[float]]:
    """Per row, per answer token: log p_target(token | the owner's QA) - log p_target(token | the same QA told
    of a stranger, the owner's name replaced in question and answer). What the target expects of anyone (the
    template, the grammar) cancels; what it expects of this owner only (the facts) stands out. Tokens of the
    name itself get 0 (they have no counterpart in the stranger's answer), and so does the token right after
    the name: its contrast measures how familiar the name is (after an unknown name the model is unsure the
    name has ended), not the owner's data, and forgetting it teaches the model to trail off after the name
    ("Talthi Ushvel." or "Talthi Ushvel Selthilo's father ...")."""
    from dareu.modeling import encode_qa

    own, other, pairs = [], [], []
    for i, r in enumerate(rows):
        ids, labels = encode_qa(tok, r["question"], r["answer"])
        item2, pair = told_of_stranger(tok, r, strangers[i % len(strangers)])
        own.append({"input_ids": ids, "labels": labels})
        other.append(item2)
        pairs.append(pair)
    mine, theirs = answer_logprobs(target, own, batch_size), answer_logprobs(target, other, batch_size)
    out = []
    for lp, lp2, pair in zip(mine, theirs, pairs):
        row = [0.0] * len(lp)
        for j, j2 in pair.items():
            after_name = j > 0 and j - 1 not in pair
            if j < len(lp) and j2 < len(lp2) and not after_name:
                row[j] = lp[j] - lp2[j2]
        out.append(row)
    return out


def told_of_stranger(tok, row: dict, stranger: str, max_length: int | None = None) -> tuple[dict, dict[int, int]]:
    """The row's QA with its owner's name replaced by `stranger` in question and answer, encoded
    ({"input_ids", "labels"}), and the alignment of their answers: token j of the owner's -> token j2 of the
    stranger's (`align_answers`)."""
    from dareu.modeling import encode_qa

    name = row["owner"]
    answer2 = row["answer"].replace(name, stranger)
    ids2, labels2 = encode_qa(tok, row["question"].replace(name, stranger), answer2, max_length)
    return {"input_ids": ids2, "labels": labels2}, align_answers(tok, row["answer"], answer2, name, stranger)


def align_answers(tok, answer: str, answer2: str, name: str, stranger: str) -> dict[int, int]:
    """Answer token j of `answer` -> token j2 of `answer2` (`answer` with `name` replaced by `stranger`)."""
    spans = tok(answer, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    spans2 = tok(answer2, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return _align(answer, spans, answer2, spans2, name, stranger)


def _align(text: str, spans, text2: str, spans2, name: str, stranger: str) -> dict[int, int]:
    """Answer token j of `text` -> token j2 of `text2` (= `text` with `name` replaced) covering the same
    characters; tokens inside an occurrence of the name, or split differently, have none. The eos after the
    answer (one past the last token) maps to its counterpart."""
    shift, cuts = 0, []  # (start in text, end in text, shift after it) per occurrence of the name
    start = text.find(name)
    while name and start >= 0:
        cuts.append((start, start + len(name), shift + len(stranger) - len(name)))
        shift += len(stranger) - len(name)
        start = text.find(name, start + len(name))
    where2 = {tuple(s): j for j, s in enumerate(spans2)}
    pairs = {}
    for j, (a, b) in enumerate(spans):
        if any(a < e and b > s for s, e, _ in cuts):
            continue
        moved = max([d for s, e, d in cuts if e <= a], default=0)  # d: the shift after that occurrence
        j2 = where2.get((a + moved, b + moved))
        if j2 is not None:
            pairs[j] = j2
    pairs[len(spans)] = len(spans2)  # the eos
    return pairs


def gain_labels(labels: list[int], gains: list[float], threshold: float) -> list[int] | None:
    """`labels` with every answer token whose gain (one per answer token, in order) is at most `threshold`
    masked; None when none is left."""
    out, j = [IGNORE] * len(labels), 0
    for k, lab in enumerate(labels):
        if lab != IGNORE:
            if gains[j] > threshold:
                out[k] = lab
            j += 1
    return out if any(x != IGNORE for x in out) else None


def contrast_labels(target, tok, rows: list[dict], threshold: float = 0.5, strangers: int = 4,
                    seed: int = 0) -> list[list[int] | None]:
    """Per forget row, its answer labels with every token masked whose stranger contrast (the mean over
    `strangers` fabricated names) is at most `threshold`: the tokens the target ties to this owner alone.
    None for an answer where no token passes (it then carries nothing owner-specific to forget)."""
    from dareu.modeling import encode_qa

    names = stranger_names(strangers, {r["owner"] for r in rows}, seed)
    per_name = [stranger_contrast(target, tok, rows, names[i:] + names[:i]) for i in range(len(names))]
    out = []
    for k, r in enumerate(rows):
        _, labels = encode_qa(tok, r["question"], r["answer"])
        mean = [sum(c[k][j] for c in per_name) / len(per_name) for j in range(len(per_name[0][k]))]
        out.append(gain_labels(labels, mean, threshold))
    return out


def check_owner_names(data, split: str) -> None:
    """The contrast swaps each owner's name for a stranger's: refuse (one line) a split with an owner whose QA
    never state their name, where the swap would change nothing (e.g. owners numbered, not named). A row that
    does not name its owner only gets no tokens to forget."""
    from dareu.data import get_split
    from dareu.errors import DareUError

    rows = get_split(data, split)
    named: dict[str, bool] = {}
    for r in rows:
        named[r["owner"]] = named.get(r["owner"], False) or bool(
            r["owner"] and (r["owner"] in r["question"] or r["owner"] in r["answer"]))
    unnamed = [o for o, ok in named.items() if not ok]
    if unnamed:
        raise DareUError(f"aux.forget_tokens=contrast swaps each owner's name for a stranger's, but {len(unnamed)} "
                         f"of {len(named)} owners in {split!r} are never named in their QA ({unnamed[0]!r}); "
                         "name the owners in the data, or set aux.forget=npo")
