"""Where should a two-sided forget term pull the owner's answers? Each candidate anchor is scored by the
distribution of its forget truth ratios against the retain model's, the same KS test forget quality uses: an
anchor with a low p-value is one that no amount of training towards it can turn into a never-trained model.

    .venv/bin/python benchmarks/forget_anchor.py --world W [--split forget10] [--out runs/bench/forget_anchor.json]

Candidates, each reading the paraphrased and perturbed forget answers (what forget quality reads):
- `retain seed 2` (the noise ceiling) and `retain, stranger` (the retain model with the owner's name swapped for a
  fabricated one: the swap alone should cost nothing);
- `target, stranger`: the starting model told of a stranger (stranger_kl's base_weight=0);
- `base, stranger`: the model from before the fine-tune on the owners told of a stranger (base_weight=1);
- `mix w`: the two told of a stranger, their next-token log-probabilities mixed (1 − w)·target + w·base
  (stranger_kl's base_weight=w; `--base-weights`);
- `target` and `base` as they are.
Needs the world's base, target, retain-<split> and retain-<split>-seed2 models (`dareu prepare`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch


class Mixed(torch.nn.Module):
    """Two causal LMs read as one causal LM (what `score_answers` takes), their logits mixed as stranger_kl's
    `base_weight` mixes them (`dareu.unlearn.reference.mixed_logits`)."""

    def __init__(self, a, b, w: float):
        super().__init__()
        self.a, self.b, self.w = a, b, w

    def forward(self, input_ids, attention_mask=None):
        from types import SimpleNamespace

        from dareu.unlearn.reference import mixed_logits

        return SimpleNamespace(logits=mixed_logits(self.a(input_ids=input_ids, attention_mask=attention_mask).logits,
                                                   self.b(input_ids=input_ids, attention_mask=attention_mask).logits,
                                                   self.w))


def truth_ratios(model, tok, rows: list[dict], strangers: list[str] | None) -> np.ndarray:
    """Per row, the truth ratio of `model` (perturbed vs paraphrased answer, as dareu eval), the owner's name
    replaced by strangers[i % n] everywhere when `strangers` is given."""
    from dareu.evaluation import metrics as M
    from dareu.evaluation.scoring import score_answers

    correct, wrong = [], []
    for i, r in enumerate(rows):
        name = strangers[i % len(strangers)] if strangers else r["owner"]

        def told(text: str, owner: str = r["owner"], name: str = name) -> str:
            return text.replace(owner, name)

        correct.append((told(r["question"]), told(r["paraphrased_answer"])))
        wrong += [(told(r["question"]), told(p)) for p in r["perturbed_answers"]]
    c = np.array([s.avg_loss for s in score_answers(model, tok, correct)])
    w = np.array([s.avg_loss for s in score_answers(model, tok, wrong)]).reshape(len(rows), -1)
    return M.truth_ratio(c, list(w))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", required=True, help="world folder (dareu prepare)")
    p.add_argument("--split", default="forget10", help="forget split (default: %(default)s)")
    p.add_argument("--strangers", type=int, default=4, help="fabricated names, cycled over the rows")
    p.add_argument("--base-weights", default="0.5,0.8", help="mixtures to score, comma-separated (default: %(default)s)")
    p.add_argument("--out", default="runs/bench/forget_anchor.json", help="JSON to write (default: %(default)s)")
    args = p.parse_args()

    from dareu.data import get_split, load_world
    from dareu.evaluation import metrics as M
    from dareu.modeling import load_model, load_tokenizer
    from dareu.world_vocab import stranger_names

    models = Path(args.world) / "models"
    rows = list(get_split(load_world(args.world), args.split))
    tok = load_tokenizer(str(models / "target"))
    names = stranger_names(args.strangers, {r["owner"] for r in rows}, 0)
    load = {k: load_model(str(models / k)) for k in
            ("base", "target", f"retain-{args.split}", f"retain-{args.split}-seed2")}
    reference = truth_ratios(load[f"retain-{args.split}"], tok, rows, None)
    cases = {"retain seed 2": (f"retain-{args.split}-seed2", None), "retain, stranger": (f"retain-{args.split}", names),
             "target, stranger": ("target", names), "base, stranger": ("base", names),
             "target": ("target", None), "base": ("base", None)}
    for w in [float(x) for x in args.base_weights.split(",") if x]:
        load[f"mix {w:g}"] = Mixed(load["target"], load["base"], w)
        cases[f"mix {w:g}"] = (f"mix {w:g}", names)
    attributes = sorted({r.get("attribute") for r in rows if r.get("attribute")})
    result = {}
    print(f"{'anchor':<18} {'KS p':>9} {'KS stat':>8} {'mean log R':>10} {'sd log R':>8}  (retain: mean log R "
          f"{np.log(reference).mean():+.3f}, sd {np.log(reference).std():.3f})")
    for name, (model, strangers) in cases.items():
        ratios = truth_ratios(load[model], tok, rows, strangers)
        pvalue, stat = M.ks_test(ratios, reference)
        logs = np.log(ratios)
        per_attr = {a: float(np.exp(np.mean([x for x, r in zip(logs, rows) if r.get("attribute") == a])))
                    for a in attributes}
        result[name] = {"ks_pvalue": pvalue, "ks_statistic": stat, "mean_log_ratio": float(logs.mean()),
                        "sd_log_ratio": float(logs.std()), "ratio_by_attribute": per_attr}
        print(f"{name:<18} {pvalue:>9.3g} {stat:>8.3f} {logs.mean():>+10.3f} {logs.std():>8.3f}")
    if attributes:
        ref_attr = {a: float(np.exp(np.mean([x for x, r in zip(np.log(reference), rows) if r["attribute"] == a])))
                    for a in attributes}
        result["retain"] = {"ratio_by_attribute": ref_attr}
        print("\ngeometric-mean truth ratio by attribute (retain model first):")
        print(f"{'attribute':<14} {'retain':>7} " + " ".join(f"{n[:16]:>16}" for n in cases))
        for a in attributes:
            print(f"{a:<14} {ref_attr[a]:>7.2f} " + " ".join(f"{result[n]['ratio_by_attribute'][a]:>16.2f}" for n in cases))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"world": args.world, "split": args.split, "anchors": result}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
