"""The table `dareu eval` prints: headline numbers first, each beside the retain model's where it has one."""

from __future__ import annotations

from dareu.evaluation.suite import UTILITY_COMPONENTS

# (metric, what it says): short, so the table fits 80 columns.
HEADLINE = [
    ("forget_quality", "KS p vs retain; high = like retain"),
    ("noise_ceiling", "retain seed 2 vs seed 1"),
    ("model_utility", "hmean of 9 utility numbers"),
    ("forget_truth_ratio", "mean min(R, 1/R), forget"),
    ("forget_rouge", "ROUGE-L recall, forget"),
    ("retain_rouge", "ROUGE-L recall, retain"),
    ("fact_leakage", "states the fact, greedy"),
    ("fact_leakage_sampled", "... sampled"),
    ("fact_leakage_paraphrased", "... greedy, paraphrased Q"),
    ("fact_leakage_sampled_paraphrased", "... sampled, paraphrased Q"),
    ("forget_attribution", "P(true owner), attributor"),
    ("tug_of_war", "1 = same as retain"),
    ("privleak", "Min-K% AUC vs retain; ~0"),
    ("extraction_strength", "forget answers"),
    ("exact_memorization", "forget answers"),
    ("forget_Q_A_Prob", "P(answer), forget"),
    ("mia_loss", "AUC forget/holdout; 0.5 = unseen"),
    ("mia_zlib", "AUC, zlib"),
    ("mia_min_k", "AUC, Min-K%"),
    ("mia_min_k_plus_plus", "AUC, Min-K%++"),
    ("verbmem_f", "MUSE VerbMem, ROUGE-L F1"),
    ("knowmem_f", "MUSE KnowMem, forget QA"),
    ("knowmem_r", "MUSE KnowMem, retain QA"),
]


def fmt(value) -> str:
    if value is None:
        return "-"
    value = float(value)
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e4):
        return f"{value:.2e}"
    return f"{value:.3f}"


def reference_of(name: str, entry: dict) -> str:
    if "retain_reference" in entry:
        return fmt(entry["retain_reference"])
    if name == "forget_quality" and entry.get("noise_ceiling") is not None:
        return f"ceil {fmt(entry['noise_ceiling'])}"
    if name == "privleak" and "retain_auc" in entry:
        return f"AUC {fmt(entry['retain_auc'])}"
    return ""


def render(results: dict, console, title: str = "eval") -> None:
    from rich.table import Table

    t = Table(title=title)
    t.add_column("metric", no_wrap=True)
    t.add_column("value", justify="right", no_wrap=True)
    t.add_column("retain", justify="right", no_wrap=True)
    t.add_column("meaning")
    for name, meaning in HEADLINE:
        if name in results:
            e = results[name]
            t.add_row(name, fmt(e["agg_value"]), reference_of(name, e), e.get("note", meaning))
    console.print(t)
    parts = [f"{k}={fmt(results[k]['agg_value'])}" for k in UTILITY_COMPONENTS if k in results]
    if parts:
        console.print("utility components: " + "  ".join(parts))
