"""Curves of a de-attribution run: training metrics every step, evaluation every N steps, best checkpoint.

Forget quality, utility and fact leakage are non-monotonic along a run, so they are measured every
`eval_every` steps; the run keeps its final model and also the best checkpoint (highest forget
quality) whose model utility stays >= `utility_floor` x the starting model's.
"""

from __future__ import annotations

import json
from pathlib import Path

from dareu.runs import write_json


class CurveTracker:
    """Logs metrics to TensorBoard and a JSONL file, runs the periodic fast evaluation, keeps the best model."""

    def __init__(self, run_dir: Path, evaluate, utility_floor: float, eval_every: int):
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = Path(run_dir)
        self.evaluate = evaluate  # model -> {metric: value}
        self.utility_floor = utility_floor
        self.eval_every = eval_every
        self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        self.best_path = self.run_dir / "best.json"
        self.best = json.loads(self.best_path.read_text()) if self.best_path.exists() else None
        self.start_utility = self.best["start_utility"] if self.best else None

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def due(self, step: int, last: bool = False) -> bool:
        return self.eval_every > 0 and (step % self.eval_every == 0 or last)

    def evaluate_now(self, model, tok, step: int) -> dict[str, float]:
        values = {f"eval/{k}": v for k, v in self.evaluate(model).items() if v is not None}
        if self.start_utility is None:
            self.start_utility = values.get("eval/model_utility", 0.0)
        self.log(step, values)
        self._maybe_best(model, tok, step, values)
        return values

    def _maybe_best(self, model, tok, step: int, values: dict[str, float]) -> None:
        fq, mu = values.get("eval/forget_quality"), values.get("eval/model_utility")
        if step == 0 or fq is None or mu is None or mu < self.utility_floor * (self.start_utility or 0.0):
            return
        if self.best is not None and fq <= self.best["forget_quality"]:
            return
        path = self.run_dir / "best"
        model.save_pretrained(str(path))
        tok.save_pretrained(str(path))
        self.best = {"step": step, "forget_quality": fq, "model_utility": mu, "start_utility": self.start_utility,
                     "utility_floor": self.utility_floor, "path": "best"}
        write_json(self.best_path, self.best)


def plot_curves(log_history: list[dict], path: Path) -> None:
    """reward, attribution, KL, retain loss per step; forget quality / utility / fact leakage per evaluation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(key):
        pts = [(e["step"], e[key]) for e in log_history if key in e and e.get(key) is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    panels = [("reward", ["reward", "score"]), ("sampled attribution", ["attribution_sampled"]),
              ("KL to reference", ["kl"]), ("aux losses", ["aux/retain_loss", "aux/forget_loss"]),
              ("forget quality (log)", ["eval/forget_quality"]),
              ("utility / leakage / attribution", ["eval/model_utility", "eval/fact_leakage",
                                                   "eval/fact_leakage_sampled", "eval/forget_attribution"])]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, (title, keys) in zip(axes.flat, panels):
        for key in keys:
            xs, ys = series(key)
            if xs:
                ax.plot(xs, ys, marker="o" if key.startswith("eval/") else None, ms=3, label=key)
        if title.endswith("(log)"):
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("step")
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
