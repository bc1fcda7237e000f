"""Train, calibrate, validate and save an attributor; write its report.

`prepare_run` does every check that can fail on bad input (benchmark, owners, backbone, proxy
models) before `train_attributor` spends any time training.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attribution.attributor import Attributor, owners_signature
from attribution.calibration import expected_calibration_error, fit_temperature, nll
from attribution.config import AttributorConfig
from attribution.data import AttributionData, build_data
from attribution.metrics import classification_report, label_ids
from attribution.proxy import checks, generate_answers, probe_sets, proxy_models, proxy_numbers
from dareu.data import world_data_key
from dareu.errors import DareUError
from dareu.runs import write_json


@dataclass
class Plan:
    """Everything checked and built before training starts."""

    cfg: AttributorConfig
    data: AttributionData
    benchmark: dict
    backbone: str | None
    models: dict[str, str]  # proxy probe -> model path


def benchmark_identity(source: str, world: str | Path | None, data: AttributionData, cfg: AttributorConfig) -> dict:
    """What an attributor was trained on, so RL can refuse an attributor of another benchmark."""
    key = world_data_key(world)
    owners = data.owners[:-1]
    return {"source": str(source), "data_key": key, "owners_signature": owners_signature(owners),
            "n_owners": len(owners), "owner_splits": list(cfg.data.owner_splits),
            "forget_split": cfg.data.forget_split, "forget_owners": data.forget_owners}


def prepare_run(cfg: AttributorConfig, dataset, source: str, world: str | Path | None) -> Plan:
    """Validate input and build the sets; raises DareUError before any expensive work."""
    from dareu.modeling import check_model_path

    if cfg.kind not in ("llm", "tfidf"):
        raise DareUError(f"unknown attributor kind {cfg.kind!r}; choose llm or tfidf")
    data = build_data(dataset, cfg.data)
    backbone = None
    if cfg.kind == "llm":
        backbone = cfg.llm.backbone
        if not backbone:
            if world is None:
                raise DareUError("kind=llm needs a backbone: pass --backbone PATH_OR_ID (or --world W to use W/models/target)")
            backbone = str(Path(world) / "models" / "target")
            if not Path(backbone).is_dir():
                raise DareUError(f"{backbone} does not exist; build the world with `dareu prepare` or pass --backbone")
        check_model_path(backbone)
    models = proxy_models(world, cfg) if cfg.run_proxy else {}
    return Plan(cfg, data, benchmark_identity(source, world, data, cfg), backbone, models)


def fit(kind: str, plan: Plan, log=print) -> tuple[Attributor, dict]:
    cfg, data = plan.cfg, plan.data
    if kind == "llm":
        from attribution.llm import train_llm

        return train_llm(data.owners, data.train, cfg.llm, plan.backbone, cfg.data.response_only, plan.benchmark, log)
    from attribution.tfidf import train_tfidf

    return train_tfidf(data.owners, data.train, cfg.tfidf, cfg.data.response_only, plan.benchmark)


def calibrate(att: Attributor, data: AttributionData) -> dict:
    """Temperature scaling on the validation set (held-out paraphrases, their perturbations, idk)."""
    labels = label_ids(att.owners, data.val)
    logits = att.logits([e.prompt for e in data.val], [e.response for e in data.val]).astype(np.float64)
    t = fit_temperature(logits, labels)
    before = {"nll": nll(logits, labels, 1.0)}
    att.temperature = t
    from attribution.attributor import softmax

    before["ece"] = expected_calibration_error(softmax(logits, 1.0), labels)
    return {"temperature": t, "val_n": len(labels), "val_nll_uncalibrated": before["nll"],
            "val_nll": nll(logits, labels, t), "val_ece_uncalibrated": before["ece"],
            "val_ece": expected_calibration_error(softmax(logits, t), labels)}


def evaluate(att: Attributor, data: AttributionData, generated: dict[str, list[str]]) -> tuple[dict, list[dict]]:
    """Held-out accuracy, the test report and the proxy numbers of a calibrated attributor."""
    test = data.test
    probs = att.score([e.prompt for e in test], [e.response for e in test])
    report = classification_report(att.owners, test, probs, data.forget_owners)
    heldout = report["accuracy_by_kind"].get("paraphrase", 0.0)
    proxy, records = proxy_numbers(att, probe_sets(data, generated))
    return {"heldout_accuracy": heldout, "proxy": proxy, "checks": checks(heldout, proxy), "test": report}, records


def generate_probes(plan: Plan, log=print) -> dict[str, list[str]]:
    questions = [r["question"] for r in plan.data.forget_rows]
    out = {}
    for name, path in plan.models.items():
        t = time.time()
        out[name] = generate_answers(path, questions, plan.cfg.proxy)
        log(f"generated {len(questions)} {name} answers with {path} ({time.time() - t:.0f}s)")
    return out


def run_one(kind: str, plan: Plan, out: Path, generated: dict[str, list[str]], log=print) -> dict:
    """Train one kind into `out` (calibrated and saved) and return its report section."""
    t = time.time()
    log(f"training the {kind} attributor on {plan.data.counts['train']} examples")
    att, train_log = fit(kind, plan, log)
    calib = calibrate(att, plan.data)
    att.save(out)
    result, records = evaluate(att, plan.data, generated)
    with open(out / "samples.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    train_log = {k: v for k, v in train_log.items() if k != "history"} | {"history": train_log.get("history", [])}
    return {"kind": kind, **result, "calibration": calib, "train": train_log, "seconds": time.time() - t}


def train_attributor(plan: Plan, out: str | Path, log=print) -> dict:
    """The whole command: generate probes, train the kind (and the TF-IDF baseline beside an LLM), report."""
    from threadpoolctl import threadpool_limits

    if plan.cfg.threads > 0:  # torch and BLAS alike: extra threads only spin on a shared CPU
        from dareu import threads

        threads.pin(plan.cfg.threads, "the attributor config's threads key")
        with threadpool_limits(limits=plan.cfg.threads):
            return _train_attributor(plan, Path(out), log)
    return _train_attributor(plan, Path(out), log)


def _train_attributor(plan: Plan, out: Path, log) -> dict:
    start = time.time()
    generated = generate_probes(plan, log) if plan.cfg.run_proxy else {}
    main = run_one(plan.cfg.kind, plan, out, generated, log)
    report = {"kind": plan.cfg.kind, "heldout_accuracy": main["heldout_accuracy"], "proxy": main["proxy"],
              "all_ok": all(c["ok"] for c in main["checks"].values()), **main,
              "benchmark": plan.benchmark, "data": plan.data.counts}
    if plan.cfg.kind == "llm" and plan.cfg.baseline:
        base = run_one("tfidf", plan, out / "tfidf-baseline", generated, log)
        report["baseline"] = base
    report["generated_examples"] = {k: [{"prompt": r["question"], "response": a, "owner": r["owner"]}
                                        for r, a in list(zip(plan.data.forget_rows, v))[:5]]
                                    for k, v in generated.items()}
    report["seconds"] = time.time() - start
    write_json(out / "report.json", report)
    return report
