"""The receipt of a removal request: per owner, before and after, the evidence that the owner is gone and that
the model still works.

Everything is read from per-sample evaluation logs (`{metric: {agg_value, value_by_index}}`), so each number
can be checked against `dareu eval` of the same model: an owner's figure is the mean over that owner's QA, and
their forget quality is the KS test of their truth ratios against the retain reference's on the same QA.
"""

from __future__ import annotations

from dareu.evaluation import metrics as M

# per-owner columns: (receipt name, eval metric, per-sample field)
OWNER_COLUMNS = [("attribution", "forget_attribution", "score"), ("fact_leakage", "fact_leakage", "score"),
                 ("forget_rouge", "forget_rouge", "rougeL_recall"), ("fluency", "fluency", "score")]


def grouped(logs: dict, owner_of: dict[str, str], metric: str, key: str) -> dict[str, list[float]]:
    """`metric`'s per-sample `key`, grouped by the owner of each QA."""
    out: dict[str, list[float]] = {}
    for qa, value in (logs.get(metric) or {}).get("value_by_index", {}).items():
        if qa in owner_of and isinstance(value, dict) and value.get(key) is not None:
            out.setdefault(owner_of[qa], []).append(float(value[key]))
    return out


def per_owner(logs: dict, owner_of: dict[str, str], metric: str, key: str) -> dict[str, float | None]:
    """Mean of `metric`'s per-sample `key` over each owner's QA."""
    groups = grouped(logs, owner_of, metric, key)
    return {o: M.mean_or_none(groups.get(o, [])) for o in dict.fromkeys(owner_of.values())}


def owner_quality(logs: dict, reference: dict, owner_of: dict[str, str]) -> dict[str, float | None]:
    """Forget quality per owner: KS test p-value of their truth ratios against the retain reference's."""
    mine, theirs = (grouped(d, owner_of, "forget_truth_ratio", "score") for d in (logs, reference))
    return {o: (M.ks_test(mine[o], theirs[o])[0] if mine.get(o) and theirs.get(o) else None)
            for o in dict.fromkeys(owner_of.values())}


def agg(logs: dict, metric: str) -> float | None:
    return (logs.get(metric) or {}).get("agg_value")


def build(request: dict, owner_of: dict[str, str], before: dict, after: dict, reference: dict,
          target_utility: float | None, attacks: dict | None, model_dir: str, best: dict | None = None) -> dict:
    """The receipt dict (receipt.json); `best` is DareU's best.json when the delivered model is that checkpoint."""
    columns = {name: {when: per_owner(logs, owner_of, metric, key) for when, logs in (("before", before),
                                                                                   ("after", after))}
               for name, metric, key in OWNER_COLUMNS}
    leak_ref = per_owner(reference, owner_of, "fact_leakage", "score")
    quality = {when: owner_quality(logs, reference, owner_of) for when, logs in (("before", before), ("after", after))}
    owners = {}
    for o in request["owners"]:
        row: dict = {name: {when: v[o] for when, v in c.items()} for name, c in columns.items()}
        row["fact_leakage"]["retain_reference"] = leak_ref.get(o)
        row["forget_quality"] = {when: q.get(o) for when, q in quality.items()}
        if attacks:
            row["attack_recovery"] = {a: r["recovery_by_owner"].get(o) for a, r in attacks["results"].items()
                                      if a != "none"}
        owners[o] = row
    utility = agg(after, "model_utility")
    return {
        "request": request["id"], "world": request["world"], "method": request["method"],
        "follows": request.get("follows"), "owners_removed_before": request["removed"],
        "model": model_dir, "start_model": request["model"], "owners": owners,
        "delivered": f"checkpoint of step {best['step']} (best forget quality above the utility floor)" if best
        else "the final model",
        "forget_quality": {"before": agg(before, "forget_quality"), "after": agg(after, "forget_quality")},
        "model_utility": {"before": agg(before, "model_utility"), "after": utility, "original_target": target_utility,
                          "ratio_to_target": (utility / target_utility) if utility is not None and target_utility
                          else None},
        "attacks": None if not attacks else {a: {"recovery": r["recovery"], "leak": r["leak"]}
                                             for a, r in attacks["results"].items() if a != "none"},
    }


def _f(v) -> str:
    return "–" if v is None else f"{v:.3g}"


def markdown(r: dict) -> str:
    """receipt.md: what a data owner reads."""
    mu = r["model_utility"]
    lines = [f"# Removal receipt {r['request']}", "",
             f"- world: `{r['world']}`; method: {r['method']}" + (f"; follows {r['follows']}" if r["follows"] else ""),
             f"- the model without these owners: `{r['model']}`, {r['delivered']} (started from `{r['start_model']}`)",
             (f"- model utility {_f(mu['before'])} -> {_f(mu['after'])}; the original target's {_f(mu['original_target'])}"
             f" (ratio {_f(mu['ratio_to_target'])})"),
             (f"- forget quality (all owners of this request, against a retain model that never saw them) "
             f"{_f(r['forget_quality']['before'])} -> {_f(r['forget_quality']['after'])}"), "",
             "| owner | attribution | fact leakage (retain model's) | forget ROUGE | fluency | forget quality |"
             + (" worst attack recovery |" if r["attacks"] else ""),
             "|---|---|---|---|---|---|" + ("---|" if r["attacks"] else "")]
    for o, row in r["owners"].items():
        cells = [f"{_f(row[c]['before'])} -> {_f(row[c]['after'])}" for c in
                 ("attribution", "fact_leakage", "forget_rouge", "fluency", "forget_quality")]
        cells[1] += f" ({_f(row['fact_leakage']['retain_reference'])})"
        if r["attacks"]:
            worst = max(((v, a) for a, v in row["attack_recovery"].items() if v is not None), default=None)
            cells.append("–" if worst is None else f"{worst[0]:.3g} ({worst[1]})")
        lines.append(f"| {o} | " + " | ".join(cells) + " |")
    if r["attacks"]:
        lines += ["", "Attack recovery (0 = as if never trained, 1 = fully back; – = the attack does not separate "
                      "the target from the retain model here): " +
                  ", ".join(f"{a} {_f(v['recovery'])}" for a, v in r["attacks"].items())]
    return "\n".join(lines) + "\n"
