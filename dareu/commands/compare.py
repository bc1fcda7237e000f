"""`dareu compare --world W --split forget10 --methods dareu,ga,npo,... --attributor A --out C`: run (or collect)
several methods, evaluate them all the same way, write one report.

Every method is evaluated against the same retain model, split and attributor; the target, the retain
model and the second retain seed are rows of the table too (the last is the forget-quality ceiling).
Existing run folders evaluated against another retain model or split are refused, not mixed in.
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

from dareu.commands.common import console, method_config, train
from dareu.data import check_forget_split, check_same_data, load_world
from dareu.errors import DareUError
from dareu.runs import claim_run_dir, get_status, read_json, write_json

COLUMNS = ["forget_quality", "model_utility", "forget_attribution", "fluency", "fact_leakage", "fact_leakage_sampled",
           "forget_rouge", "retain_rouge", "tug_of_war", "privleak", "wall_seconds"]
# how "best" reads per column: higher, lower, or closest to zero
BEST = {"forget_quality": "max", "model_utility": "max", "forget_attribution": "min", "fluency": "max",
        "fact_leakage": "min",
        "fact_leakage_sampled": "min", "forget_rouge": "min", "retain_rouge": "max", "tug_of_war": "max",
        "privleak": "zero", "wall_seconds": "min"}
REFERENCES = {"target": "target", "retain": "retain-{split}", "retain_seed2": "retain-{split}-seed2"}


def row_from_eval(results: dict, seconds: float | None) -> dict:
    row = {k: (results[k]["agg_value"] if isinstance(results.get(k), dict) else None) for k in COLUMNS[:-1]}
    row["wall_seconds"] = seconds
    return row


def check_same_reference(meta: dict, split: str, retain: str, where: str, world: str | None = None) -> None:
    """A run evaluated against another retain model, split or build of the data cannot share a table with the
    others."""

    check_same_data(meta.get("data_key"), world, where, "re-evaluate it on this world")
    if meta.get("split") != split:
        raise DareUError(f"{where} was evaluated on split {meta.get('split')!r}, this comparison is on {split!r}; "
                         "re-evaluate it or compare runs of one split")
    if meta.get("retain") and Path(meta["retain"]).resolve() != Path(retain).resolve():
        raise DareUError(f"{where} was evaluated against retain model {meta['retain']}, this comparison uses "
                         f"{retain}; re-evaluate it against the same retain model")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--world", required=True, help="world folder (from `dareu prepare`)")
    p.add_argument("--split", default="forget10", help="forget split (default: %(default)s)")
    p.add_argument("--methods", default="dareu,ga,graddiff,npo,simnpo,flat,satimp",
                   help="comma-separated methods to run or collect; METHOD@N is another row of METHOD run with "
                        "seed=N, e.g. dareu,dareu@1,dareu@2 (default: %(default)s)")
    p.add_argument("--attributor", default=None, help="attribution model: DareU's reward and the forget_attribution column")
    p.add_argument("--attacks", default=None,
                   help="also attack every row (`all`, or comma-separated names as `dareu attack --attacks` takes) and "
                        "add its recovery per attack; attack settings as attack:key=value, e.g. "
                        "attack:relearn.steps=40")
    p.add_argument("--run", action="append", default=[], metavar="METHOD=DIR",
                   help="use an existing run folder for METHOD instead of training it (repeatable)")
    p.add_argument("--out", required=True, help="comparison folder: report.json, report.md, pareto.png, attribution.png")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing comparison folder (collected --run folders are only read, never written)")
    p.add_argument("overrides", nargs="*", metavar="METHOD:key=value",
                   help="per-method overrides, e.g. npo:train.max_steps=50 dareu:max_steps=100")


def run(args: argparse.Namespace) -> int:
    runs = {}
    for item in args.run:
        if "=" not in item:
            raise DareUError(f"--run {item!r} is not METHOD=DIR")
        method, path = item.split("=", 1)
        runs[method] = path
    overrides: dict[str, list[str]] = {}
    for item in args.overrides:
        if ":" not in item.split("=", 1)[0]:
            raise DareUError(f"override {item!r} must name its method, e.g. npo:train.max_steps=50")
        method, kv = item.split(":", 1)
        overrides.setdefault(method, []).append(kv)
    methods = [m for m in args.methods.split(",") if m]
    out = console()
    attacks = None
    if args.attacks:
        from dareu.attacks import AttackConfig
        from dareu.config import load_config

        names = [] if args.attacks == "all" else [f"attacks=[{args.attacks}]"]
        attacks = load_config(AttackConfig, None, [*names, *overrides.pop("attack", [])])
    compare(args.world, args.split, methods, args.out, args.attributor, runs, overrides, console=out,
            overwrite=args.overwrite, attacks=attacks)
    out.print((Path(args.out) / "report.md").read_text())
    return 0


def method_seed(row: str) -> tuple[str, list[str]]:
    """A row of the table -> (method, its seed override): `npo` -> ("npo", []), `dareu@2` -> ("dareu", ["seed=2"])."""
    method, _, seed = row.partition("@")
    if seed and not seed.isdigit():
        raise DareUError(f"--methods {row!r}: after @ comes a seed, a whole number (e.g. {method}@1)")
    return method, [f"seed={seed}"] if seed else []


def run_method(row: str, world: str, split: str, out: Path, attributor: str | None, overrides: list[str]) -> float:
    """Train one row (a method, or METHOD@SEED) into `out` (resuming a killed run); returns its wall seconds."""
    start = time.time()
    method, seed = method_seed(row)
    overrides = [*overrides, *seed]
    resume = out.is_dir() and any(out.iterdir())
    flags = {"world": world, "split": split}  # DareU's empty model is the world's target too
    flags |= {"attributor": attributor or ""} if method == "dareu" else {"model": str(Path(world) / "models" / "target")}
    train(method_config(method, overrides, None, flags), out, resume=resume)
    return time.time() - start


def check_collected(runs: dict[str, str], methods: list[str], split: str, retain: str, world: str) -> None:
    """Every --run names a compared method and a finished run folder (checked before any evaluation)."""
    for name, path in runs.items():
        if name not in methods:
            raise DareUError(f"--run {name}={path} names a method that is not in --methods ({','.join(methods)}); "
                             f"add {name} to --methods or drop the --run")
        if not Path(path).is_dir():
            raise DareUError(f"--run {name}={path}: {path} does not exist; give a finished run folder")
        state = get_status(path)["state"]
        if state != "done":
            raise DareUError(f"--run {name}={path} is not a finished run (status {state}); resume or re-run it")
        if not (Path(path) / "model").is_dir():
            raise DareUError(f"--run {name}={path} holds no model/ folder; give the folder `dareu unlearn --out` wrote")
        meta_path = Path(path) / "eval" / "eval_meta.json"
        if meta_path.is_file():
            check_same_reference(read_json(meta_path), split, retain, f"run {path}", world)


def compare(world: str, split: str, methods: list[str], out: str | Path, attributor: str | None = None,
            runs: dict[str, str] | None = None, method_overrides: dict[str, list[str]] | None = None,
            console=None, overwrite: bool = False, kind: str = "compare", attacks=None) -> dict:
    """Run (or collect) `methods` and evaluate them alike into `out` (a compare folder; `kind="demo"` when the
    demo has claimed it). Collected runs (`runs`) are only read: their evaluation goes under `out/collected/`.
    `attacks` (an AttackConfig) also attacks every method and the second retain seed, and adds the recovery
    per attack (`dareu attack`'s number) to each row."""
    from dareu.objectives import OBJECTIVES

    say = console.print if console is not None else print
    out = Path(out)
    runs = dict(runs or {})
    method_overrides = method_overrides or {}
    # 1. check everything first
    check_forget_split(split)
    load_world(world)
    retain = str(Path(world) / "models" / f"retain-{split}")
    if not Path(retain).is_dir():
        raise DareUError(f"{world} has no retain model for {split}; build it with `dareu prepare`")
    for row in methods:
        method, _ = method_seed(row)
        if method != "dareu" and row not in runs:
            OBJECTIVES.get(method)  # unknown names fail here, listing the registered ones
    if any(method_seed(m)[0] == "dareu" and m not in runs for m in methods) and not attributor:
        raise DareUError("comparing dareu needs --attributor DIR (train one with `dareu train-attributor`)")
    check_collected(runs, methods, split, retain, world)
    if attributor:
        _loaded(attributor)  # a missing or broken attributor fails here, before any evaluation
    attacker = None
    if attacks is not None:
        from dareu.attacks.run import Attacker

        attacker = Attacker(world, split, attacks, _loaded(attributor) if attributor else None, say=say)
    out, _ = claim_run_dir(out, kind, overwrite=overwrite, reuse=True)

    # 2. reference rows, then each method: run (or collect), evaluate (cached in the run folder)
    rows: dict[str, dict] = {}
    for name, model in REFERENCES.items():
        model_dir = Path(world) / "models" / model.format(split=split)
        if not model_dir.is_dir():
            continue
        rows[name] = _evaluated(str(model_dir), world, split, out / "references" / name, attributor, retain, None, say)
    for method in methods:
        run_dir = Path(runs.get(method, out / "runs" / method))
        seconds = None
        if method not in runs and get_status(run_dir)["state"] != "done":
            say(f"[compare] running {method} -> {run_dir}")
            seconds = run_method(method, world, split, run_dir, attributor,
                                 method_overrides.get(method_seed(method)[0], []))
            write_json(run_dir / "wall_seconds.json", {"seconds": seconds})
        elif (run_dir / "wall_seconds.json").is_file():
            seconds = read_json(run_dir / "wall_seconds.json")["seconds"]
        if get_status(run_dir)["state"] != "done":
            raise DareUError(f"run {run_dir} is not done (status {get_status(run_dir)['state']}); resume or re-run it")
        eval_dir = out / "collected" / method / "eval" if method in runs else run_dir / "eval"
        rows[method] = _evaluated(str(run_dir / "model"), world, split, eval_dir, attributor, retain, seconds, say,
                                  cached=[run_dir / "eval"] if method in runs else [])
    recovery = {}
    if attacker is not None:
        for name in [*methods, "retain_seed2"]:
            model_dir = (Path(world) / "models" / REFERENCES[name].format(split=split) if name in REFERENCES
                         else Path(runs.get(name, out / "runs" / name)) / "model")
            if model_dir.is_dir():
                folder = (out / "references" / name if name in REFERENCES else
                          out / "collected" / name if name in runs else model_dir.parent) / "attack"
                recovery[name] = {a: r["recovery"] for a, r in
                                  attacker.summary(str(model_dir), folder)["results"].items()}
    report = {"world": str(world), "split": split, "retain_model": retain, "attributor": attributor,
              "methods": [m for m in methods], "rows": rows, "pareto_front": pareto_front(rows, methods),
              **({"recovery": recovery, "attacks": attacker.names} if attacker is not None else {})}
    write_json(out / "report.json", report)
    (out / "report.md").write_text(markdown_table(rows, methods) +
                                   (recovery_table(rows, recovery, methods) if recovery else ""))
    plot(rows, methods, out)
    if recovery:
        plot_recovery(rows, recovery, methods, out)
    return report


def _evaluated(model_dir: str, world: str, split: str, eval_dir: Path, attributor, retain: str, seconds, say,
               cached: list[Path] = ()) -> dict:
    """The eval.json in `eval_dir` (or in a `cached` folder of a collected run, read only) when it was made against
    the same references, else a fresh evaluation into `eval_dir`."""
    from dareu.evaluation import run_eval

    for folder in [*cached, eval_dir]:
        meta_path = folder / "eval_meta.json"
        if meta_path.is_file():
            meta = read_json(meta_path)
            check_same_reference(meta, split, retain, str(folder), world)
            if meta.get("attributor") == attributor and meta.get("model") == model_dir and "judge" in meta:
                return row_from_eval(read_json(folder / "eval.json"), seconds)
    say(f"[compare] evaluating {model_dir}")
    results = run_eval(model_dir, world, split, eval_dir, _loaded(attributor) if attributor else None,
                       overwrite=eval_dir.exists())
    return row_from_eval(results, seconds)


@functools.lru_cache(maxsize=2)
def _loaded(path: str):
    """The attribution model, loaded once for every row of the table."""
    from attribution import load_attributor

    return load_attributor(path)


def pareto_front(rows: dict[str, dict], methods: list[str]) -> list[str]:
    """Methods no other method beats on both forget quality and model utility."""
    pts = {m: (rows[m]["forget_quality"] or 0.0, rows[m]["model_utility"] or 0.0) for m in methods if m in rows}
    return [m for m, (fq, mu) in pts.items()
            if not any(o != m and ofq >= fq and omu >= mu and (ofq > fq or omu > mu) for o, (ofq, omu) in pts.items())]


def _best(rows: dict[str, dict], methods: list[str], col: str):
    vals = [rows[m][col] for m in methods if m in rows and rows[m][col] is not None]
    if not vals:
        return None
    rule = BEST[col]
    return max(vals) if rule == "max" else min(vals) if rule == "min" else min(vals, key=abs)


def _fmt(col: str, v) -> str:
    if v is None:
        return "–"
    if col == "forget_quality":
        return f"{v:.2e}" if v < 0.01 else f"{v:.3f}"
    if col in ("privleak", "wall_seconds"):
        return f"{v:.1f}"
    return f"{v:.3f}"


def markdown_table(rows: dict[str, dict], methods: list[str]) -> str:
    """Methods first (best value per column in bold), then the reference rows in italics."""
    lines = ["| method | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    best = {c: _best(rows, methods, c) for c in COLUMNS}
    for m in methods:
        if m in rows:
            cells = [f"**{_fmt(c, rows[m][c])}**" if rows[m][c] is not None and rows[m][c] == best[c]
                     else _fmt(c, rows[m][c]) for c in COLUMNS]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    for ref in REFERENCES:
        if ref in rows:
            lines.append(f"| _{ref}_ | " + " | ".join(_fmt(c, rows[ref][c]) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n\nBold: best per column among methods (forget quality, utility, retain ROUGE and " \
                              "Tug-of-War higher; attribution, leakage, forget ROUGE and time lower; PrivLeak " \
                              "closest to 0). Italic rows are references; retain_seed2's forget quality is the " \
                              "noise ceiling.\n"


def worst_recovery(per_attack: dict[str, float | None]) -> float | None:
    """The highest recovery over the attacks that measured something (None when none did)."""
    return max((v for v in per_attack.values() if v is not None), default=None)


def recovery_table(rows: dict[str, dict], recovery: dict[str, dict], methods: list[str]) -> str:
    """Recovery per attack (0 = as if never trained, 1 = fully back), beside forget quality and utility."""
    attacks = list(next(iter(recovery.values())))
    lines = ["", "| method | forget_quality | model_utility | " + " | ".join(attacks) + " | worst |",
             "|---" * (len(attacks) + 4) + "|"]
    for m in [*methods, "retain_seed2"]:
        if m in recovery:
            worst = worst_recovery(recovery[m])
            name = f"_{m}_" if m not in methods else m
            lines.append(f"| {name} | {_fmt('forget_quality', rows[m]['forget_quality'])} | "
                         f"{_fmt('model_utility', rows[m]['model_utility'])} | "
                         + " | ".join(_fmt("recovery", recovery[m][a]) for a in attacks) + f" | {_fmt('recovery', worst)} |")
    return "\n".join(lines) + ("\n\nRecovery under each attack (`dareu attack`): (leak - retain's) / (target's - "
                               "retain's) on the held-out half of each forget owner's QA, each model attacked alike; "
                               "0 = as gone as if never trained, 1 = fully back; – where the attack does not tell "
                               "target from retain model. `none` is the model unattacked.\n")


def plot_recovery(rows: dict[str, dict], recovery: dict[str, dict], methods: list[str], out: Path) -> None:
    """Worst-case recovery over the attacks against forget quality, one point per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    points = []
    for name, rec in recovery.items():
        worst = worst_recovery(rec)
        fq = rows.get(name, {}).get("forget_quality")
        if worst is None or fq is None:
            continue
        ref = name not in methods
        ax.scatter([max(fq, 1e-300)], [worst], marker="s" if ref else "o", s=60, c="grey" if ref else None,
                   edgecolors="black", zorder=3)
        points.append((name, max(fq, 1e-300), worst, ref))
    ax.set_xscale("log")
    ax.set_xlabel("forget quality (KS p-value vs retain, log)")
    ax.set_ylabel("worst recovery over the attacks (lower is better)")
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    for (name, x, y, ref), (dx, dy, ha) in zip(points, label_offsets(ax, points)):
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=9, ha=ha,
                    style="italic" if ref else "normal")
    fig.savefig(out / "recovery.png", dpi=120)
    plt.close(fig)


def plot(rows: dict[str, dict], methods: list[str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def scatter(ycol: str, path: Path, ylog: bool, ylabel: str) -> None:
        fig, ax = plt.subplots(figsize=(6.5, 4.8))
        points = []
        for name, row in rows.items():
            x, y = row["model_utility"], row[ycol]
            if x is None or y is None:
                continue
            ref = name not in methods
            y = max(y, 1e-300) if ylog else y
            ax.scatter([x], [y], marker="s" if ref else "o", s=60, c="grey" if ref else None,
                       edgecolors="black", zorder=3)
            points.append((name, x, y, ref))
        if ylog:
            ax.set_yscale("log")
        ax.set_xlabel("model utility (higher is better)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        for (name, x, y, ref), (dx, dy, ha) in zip(points, label_offsets(ax, points)):
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=9, ha=ha,
                        style="italic" if ref else "normal")
        fig.savefig(path, dpi=120)
        plt.close(fig)

    scatter("forget_quality", out / "pareto.png", True, "forget quality (KS p-value vs retain, log)")
    scatter("forget_attribution", out / "attribution.png", False, "forget attribution (P(true owner) of answers)")


def label_offsets(ax, points: list[tuple]) -> list[tuple[float, float, str]]:
    """(dx, dy, ha) in points per label: the first of four places beside its marker whose box stays inside
    the axes and overlaps no label placed before it (names of points close together would print over
    each other)."""
    scale = ax.figure.dpi / 72  # points -> pixels
    right = ax.get_window_extent().x1
    placed: list[tuple[float, float, float, float]] = []
    out = []
    for name, x, y, _ in points:
        px, py = ax.transData.transform((x, y))
        width, height = 5.5 * len(name) * scale, 10 * scale  # fontsize 9, roughly
        for dx, dy, ha in ((5, 4, "left"), (5, -12, "left"), (-5, 4, "right"), (-5, -12, "right")):
            left = px + dx * scale - (width if ha == "right" else 0)
            box = (left, py + dy * scale, left + width, py + dy * scale + height)
            if box[2] <= right and not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3]
                                           for b in placed):
                break
        placed.append(box)
        out.append((dx, dy, ha))
    return out
