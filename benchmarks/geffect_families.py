"""G-effects of the objective families on a world: the README figures docs/geffect/<family>.png.

    .venv/bin/python benchmarks/geffect_families.py --world /tmp/w1 --runs /tmp/ge_runs [--attributor A]

Runs `dareu g-effect` (through its API) for each family's members with the same short schedule, then
draws one figure per family comparing their retaining G-effect (and unlearning G-effect, NLLs), an
overview across families (families.png) and NPO's layer x step heat map (npo_layers.png), prints a
table and writes RUNS/summary.json. Existing runs are reused.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

FAMILIES: dict[str, dict[str, tuple[str, list[str]]]] = {
    "ga": {"ga": ("ga", []), "graddiff": ("graddiff", [])},
    "npo": {"npo": ("npo", []), "simnpo": ("simnpo", [])},
    "wga": {"wga": ("wga", []), "tnpo": ("tnpo", []), "wtnpo": ("wtnpo", [])},
    "satimp": {"satimp": ("satimp", []), "simsat": ("simsat", []), "simimp": ("simimp", [])},
    "flat": {"flat (TV)": ("flat", []), "flat (KL)": ("flat", ["divergence=kl"])},
    "dareu": {"dareu": ("dareu", []),
              "dareu: RL terms only": ("dareu", ["aux.forget_coef=0", "aux.retain_coef=0"])},
}
TITLES = {"ga": "GA family", "npo": "NPO family", "wga": "WGA / TNPO / WTNPO (G-effect paper)",
          "satimp": "SatImp family", "flat": "FLAT", "dareu": "DareU's loss (RL surrogate + NPO + retain NLL)"}
SHORT = {"ga": "GA", "npo": "NPO", "wga": "WGA", "satimp": "SatImp", "flat": "FLAT", "dareu": "DareU"}
STEPS = list(range(0, 17, 2))


def slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label).strip("_")


def run_one(world: str, method: str, params: list[str], out: Path, lr: float, attributor: str | None) -> dict:
    import rl.geffect_loss  # noqa: F401  registers the G-effect method `dareu`
    from dareu.geffect.config import GEffectConfig
    from dareu.geffect.run import plan_run, run_geffect

    if (out / "geffect.json").is_file():
        return json.loads((out / "geffect.json").read_text())
    cfg = GEffectConfig(steps=STEPS, learning_rate=lr, batch_size=8, instances=2)
    plan = plan_run(cfg, method, world=world, params=params, attributor=attributor if method == "dareu" else None)
    return run_geffect(plan, out, log=lambda *a: None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", default="/tmp/w1")
    parser.add_argument("--runs", default="/tmp/ge_runs")
    parser.add_argument("--figures", default=str(Path(__file__).resolve().parents[1] / "docs" / "geffect"))
    parser.add_argument("--attributor", default=None, help="attributor folder for DareU's reward (default: the "
                                                           "fact-leakage indicator)")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--families", default=",".join(FAMILIES))
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny models; a second thread only spins on a shared machine
    from dareu.geffect.plots import forget_side, plot_compare, plot_heatmap

    runs, figures = Path(args.runs), Path(args.figures)
    figures.mkdir(parents=True, exist_ok=True)
    summary, mains = {}, {}
    for family in args.families.split(","):
        results = {}
        for label, (method, params) in FAMILIES[family].items():
            start = time.time()
            results[label] = run_one(args.world, method, params, runs / slug(label), args.learning_rate,
                                     args.attributor)
            print(f"{label:24s} {time.time() - start:6.1f}s")
        reward = results[next(iter(results))]["params"].get("reward_source")
        title = TITLES[family] + (f" — reward: {reward}" if reward else "")
        plot_compare(results, figures / f"{family}.png", f"{title}; {Path(args.world).name} forget10, "
                                                         f"AdamW lr {args.learning_rate:g}, batch 8")
        first_label = next(iter(results))
        if family == "npo":  # the README's example of the layer x step heat map
            plot_heatmap(results[first_label], figures / "npo_layers.png")
        mains[f"{SHORT[family]}: {first_label}"] = results[first_label]
        for label, r in results.items():
            first, last = r["steps"][0], r["steps"][-1]
            summary[label] = {"family": family,
                              "retaining_step0": first["retaining"]["total"],
                              "retaining_step0_forget_side": forget_side(first, "retaining"),
                              "unlearning_step0": first["unlearning"]["total"],
                              # scale-free: retain risk moved per unit of forget risk moved, first step
                              "retaining_per_unlearning_step0": first["retaining"]["total"]
                              / max(abs(first["unlearning"]["total"]), 1e-30),
                              "retaining_min": min(s["retaining"]["total"] for s in r["steps"]),
                              "retaining_forget_side_min": min(forget_side(s, "retaining") for s in r["steps"]),
                              "retaining_last": last["retaining"]["total"],
                              "forget_nll_last": last["forget_risk"], "retain_nll_last": last["retain_risk"],
                              "retain_nll_step0": first["retain_risk"], "last_step": last["step"]}
    if len(mains) > 1:
        plot_compare(mains, figures / "families.png", f"One member per family; {Path(args.world).name} forget10, "
                                                      f"AdamW lr {args.learning_rate:g}")
    (runs / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\n{'run':24s} {'e_r step0':>10s} {'e_r(fgt) 0':>10s} {'e_u step0':>10s} {'e_r/|e_u|':>10s} "
          f"{'min e_r':>10s} {'min e_r fgt':>11s} {'fgt NLL':>8s} {'ret NLL':>8s}  (NLL at step {STEPS[-1]})")
    for label, s in summary.items():
        print(f"{label:24s} {s['retaining_step0']:+10.3g} {s['retaining_step0_forget_side']:+10.3g} "
              f"{s['unlearning_step0']:+10.3g} {s['retaining_per_unlearning_step0']:+10.3g} "
              f"{s['retaining_min']:+10.3g} {s['retaining_forget_side_min']:+11.3g} "
              f"{s['forget_nll_last']:8.3f} {s['retain_nll_last']:8.3f}")


if __name__ == "__main__":
    main()
