"""`dareu attack`: every attack on a model, the target and the retain model, then recovery per attack and owner.

Stages, each cached so a killed run picks up where it stopped:
1. checks (world, model, split, attack names, attributor) before any model is loaded;
2. the target's and the retain model's results under every attack, cached in `<world>/attacks/` (they are the
   0 and 1 of recovery, shared by every model attacked on this world);
3. the model's results under every attack, one file each in `<out>/raw/`;
4. `attack.json` and `report.md`: leak, recovery, forget quality and utility per attack.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

from dareu.attacks.config import AttackConfig
from dareu.attacks.halves import owner_halves, with_forget_rows
from dareu.attacks.recovery import by_owner, owner_recovery
from dareu.attacks.registry import ATTACKS, AttackInputs
from dareu.data import check_forget_split, check_same_data, get_split, load_world, split_key
from dareu.errors import DareUError
from dareu.evaluation import metrics as M
from dareu.evaluation.config import VALUE_FIELDS, EvalConfig
from dareu.evaluation.reference import model_key
from dareu.runs import claim_run_dir, read_json, write_json

BASELINE = "none"  # the model as it is: the row every attack is read against
REFERENCE_MODELS = {"target": "target", "retain": "retain-{split}"}
EVAL_COLUMNS = ("fact_leakage", "fact_leakage_sampled", "forget_rouge", "forget_attribution", "model_utility")


def check_attacks(names: list[str]) -> list[str]:
    """The attacks to run, `none` first; an unknown name is one line listing the registered ones."""
    for n in names:
        if n != BASELINE:
            ATTACKS.get(n)
    if not names:
        raise DareUError("no attacks chosen; pass e.g. --attacks relearn,quant4 (registered: "
                         f"{', '.join(ATTACKS.names())})")
    return [BASELINE, *dict.fromkeys(n for n in names if n != BASELINE)]


def eval_metrics(cfg: AttackConfig, attributor) -> list[str]:
    names = ["fact_leakage", "fact_leakage_sampled", "forget_rouge", "forget_truth_ratio"]
    return names + (["forget_attribution"] if attributor is not None else []) + (["model_utility"] if cfg.utility else [])


# the AttackConfig keys each attack's numbers depend on (beyond the evaluation's)
OWN_KEYS = {"relearn": ("relearn", "utility"), "relearn_retain": ("relearn", "utility"), "quant8": ("utility",),
            "quant4": ("utility",), BASELINE: ("utility",), "icl": ("icl_examples",), "prefix": ("prefix_words",)}
VERSIONS = {"mc": 2}  # bumped when an attack's leak changes meaning, so cached results of the old one are not reused


def settings_key(cfg: AttackConfig, eval_cfg: EvalConfig, data, split: str, attributor, name: str | None = None) -> dict:
    """Everything that changes the numbers of attack `name` (a cached result is reused only when it matches);
    without a name, what every attack shares."""
    shared = {"eval": {k: getattr(eval_cfg, k) for k in VALUE_FIELDS}, "split_key": split_key(data, split),
              "attributor": getattr(attributor, "path", None) if attributor is not None else None}
    if name is None:
        return shared
    values = asdict(cfg)
    return {**shared, "attack": name, "version": VERSIONS.get(name, 1), **{k: values[k] for k in OWN_KEYS.get(name, ())}}


def _digest(values: dict) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_one(name: str, model, tok, inputs: AttackInputs, attributor, eval_cfg: EvalConfig) -> dict:
    """One attack on one in-memory model: `leaks` (one per held-out QA, None where not measurable) and, for a
    model attack, the evaluation of the attacked model on the held-out half."""
    from dareu.evaluation.runner import evaluate_model

    start = time.time()
    if name != BASELINE and ATTACKS.get(name).kind == "probe":
        return {"kind": "probe", "leaks": ATTACKS.get(name).run(model, tok, inputs), "seconds": time.time() - start}
    attacked = model if name == BASELINE else ATTACKS.get(name).run(model, tok, inputs)
    results = evaluate_model(attacked, tok, inputs.held_data, inputs.split, attributor=attributor, cfg=eval_cfg)
    facts = results["fact_leakage"]["agg_value"] is not None
    per_row = results["fact_leakage"] if facts else results["forget_rouge"]
    leaks = [v.get("score" if facts else "rougeL_recall") for v in per_row["value_by_index"].values()]
    return {"kind": "model", "leaks": leaks, "eval": results, "seconds": time.time() - start}


def attack_model(model_dir: str, data, split: str, names: list[str], cfg: AttackConfig, eval_cfg: EvalConfig,
                 folder: Path, attributor=None, say=print) -> dict[str, dict]:
    """Every attack in `names` on the model in `model_dir`; each result cached in `folder/<attack>.json` (valid
    while the weights and the settings are the same)."""
    from dareu.evaluation.runner import load_for_eval

    found: dict[str, dict] = {}
    weights = model_key(model_dir)
    model = tok = None
    with tempfile.TemporaryDirectory(prefix="dareu-attack-") as work:
        inputs = attack_inputs(data, split, cfg, eval_cfg, work)
        for name in names:
            key = {"model_key": weights, **settings_key(cfg, eval_cfg, data, split, attributor, name)}
            path = folder / f"{name}.json"
            cached = read_json(path) if path.is_file() else {}
            if cached.get("key") == key:
                found[name] = cached
                continue
            if model is None:
                model, tok = load_for_eval(model_dir)
            say(f"[attack] {name} on {model_dir}")
            found[name] = {"key": key, "model": str(model_dir), **run_one(name, model, tok, inputs, attributor, eval_cfg)}
            folder.mkdir(parents=True, exist_ok=True)
            write_json(path, found[name])
    return found


def attack_inputs(data, split: str, cfg: AttackConfig, eval_cfg: EvalConfig, work: str) -> AttackInputs:
    """What every attack on `split` reads: the attacker's half, the held-out half and the benchmark cut to it."""
    rows = list(get_split(data, split))
    taught, held_out = owner_halves(rows)
    return AttackInputs(data, split, check_forget_split(split), [rows[i] for i in taught],
                        [rows[i] for i in held_out], with_forget_rows(data, split, held_out), cfg, eval_cfg, work)


