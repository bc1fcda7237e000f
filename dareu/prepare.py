"""`dareu prepare`: the world, its tokenizer, and the base / target / retain models, as TOFU builds them.

base    = random init, trained on world knowledge (world facts, real authors, background people, both forms)
target  = base fine-tuned on every fictitious author + a replay of the base's knowledge
retain  = base fine-tuned on the retain authors of a split + the same replay (one per forget split,
          and a second seed for forget10: its forget quality against the first is the noise ceiling)

Each artifact carries a stamp (hash of everything that made it); a second run with the same config
reuses it, and a killed run resumes at the first artifact without a valid stamp.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from dareu.config import field, require, save_config, to_dict
from dareu.data import RETAIN_OF, load_world
from dareu.errors import DareUError
from dareu.modeling import ModelConfig
from dareu.runs import changed_keys, claim_run_dir, read_json, write_json
from dareu.sft import TrainConfig
from dareu.world import FORGET_PERCENTS, WorldConfig, save_world

STAMP = "dareu_stamp.json"


@dataclass
class PrepareConfig:
    world: WorldConfig = field(default_factory=WorldConfig, help="The fictitious-author world.")
    model: ModelConfig = field(default_factory=ModelConfig, help="The tiny causal LM.")
    base_train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=30.0),
                                    help="Pre-training of the base model on world knowledge.")
    finetune: TrainConfig = field(default_factory=TrainConfig, help="Fine-tuning of target and retain models.")
    retain_splits: list[str] = field(default_factory=lambda: [f"forget{p:02d}" for p in FORGET_PERCENTS],
                                     help="Forget splits that get a retain model (retain-<split>).")
    seed2_splits: list[str] = field(default_factory=lambda: ["forget10"],
                                    help="Forget splits that also get a retain model with another seed (the noise ceiling).")
    workers: int = field(2, help="Models fine-tuned at once, one process each.")
    threads: int = field(1, help="torch threads of every training step (base and fine-tunes), whatever OMP_NUM_THREADS "
                                 "says: a float sum splits differently over other thread counts, so a fixed count makes "
                                 "the same config give the same models on any load (and 1 is fastest for these models).")
    eval_max_qa: int = field(400, help="QA per split in the quality table (greedy ROUGE-L recall).")

    def __post_init__(self):
        for key in ("workers", "threads", "eval_max_qa"):
            require(self, key, getattr(self, key) >= 1, "must be >= 1")


def stamp_key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def is_valid(path: Path, key: str) -> bool:
    stamp = path / STAMP
    return stamp.is_file() and read_json(stamp).get("key") == key


def publish(tmp: Path, final: Path, key: str, **info) -> None:
    """Stamp, then move into place: a folder with a stamp is always complete."""
    write_json(tmp / STAMP, {"key": key, **info})
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def knowledge_pairs(data) -> list[tuple[str, str]]:
    """What the base model learns first: world facts, real authors and background people, in both
    sentence forms (so fictitious-author knowledge can later transfer to the paraphrased form)."""
    rows = list(data["world_facts"]) + list(data["real_authors"]) + list(data["background"])
    return [(r["question"], r["answer"]) for r in rows] + [(r["paraphrased_question"], r["paraphrased_answer"])
                                                          for r in rows]


def replay_pairs(data) -> list[tuple[str, str]]:
    """Replayed during fine-tuning so a small model keeps its pre-training knowledge."""
    return [(r["question"], r["answer"]) for r in list(data["world_facts"]) + list(data["real_authors"])]


def _train_job(job: dict) -> dict:
    """Fine-tune one model in its own process (pickled arguments only)."""
    import torch

    from dareu import threads
    from dareu.modeling import load_model, load_tokenizer, save_tokenizer
    from dareu.sft import finetune_qa

    threads.pin(job["threads"], "prepare's threads key: a world does not depend on the load")
    start = time.time()
    data = load_world(job["world"])
    tok = load_tokenizer(job["base"])
    model = load_model(job["base"], dtype=torch.float32)
    pairs = [(r["question"], r["answer"]) for s in job["splits"] for r in data[s]] + replay_pairs(data)
    cfg = TrainConfig(**job["train"])
    tmp = Path(job["out"]).with_name(".tmp-" + Path(job["out"]).name)
    shutil.rmtree(tmp, ignore_errors=True)
    log = finetune_qa(model, tok, pairs, cfg, str(tmp / "trainer"))
    shutil.rmtree(tmp / "trainer", ignore_errors=True)
    model.save_pretrained(str(tmp))
    save_tokenizer(tok, tmp)
    final_loss = next((e["train_loss"] for e in reversed(log) if "train_loss" in e), None)
    publish(tmp, Path(job["out"]), job["key"], seconds=time.time() - start, train_loss=final_loss,
             splits=job["splits"])
    return {"name": Path(job["out"]).name, "seconds": time.time() - start, "cached": False}


def run_jobs(train_job, jobs: list[dict], workers: int, say) -> dict[str, float]:
    """Run fine-tune jobs (`train_job(job) -> {"name", "seconds", ...}`, a module-level function: it is pickled),
    `workers` processes at a time; returns the seconds of each."""
    def done(res: dict) -> float:
        loss = f", loss {res['train_loss']}" if res.get("train_loss") is not None else ""
        say(f"  {res['name']}: done ({res['seconds']:.1f}s{loss})")
        return res["seconds"]

    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            return {res["name"]: done(res) for res in pool.map(train_job, jobs)}
    return {res["name"]: done(res) for res in map(train_job, jobs)}


def model_jobs(cfg: PrepareConfig) -> list[tuple[str, list[str], int]]:
    """(model name, training splits, seed) for every fine-tuned model."""
    jobs = [("target", ["retain90", "forget10"], cfg.finetune.seed)]
    for split in cfg.retain_splits:
        jobs.append((f"retain-{split}", [RETAIN_OF[split]], cfg.finetune.seed))
    for split in cfg.seed2_splits:
        jobs.append((f"retain-{split}-seed2", [RETAIN_OF[split]], cfg.finetune.seed + 1))
    return jobs


def check_config(cfg: PrepareConfig) -> None:
    for split in cfg.retain_splits + cfg.seed2_splits:
        if split not in RETAIN_OF:
            raise DareUError(f"unknown forget split {split!r} in retain_splits/seed2_splits; "
                             f"choose from {', '.join(RETAIN_OF)}")
    if not 1 <= cfg.world.qa_per_author <= 20:
        raise DareUError("world.qa_per_author must be between 1 and 20 (one QA per profile attribute)")
    if cfg.world.n_authors < 10:
        raise DareUError("world.n_authors must be at least 10 so forget10 and retain90 both hold authors")


def check_out(out: Path, cfg: PrepareConfig, overwrite: bool) -> None:
    """A world folder may be reused only by the same config (its artifacts are cached and resumable);
    `overwrite` rebuilds a world, and nothing but a world is ever written or deleted."""
    out, existed = claim_run_dir(out, "world", overwrite=overwrite, reuse=True)
    saved = out / "prepare_config.json"
    if existed and saved.is_file():
        from dareu.config import from_dict

        old = to_dict(from_dict(PrepareConfig, read_json(saved)))  # keys added since it was built take their defaults
        if old != to_dict(cfg):
            diff = changed_keys(old, to_dict(cfg))
            raise DareUError(f"--out {out} holds a world made with another config (differs in {', '.join(diff[:4])}); "
                             "pass --overwrite to rebuild it or choose another --out")


def prepare(cfg: PrepareConfig, out: str | Path, overwrite: bool = False, console=None) -> dict:
    """Build (or reuse) everything under `out`; returns the quality table written to prepare.json."""

    from dareu.modeling import build_model, save_tokenizer, train_tokenizer
    from dareu.sft import finetune_qa

    say = console.print if console is not None else print
    out = Path(out)
    check_config(cfg)
    check_out(out, cfg, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "prepare_config.json", to_dict(cfg))
    save_config(cfg, out / "config.yaml")
    start = time.time()
    timings: dict[str, float] = {}

    # 1. the world
    data_key = stamp_key(to_dict(cfg.world))
    if not is_valid(out / "data", data_key):
        t = time.time()
        tmp = out / ".tmp-data"
        shutil.rmtree(tmp, ignore_errors=True)
        save_world(cfg.world, tmp)
        publish(tmp, out / "data", data_key)
        timings["world"] = time.time() - t
        say(f"world: {out / 'data'} ({timings['world']:.1f}s)")
    data = load_world(out)

    # 2. tokenizer + base model
    models = out / "models"
    models.mkdir(exist_ok=True)
    base_key = stamp_key(data_key, to_dict(cfg.model), to_dict(cfg.base_train))
    if not is_valid(models / "base", base_key):
        t = time.time()
        say("base: training the tokenizer and pre-training on world knowledge")
        texts = [r[c] for s in data for r in data[s] for c in ("question", "paraphrased_question", "answer",
                                                                 "paraphrased_answer") if c in r]
        texts += [p for s in data for r in data[s] if "perturbed_answers" in r for p in r["perturbed_answers"]]
        tok = train_tokenizer(texts, cfg.model.vocab_size)
        from dareu import threads

        threads.pin(cfg.threads, "prepare's threads key: a world does not depend on the load")
        model = build_model(cfg.model, tok, seed=cfg.base_train.seed)
        tmp = models / ".tmp-base"
        shutil.rmtree(tmp, ignore_errors=True)
        finetune_qa(model, tok, knowledge_pairs(data), cfg.base_train, str(tmp / "trainer"),
                    max_length=cfg.model.max_positions)
        shutil.rmtree(tmp / "trainer", ignore_errors=True)
        model.save_pretrained(str(tmp))
        save_tokenizer(tok, tmp)
        publish(tmp, models / "base", base_key)
        timings["base"] = time.time() - t
        say(f"base: done ({timings['base']:.1f}s)")
        del model

    # 3. target and retain models, `workers` at a time
    jobs = []
    for name, splits, seed in model_jobs(cfg):
        train = dict(to_dict(cfg.finetune), seed=seed)
        key = stamp_key(base_key, name, splits, train)
        if is_valid(models / name, key):
            continue
        jobs.append({"world": str(out), "base": str(models / "base"), "out": str(models / name), "splits": splits,
                     "train": train, "key": key, "threads": cfg.threads})
    if jobs:
        say(f"fine-tuning {', '.join(Path(j['out']).name for j in jobs)} ({cfg.workers} at a time)")
        timings.update(run_jobs(_train_job, jobs, cfg.workers, say))

    # 4. the quality table (cached too: it depends only on the models and eval_max_qa)
    from dareu.quality import quality_table

    stamps = sorted(read_json(p)["key"] for p in models.glob(f"*/{STAMP}"))
    table_key = stamp_key(stamps, cfg.eval_max_qa)
    previous = read_json(out / "prepare.json") if (out / "prepare.json").is_file() else {}
    if previous.get("key") == table_key:
        table = previous
    else:
        table = quality_table(out, data, cfg)
        table["key"] = table_key
    table["seconds"] = {"total": time.time() - start, **timings}
    write_json(out / "prepare.json", table)
    return table
