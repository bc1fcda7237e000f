"""The quality table `dareu prepare` prints: is the target/retain gap there for unlearning to mean anything?

Greedy ROUGE-L recall (TOFU's generation metric) per model and split, with the thresholds checked.
"""

from __future__ import annotations

from pathlib import Path

from dareu.generation import SamplingConfig, hf_generate
from dareu.rouge import rouge_l_many

# (model, split, comparison, threshold): the gap every later unlearning figure relies on.
CHECKS = [
    ("target", "forget10", ">=", 0.9), ("target", "retain90", ">=", 0.9),
    ("target", "world_facts", ">=", 0.9), ("target", "real_authors", ">=", 0.9),
    ("retain-forget10", "forget10", "<=", 0.5), ("retain-forget10", "retain90", ">=", 0.9),
]


def evenly(rows, k: int) -> list[dict]:
    """k rows spread evenly over the split (deterministic), or all of them."""
    n = len(rows)
    if n <= k:
        return list(rows)
    return [rows[int(i * n / k)] for i in range(k)]


def greedy_rouge(model, tok, rows: list[dict], max_new_tokens: int = 32) -> float:
    from dareu.modeling import prompt_text

    prompts = [prompt_text(tok, r["question"]) for r in rows]
    outs = hf_generate(model, tok, prompts, SamplingConfig(max_new_tokens=max_new_tokens, batch_size=128))
    scores = rouge_l_many([r["answer"] for r in rows], outs)
    return sum(scores) / len(scores)


def quality_table(world: Path, data, cfg) -> dict:
    import torch

    from dareu.modeling import load_model, load_tokenizer

    rows: dict[str, dict[str, float]] = {}
    splits = ["forget10", "retain90", "world_facts", "real_authors"]
    for name in ["base", "target", *[f"retain-{s}" for s in cfg.retain_splits],
                 *[f"retain-{s}-seed2" for s in cfg.seed2_splits]]:
        path = Path(world) / "models" / name
        model = load_model(str(path), dtype=torch.float32)
        tok = load_tokenizer(str(path))
        rows[name] = {s: greedy_rouge(model, tok, evenly(data[s], cfg.eval_max_qa)) for s in splits}
    checks = []
    for model, split, op, thr in CHECKS:
        if model not in rows:
            continue
        value = rows[model][split]
        ok = value >= thr if op == ">=" else value <= thr
        checks.append({"model": model, "split": split, "rouge": value, "want": f"{op} {thr}", "ok": ok})
    return {"rouge_l_recall": rows, "checks": checks, "all_ok": all(c["ok"] for c in checks)}


def render(table: dict, console) -> None:
    from rich.table import Table

    t = Table(title="prepare: greedy ROUGE-L recall")
    splits = list(next(iter(table["rouge_l_recall"].values())))
    t.add_column("model")
    for s in splits:
        t.add_column(s, justify="right")
    for name, row in table["rouge_l_recall"].items():
        t.add_row(name, *[f"{row[s]:.3f}" for s in splits])
    console.print(t)
    for c in table["checks"]:
        mark = "[green]ok[/green]" if c["ok"] else "[red]FAIL[/red]"
        console.print(f"  {mark} {c['model']} on {c['split']}: {c['rouge']:.3f} (want {c['want']})")