def summarise(model: dict[str, dict], target: dict[str, dict], retain: dict[str, dict], owners: list[str],
              min_gap: float) -> dict:
    """Per attack: the model's leak, the references' leaks, recovery per owner and its mean, forget quality (KS
    test of the held-out truth ratios against the retain model's under the same attack) and the eval's headline
    numbers."""
    out = {}
    for name, res in model.items():
        leak = {who: by_owner(owners, r[name]["leaks"]) for who, r in (("model", model), ("target", target),
                                                                      ("retain", retain))}
        per_owner = owner_recovery(leak["model"], leak["retain"], leak["target"])
        t, r = M.mean_or_none(target[name]["leaks"]), M.mean_or_none(retain[name]["leaks"])
        # an attack under which the target leaks hardly more than the retain model measures nothing
        measurable = t is not None and r is not None and t - r >= min_gap
        row = {"kind": res["kind"], "leak": M.mean_or_none(res["leaks"]), "target_leak": t, "retain_leak": r,
               "recovery": M.mean_or_none(per_owner.values()) if measurable else None,
               "measurable_owners": sum(v is not None for v in per_owner.values()) if measurable else 0,
               "recovery_by_owner": per_owner, "leak_by_owner": leak["model"]}
        if res["kind"] == "model":
            ev = res["eval"]
            row |= {c: ev[c]["agg_value"] for c in EVAL_COLUMNS if c in ev}
            ratios = [v["score"] for v in ev["forget_truth_ratio"]["value_by_index"].values()]
            theirs = [v["score"] for v in retain[name]["eval"]["forget_truth_ratio"]["value_by_index"].values()]
            row["forget_quality"] = M.ks_test(ratios, theirs)[0]
        out[name] = row
    return out


