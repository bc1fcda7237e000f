"""Figures of a geffect.json: G-effects over steps, a layer x step heat map, and a comparison of runs."""

from __future__ import annotations

import math
from pathlib import Path

RISKS = (("unlearning", "unlearning G-effect (forget risk)\n< 0: forgetting"),
         ("retaining", "retaining G-effect (retain risk)\n< 0: damage"))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_steps(result: dict, path: str | Path) -> None:
    """Two panels (unlearning, retaining): the total G-effect over steps, and each term of the loss dashed."""
    plt = _plt()
    steps = [r["step"] for r in result["steps"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, (key, title) in zip(axes, RISKS):
        ax.plot(steps, [r[key]["total"] for r in result["steps"]], "o-", color="black", label="total")
        terms = result["steps"][0][key]["terms"]
        if len(terms) > 1:
            for term in terms:
                ax.plot(steps, [r[key]["terms"][term] for r in result["steps"]], "--", marker=".", label=term)
        ax.axhline(0, color="grey", lw=0.8)
        symlog(ax, [r[key]["total"] for r in result["steps"]] +
               [v for r in result["steps"] for v in r[key]["terms"].values()])
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    fig.suptitle(f"G-effect of {result['method']} on {result['split']}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _linthresh(values: list[float]) -> float:
    """A power of ten two decades under the largest |value|: the symlog axis's linear band around 0."""
    big = max((abs(v) for v in values), default=1.0) or 1.0
    return 10.0 ** math.floor(math.log10(big / 100))


def symlog(ax, values: list[float]) -> None:
    """Symmetric log y axis with ticks at 0 and ±decades beyond the linear band only (no crowding near 0)."""
    lin = _linthresh(values)
    ax.set_yscale("symlog", linthresh=lin)
    top = max((abs(v) for v in values), default=1.0) or 1.0
    decades = [lin * 10 ** k for k in range(max(1, math.ceil(math.log10(top / lin))) + 1)]
    step = max(1, len(decades) // 4)  # at most ~5 decades labelled per side
    decades = decades[::step]
    lo, hi = min(values, default=0.0), max(values, default=0.0)
    ticks = [-d for d in reversed(decades) if -d >= lo * 10] + [0.0] + [d for d in decades if d <= hi * 10]
    ax.set_yticks(ticks)


def plot_heatmap(result: dict, path: str | Path) -> None:
    """Layer group x step heat maps of the unlearning and retaining G-effects (diverging, symmetric log)."""
    import numpy as np
    from matplotlib.colors import SymLogNorm

    plt = _plt()
    groups = result["measured_groups"]
    steps = [r["step"] for r in result["steps"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.45 * len(groups) + 2.2))
    for ax, (key, title) in zip(axes, RISKS):
        grid = np.array([[r[key]["groups"][g] for r in result["steps"]] for g in groups])
        big = float(np.abs(grid).max()) or 1.0
        image = ax.imshow(grid, aspect="auto", cmap="RdBu",
                          norm=SymLogNorm(linthresh=_linthresh([big]), vmin=-big, vmax=big))
        ax.set_xticks(range(len(steps)), [str(s) for s in steps])
        ax.set_yticks(range(len(groups)), groups)
        ax.set_xlabel("step")
        ax.set_title(title, fontsize=10)
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.suptitle(f"G-effect per layer group: {result['method']} (red < 0)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


RETAIN_TERMS = ("retain", "aux_retain")  # terms that fit retain data: the rest is the forget side


def forget_side(entry: dict, key: str) -> float:
    """The G-effect of the loss without its retain terms (what the forget objective itself does)."""
    terms = entry[key]["terms"]
    return sum(v for t, v in terms.items() if t not in RETAIN_TERMS) if "total" not in terms else entry[key]["total"]


def plot_compare(results: dict[str, dict], path: str | Path, title: str) -> None:
    """Several runs (label -> geffect.json) side by side: retaining G-effect (solid: whole loss; dashed: the
    loss without its retain term), unlearning G-effect, and the forget / retain NLL over steps."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    seen = {"retaining": [], "unlearning": []}
    for label, result in results.items():
        steps = [r["step"] for r in result["steps"]]
        totals = [r["retaining"]["total"] for r in result["steps"]]
        line = axes[0].plot(steps, totals, "o-", label=label)[0]
        color = line.get_color()
        side = [forget_side(r, "retaining") for r in result["steps"]]
        if any(abs(a - b) > 1e-12 * max(1.0, abs(a)) for a, b in zip(side, totals)):
            axes[0].plot(steps, side, "--", color=color, lw=1, label=f"{label} w/o retain term")
        unlearning = [r["unlearning"]["total"] for r in result["steps"]]
        axes[1].plot(steps, unlearning, "o-", color=color, label=label)
        seen["retaining"] += totals + side
        seen["unlearning"] += unlearning
        axes[2].plot(steps, [r["forget_risk"] for r in result["steps"]], "o-", color=color, label=f"{label}: forget")
        axes[2].plot(steps, [r["retain_risk"] for r in result["steps"]], "s:", color=color, label=f"{label}: retain")
    for ax, key in zip(axes[:2], ("retaining", "unlearning")):
        symlog(ax, seen[key])
        ax.axhline(0, color="grey", lw=0.8)
    axes[0].set_title("retaining G-effect (< 0: damage)", fontsize=10)
    axes[1].set_title("unlearning G-effect (< 0: forgetting)", fontsize=10)
    axes[2].set_title("answer NLL: forget (o-), retain (s:)", fontsize=10)
    axes[2].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("step")
    handles, labels = axes[0].get_legend_handles_labels()
    rows = math.ceil(len(labels) / 4)
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.045 * rows + 0.02, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
