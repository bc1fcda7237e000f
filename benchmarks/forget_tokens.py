"""Which answer tokens carry an owner's data, found without a fact column: how well each rule finds them.

A real removal request comes with the owner's QA, the target model and the model before fine-tuning (the
base), never with a marked fact. The gain of a token, log p_target - log p_base, is how much the fine-tune
raised it: the owner's facts were learned there, the sentence template and the words the question already
gives were known before. This script scores every forget answer token of a world by its gain and reports,
for each selection rule, precision and recall against the world's `fact` column (the tokens that state
the fact), which serves here only to check.

    python benchmarks/forget_tokens.py --world W [--split forget10] [--out benchmarks/results/forget_tokens.json]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch

TOKENS_END = re.compile(r"[.!?]|^\s*$")


def tok_text(tok, token_id: int) -> str:
    return tok.decode([token_id])


def question_copies(tok, item: dict, question: str) -> set[int]:
    """Positions of answer tokens whose word also stands in the question (the name, the asked attribute)."""
    words = {w.strip(".,?!").lower() for w in question.split()}
    out = set()
    for k, label in enumerate(item["labels"]):
        if label != -100 and tok.decode([label]).strip(" .,?!").lower() in words:
            out.add(k)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", required=True)
    ap.add_argument("--split", default="forget10")
    ap.add_argument("--out", default="benchmarks/results/forget_tokens.json")
    args = ap.parse_args()

    from dareu.data import get_split, load_world
    from dareu.modeling import load_model, load_tokenizer
    from dareu.objectives import FACT_KEY
    from dareu.unlearn.data import encode_rows
    from dareu.unlearn.gain import stranger_contrast, token_gains

    torch.set_num_threads(1)
    world = Path(args.world)
    data = load_world(world)
    tok = load_tokenizer(str(world / "models" / "target"))
    target = load_model(str(world / "models" / "target"), dtype=torch.float32)
    base = load_model(str(world / "models" / "base"), dtype=torch.float32)
    rows = list(get_split(data, args.split))
    items = encode_rows(tok, rows)
    start = time.time()
    gains = token_gains(target, base, items)
    # the same answers after a question about a stranger (a never-trained owner): what the target expects of
    # anyone, so a high contrast marks what it expects of this owner only
    strangers = sorted({r["owner"] for r in data["holdout"]})
    contrast = stranger_contrast(target, tok, rows, strangers)
    seconds = time.time() - start
    copied = [question_copies(tok, item, r["question"]) for item, r in zip(items, rows)]
    # per token: (gain, is a fact token); answer tokens only
    tokens, contrasts, copies = [], [], []
    for item, gain, con, cop in zip(items, gains, contrast, copied):
        facts = item.get(FACT_KEY)
        answer = [k for k, label in enumerate(item["labels"]) if label != -100]
        for j, k in enumerate(answer):
            tokens.append((gain[j], facts is not None and facts[k] != -100, k, item))
            contrasts.append(con[j])
            copies.append(k in cop)
    n_fact = sum(f for _, f, _, _ in tokens)

    def score(selected: list[bool]) -> dict:
        hit = sum(s and f for s, (_, f, _, _) in zip(selected, tokens))
        chosen = sum(selected)
        return {"precision": hit / max(chosen, 1), "recall": hit / max(n_fact, 1), "share": chosen / len(tokens)}

    rows = []
    for tau in (0.5, 1.0, 2.0, 3.0, 4.0):
        rows.append({"rule": f"gain > {tau}", **score([g > tau for g, *_ in tokens])})
        rows.append({"rule": f"gain > {tau}, not in q", **score([g > tau and not c for (g, *_), c in
                                                                    zip(tokens, copies)])})
        rows.append({"rule": f"contrast > {tau}", **score([c > tau for c in contrasts])})
        rows.append({"rule": f"contrast > {tau}, not in q", **score([c > tau and not q for c, q in
                                                                        zip(contrasts, copies)])})
    # a span: a token the owner's prompt makes likelier than a stranger's (not a question word), and the tokens
    # after it that the fine-tune raised, up to a question word or the end of the sentence
    for tau in (0.5, 1.0, 2.0):
        chosen, prev_item, inside = [], None, False
        for (g, _, k, item), c, q in zip(tokens, contrasts, copies):
            if item is not prev_item:
                prev_item, inside = item, False
            word = TOKENS_END.search(tok_text(tok, item["labels"][k]))
            start = c > tau and not q
            inside = start or (inside and g > tau and not q and not word)
            chosen.append(inside)
        rows.append({"rule": f"span from contrast > {tau}", **score(chosen)})
    by_item: dict[int, list[int]] = {}
    for i, (_, _, _, item) in enumerate(tokens):
        by_item.setdefault(id(item), []).append(i)
    for k in (1, 2, 3):
        chosen = set()
        for idx in by_item.values():
            chosen.update(sorted(idx, key=lambda i: -tokens[i][0])[:k])
        rows.append({"rule": f"top {k} per answer", **score([i in chosen for i in range(len(tokens))])})
    result = {"world": str(world), "split": args.split, "answer_tokens": len(tokens), "fact_tokens": n_fact,
              "mean_gain_fact": sum(g for g, f, *_ in tokens if f) / max(n_fact, 1),
              "mean_gain_other": sum(g for g, f, *_ in tokens if not f) / max(len(tokens) - n_fact, 1),
              "seconds": seconds, "rules": rows}
    print(f"{args.split}: {len(tokens)} answer tokens, {n_fact} state the fact; mean gain fact "
          f"{result['mean_gain_fact']:.2f}, other {result['mean_gain_other']:.2f} nats ({seconds:.1f}s)")
    print(f"{'rule':<22}{'precision':>10}{'recall':>8}{'share':>8}")
    for r in rows:
        print(f"{r['rule']:<22}{r['precision']:>10.3f}{r['recall']:>8.3f}{r['share']:>8.3f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
