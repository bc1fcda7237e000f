"""The table `dareu train-attributor` prints: each proxy number against its bar, the baseline beside it."""

from __future__ import annotations

from attribution.proxy import BARS, PROXY_KEYS

LABELS = {
    "heldout_accuracy": "held-out paraphrase accuracy",
    "target_forget": "target's forget answers",
    "retain_forget": "retain model's forget answers",
    "idk": "I-don't-know answers",
    "name_masked": "true answer, name masked",
    "name_swapped": "true answer, name swapped",
    "wrong_fact": "name kept, wrong fact",
}


def _values(section: dict) -> dict[str, float]:
    return {"heldout_accuracy": section["heldout_accuracy"], **section.get("proxy", {})}


def rows(report: dict) -> list[dict]:
    """One row per number: key, label, bar, the main kind's value and ok, the baseline's value."""
    main = _values(report)
    base = _values(report["baseline"]) if "baseline" in report else {}
    out = []
    for key in ("heldout_accuracy", *PROXY_KEYS):
        if key not in main:
            continue
        op, bar = BARS[key]
        ok = report["checks"].get(key, {}).get("ok")
        out.append({"key": key, "label": LABELS[key], "bar": f"{op} {bar}", "value": main[key], "ok": ok,
                    "baseline": base.get(key)})
    return out


def render(report: dict, console) -> None:
    from rich.table import Table

    kind = report["kind"]
    title = "attribution proxy (mean true-owner probability on forget prompts)"
    table = Table(title=title)
    for col in ("number", "bar", kind, "ok"):
        table.add_column(col)
    if "baseline" in report:
        table.add_column("tfidf baseline")
    for r in rows(report):
        cells = [r["label"], r["bar"], f"{r['value']:.3f}", "yes" if r["ok"] else "NO"]
        if "baseline" in report:
            cells.append("-" if r["baseline"] is None else f"{r['baseline']:.3f}")
        table.add_row(*cells)
    console.print(table)
    for section in [report] + ([report["baseline"]] if "baseline" in report else []):
        t, c = section["test"], section["calibration"]
        auroc = "-" if t["auroc_forget_mean"] is None else f"{t['auroc_forget_mean']:.4f}"
        console.print(f"{section['kind']}: test accuracy {t['accuracy']:.3f}  macro-F1 {t['macro_f1']:.3f}  "
                      f"forget AUROC {auroc}  ECE {t['ece']:.3f} (T={c['temperature']:.2f}; "
                      f"val ECE {c['val_ece_uncalibrated']:.3f} -> {c['val_ece']:.3f})  "
                      f"trained in {section['train']['seconds']:.0f}s")