class Attacker:
    """The checked inputs of an attack table on one world and split: attack any number of models with
    `summary(model_dir, folder)` (what `dareu attack` does once and `dareu compare --attacks` per row)."""

    def __init__(self, world: str, split: str, cfg: AttackConfig | None = None, attributor=None,
                 eval_cfg: EvalConfig | None = None, cache_dir: str | Path | None = None, say=print):
        from dareu.evaluation.reference import check_retain_model
        from dareu.evaluation.runner import world_eval_config

        self.cfg, self.split, self.world, self.attributor, self.say = cfg or AttackConfig(), split, str(world), attributor, say
        self.names = check_attacks(self.cfg.attacks)
        retain_split = check_forget_split(split)
        self.data = load_world(world)
        self.refs = {who: Path(world) / "models" / m.format(split=split) for who, m in REFERENCE_MODELS.items()}
        for who, path in self.refs.items():
            if not path.is_dir():
                raise DareUError(f"world {world} has no {who} model ({path}); recovery is measured between the "
                                 f"target and the retain model of {split}: build them with `dareu prepare`")
        check_retain_model(self.refs["retain"], split, retain_split)
        rows = list(get_split(self.data, split))
        if len({r["owner"] for r in rows}) == len(rows):
            raise DareUError(f"every owner of {split} has one QA: relearning on half of an owner's QA needs two or more")
        if attributor is not None:
            check_same_data(getattr(attributor, "benchmark", {}).get("data_key"), world,
                            f"attributor {getattr(attributor, 'path', '')}".strip(), "train one on this world")
        self.eval_cfg = replace(eval_cfg or world_eval_config(world), metrics=eval_metrics(self.cfg, attributor),
                                fast=False)
        _, held_out = owner_halves(rows)
        self.owners = [rows[i]["owner"] for i in held_out]
        self.cache = Path(cache_dir) if cache_dir else Path(world) / "attacks"
        self._refs: dict[str, dict] | None = None

    def _run(self, model_dir: str, folder: Path) -> dict[str, dict]:
        return attack_model(model_dir, self.data, self.split, self.names, self.cfg, self.eval_cfg, folder,
                            self.attributor, self.say)

    def references(self) -> dict[str, dict]:
        """The target's and retain model's results, cached per world and settings."""
        if self._refs is None:
            tag = _digest(settings_key(self.cfg, self.eval_cfg, self.data, self.split, self.attributor))
            self._refs = {who: self._run(str(p), self.cache / f"{p.name}-{tag}") for who, p in self.refs.items()}
        return self._refs

    def summary(self, model_dir: str, folder: Path) -> dict:
        """Attack `model_dir` (results cached in `folder`) and read it against the references."""
        refs = self.references()
        start = time.time()
        found = self._run(model_dir, folder)
        return {"model": model_dir, "world": self.world, "split": self.split, "attacks": self.names,
                "held_out_qa": len(self.owners), "owners": sorted(set(self.owners)),
                "results": summarise(found, refs["target"], refs["retain"], self.owners, self.cfg.min_gap),
                "seconds": time.time() - start}


def run_attack(model_path: str, world: str, split: str, out_dir: str | Path, cfg: AttackConfig | None = None,
               attributor=None, eval_cfg: EvalConfig | None = None, overwrite: bool = False, resume: bool = False,
               cache_dir: str | Path | None = None, say=print) -> dict:
    """Attack a saved model (or run folder) on a world and write `out_dir/attack.json` + `report.md`."""
    from dareu.modeling import check_model_path, load_tokenizer, resolve_model_dir

    # 1. everything that can be wrong, before any model is loaded
    attacker = Attacker(world, split, cfg, attributor, eval_cfg, cache_dir, say)
    model_dir = resolve_model_dir(model_path)
    check_model_path(model_dir)
    load_tokenizer(model_dir)
    out, _ = claim_run_dir(out_dir, "attack", overwrite=overwrite, resume=resume)
    write_json(out / "config.json", asdict(attacker.cfg))
    # 2. the references (cached per world), 3. the model, 4. the summary
    report = attacker.summary(model_dir, out / "raw")
    write_json(out / "attack.json", report)
    (out / "report.md").write_text(markdown(report))
    return report


def markdown(report: dict) -> str:
    def f(v):
        return "–" if v is None else str(v) if isinstance(v, int) else f"{v:.2e}" if 0 < abs(v) < 0.01 else f"{v:.3f}"

    cols = ["leak", "retain_leak", "target_leak", "recovery", "measurable_owners", "forget_quality", "model_utility"]
    lines = [(f"Attacks on {report['model']} ({report['split']}, {report['held_out_qa']} held-out QA of "
             f"{len(report['owners'])} owners)"), "", "| attack | " + " | ".join(cols) + " |",
             "|---" * (len(cols) + 1) + "|"]
    for name, row in report["results"].items():
        lines.append(f"| {name} | " + " | ".join(f(row.get(c)) for c in cols) + " |")
    return "\n".join(lines) + ("\n\nleak: fact stated in the greedy answer (ROUGE-L recall without a fact column), "
                               "held-out half only. recovery: (leak - retain's) / (target's - retain's) per owner, "
                               "each model attacked alike, clipped to [0, 1], mean over the owners whose target leaks "
                               "more than the retain model (measurable_owners); none (–) where the target leaks less "
                               "than min_gap more than the retain model under the attack. 0 = as if never trained, "
                               "1 = fully back.\n")
