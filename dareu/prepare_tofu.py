"""`dareu prepare --benchmark tofu`: a TOFU world built the way TOFU builds one, from a local copy of locuslab/TOFU.

data    = the chosen forget split (its authors exactly TOFU's: the last ones of full.json), its retain split
          (optionally only the first `retain_authors` retain authors), real_authors, world_facts, holdout
base    = the given pretrained chat model, as it is (the "before fine-tuning" reference)
target  = base fine-tuned on every kept author's QA (forget + retain), answer-only loss in the chat template
retain  = the same fine-tune on the retain authors only, and again with another seed (the noise ceiling)

Cached and resumable like `dareu.prepare`: each artifact carries a stamp of everything that made it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from dareu.config import field, require, require_choice, save_config, to_dict
from dareu.data import FORGET_SPLITS, RETAIN_OF, TOFU_FILES, check_not_asked, general_prompts
from dareu.errors import DareUError
from dareu.prepare import STAMP, is_valid, publish, run_jobs, stamp_key
from dareu.runs import changed_keys, claim_run_dir, read_json, write_json
from dareu.sft import TrainConfig
from dareu.world import QA_COLUMNS
from dareu.world_vocab import IDK_ANSWERS

FULL_FILE = "full.json"  # every fictitious author, 20 consecutive QA each (TOFU's fine-tuning set)
OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "paged_adamw_32bit", "paged_adamw_8bit", "adamw_8bit", "sgd")
QA_SPLITS = ("forget", "retain", "real_authors", "world_facts")  # columns of the quality table, by role


@dataclass
class TofuPrepareConfig:
    forget_split: str = field("forget10", help="TOFU forget split whose retain model is built: forget01, forget05 "
                                               "or forget10 (its authors are always TOFU's, the last ones).")
    retain_authors: int = field(0, help="Retain authors kept (the first ones of full.json); 0 keeps all of them (TOFU).")
    holdout_authors: int = field(0, help="Holdout authors kept (never trained; membership inference); 0 keeps all.")
    qa_per_author: int = field(20, help="Consecutive QA rows per author in the TOFU files (20 in TOFU).")
    finetune: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=5.0, batch_size=32, learning_rate=1e-5, warmup_ratio=0.2,
                                            weight_decay=0.01),
        help="Fine-tuning of target and retain models (TOFU: lr 1e-5, 5 epochs, batch 32, 1 warmup epoch, wd 0.01).")
    optim: str = field("paged_adamw_32bit", help="Optimizer (transformers' `optim`; TOFU uses paged_adamw_32bit, "
                                                 "which needs bitsandbytes and a GPU; adamw_torch on CPU).")
    max_length: int = field(512, help="Tokens per QA (chat prompt + answer); longer ones are cut (TOFU: 500).")
    replay: str = field("none", help="General prompts whose answers by the base model are mixed into every fine-tune, "
                                     "so it keeps what the model knew: `default` (the shipped "
                                     "configs/prepare/replay_prompts.txt), a file of prompts (one a line, # comments), "
                                     "or none. Never the evaluation's questions (refused).")
    replay_max_new_tokens: int = field(96, help="Tokens of each replayed base answer.")
    seed2: bool = field(True, help="Also train retain-<split>-seed2 (another seed: the noise ceiling).")
    workers: int = field(1, help="Models fine-tuned at once, one process each.")
    threads: int = field(0, help="torch threads per fine-tune; 0 leaves torch's default (GPU builds). A fixed "
                                 "count makes CPU builds repeatable.")
    eval_max_qa: int = field(400, help="QA per split in the quality table (greedy ROUGE-L recall).")
    eval_max_new_tokens: int = field(128, help="Tokens generated per answer in the quality table (TOFU answers run "
                                               "to ~60 tokens; fewer caps the recall).")
    min_target_rouge: float = field(0.9, help="Bar: the target's ROUGE-L recall on the forget and retain splits.")
    min_forget_gap: float = field(0.2, help="Bar: the retain model's forget ROUGE-L is at least this much below "
                                            "the target's.")
    max_knowledge_drop: float = field(0.05, help="Bar: target and retain may lose at most this much ROUGE-L against "
                                                 "the base on real_authors and world_facts.")

    def __post_init__(self):
        require_choice(self, "forget_split", FORGET_SPLITS)
        require_choice(self, "optim", OPTIMIZERS)
        for key in ("retain_authors", "holdout_authors", "threads"):
            require(self, key, getattr(self, key) >= 0, "must be >= 0")
        for key in ("qa_per_author", "workers", "eval_max_qa", "eval_max_new_tokens", "replay_max_new_tokens"):
            require(self, key, getattr(self, key) >= 1, "must be >= 1")
        require(self, "max_length", self.max_length >= 16, "must be >= 16")
        for key in ("min_target_rouge", "min_forget_gap", "max_knowledge_drop"):
            require(self, key, 0 <= getattr(self, key) <= 1, "must be in [0, 1]")

    @property
    def retain_split(self) -> str:
        return RETAIN_OF[self.forget_split]


# ---- checks (cheap, before anything is written or trained) ---------------------------------------------------

def check_model_dir(model: str | Path) -> Path:
    """A local HF folder with a model and a chat template (read from the files: load_tokenizer would add ours)."""
    path = Path(model).expanduser()
    if not path.is_dir():
        raise DareUError(f"--model {model}: model folder does not exist; pass a local HF model folder "
                         "(config.json, weights, tokenizer with a chat template)")
    if not (path / "config.json").is_file():
        raise DareUError(f"--model {model}: no model there (no config.json, as save_pretrained writes)")
    if not _has_chat_template(path):
        raise DareUError(f"--model {model} has no chat template (tokenizer_config.json, chat_template.jinja or "
                         "chat_template.json); TOFU fine-tunes and prompts through it, so pass a chat/instruct model")
    return path


def _has_chat_template(path: Path) -> bool:
    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return True
    cfg = path / "tokenizer_config.json"
    try:
        return bool(cfg.is_file() and json.loads(cfg.read_text()).get("chat_template"))
    except json.JSONDecodeError:
        return False


def check_tofu_dir(data: str | Path) -> Path:
    """Every file we read must be there; the first missing one is named."""
    from dareu.data import check_tofu_copy

    folder = check_tofu_copy(data)
    if not (folder / FULL_FILE).is_file():
        raise DareUError(f"TOFU copy {data} has no {FULL_FILE} (every author's QA, the fine-tuning set); "
                         "pass a local copy of locuslab/TOFU in the hub's layout")
    return folder


def check_inputs(cfg: TofuPrepareConfig, data: str | Path, model: str | Path) -> None:
    check_tofu_dir(data)
    check_model_dir(model)
    needs_bnb = cfg.optim.startswith("paged") or "8bit" in cfg.optim
    if needs_bnb and importlib.util.find_spec("bitsandbytes") is None:
        raise DareUError(f"config key 'optim' {cfg.optim!r} needs bitsandbytes (and a GPU); install it or "
                         "set optim=adamw_torch")


# ---- data ---------------------------------------------------------------------------------------------------

def _files_key(folder: Path, names: list[str]) -> str:
    h = hashlib.sha256()
    for name in sorted(names):
        h.update(name.encode())
        with open(folder / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def build_data(cfg: TofuPrepareConfig, data: str | Path):
    """The world's DatasetDict from a TOFU copy: forget split, retain split (kept authors), real_authors,
    world_facts, holdout, idk. Author i is rows i*q..i*q+q-1 of full.json; its owner is the name its QA give
    (`dareu.data.owner_name`), or author-<i> for one never named. Holdout authors are holdout-<i>."""
    import datasets

    from dareu.data import load_benchmark, owner_name, read_tofu_file, tofu_row

    folder = check_tofu_dir(data)
    tofu = load_benchmark("tofu", folder)
    q = cfg.qa_per_author
    full = read_tofu_file(folder / FULL_FILE, "full")
    if len(full) % q:
        raise DareUError(f"TOFU copy {data}: {FULL_FILE} has {len(full)} rows, not a multiple of "
                         f"qa_per_author={q}")
    n_authors = len(full) // q
    forget = tofu[cfg.forget_split]
    if len(forget) % q or not 0 < len(forget) < len(full):
        raise DareUError(f"TOFU copy {data}: {TOFU_FILES[cfg.forget_split]} has {len(forget)} rows, not whole "
                         f"authors of {q} QA fewer than {FULL_FILE}'s")
    n_forget = len(forget) // q
    first_forget = n_authors - n_forget
    # the forget split's authors must be exactly TOFU's: the last ones of full.json, in order
    if list(forget["question"]) != list(full["question"])[first_forget * q:]:
        raise DareUError(f"TOFU copy {data}: {TOFU_FILES[cfg.forget_split]} is not the last {n_forget} authors of "
                         f"{FULL_FILE}; pass an unmodified copy of locuslab/TOFU")
    n_retain = cfg.retain_authors or first_forget
    if n_retain > first_forget:
        raise DareUError(f"config key 'retain_authors' asks for {cfg.retain_authors} retain authors but "
                         f"{cfg.forget_split} leaves {first_forget}; give at most {first_forget} (0 keeps all)")
    holdout = tofu["holdout"]
    n_holdout_all = len(holdout) // q
    n_holdout = cfg.holdout_authors or n_holdout_all
    if n_holdout > n_holdout_all:
        raise DareUError(f"config key 'holdout_authors' asks for {cfg.holdout_authors} holdout authors but "
                         f"{TOFU_FILES['holdout']} holds {n_holdout_all}; give at most {n_holdout_all} (0 keeps all)")

    def owner(i: int) -> str:
        rows = full.select(range(i * q, i * q + q))
        return owner_name([f"{r['question']}\n{r['answer']}" for r in rows]) or f"author-{i}"

    names = {i: owner(i) for i in [*range(n_retain), *range(first_forget, n_authors)]}
    forget_rows = [dict(r, owner=names[first_forget + i // q]) for i, r in enumerate(forget)]
    # retain rows from full.json; TOFU's paraphrases and perturbed answers (retain_perturbed) where it has them
    perturbed = {r["question"]: r for r in tofu["retain90"]}
    retain_rows = []
    for idx in range(n_retain * q):
        row = tofu_row(full[idx], idx, "full")
        extra = perturbed.get(row["question"])
        if extra is not None and extra["answer"] == row["answer"]:
            row = dict(extra, qa_id=row["qa_id"])
        retain_rows.append(dict(row, owner=names[idx // q]))
    holdout_rows = [dict(holdout[i], owner=f"holdout-{i // q}") for i in range(n_holdout * q)]
    features = datasets.Features({c: datasets.Sequence(datasets.Value("string")) if c == "perturbed_answers"
                                  else datasets.Value("string") for c in QA_COLUMNS})

    def table(rows) -> datasets.Dataset:  # the world's QA columns only (TOFU's raw fields dropped)
        return datasets.Dataset.from_list([{c: r[c] for c in QA_COLUMNS} for r in rows], features=features)

    # "I don't know" answers for the objectives that train towards one (IdkPO, FLAT, DareU's templates); TOFU's
    # own idk file is not in its hub configs, so the world generator's list stands in
    idk = datasets.Dataset.from_list([{"answer": a} for a in IDK_ANSWERS])
    return datasets.DatasetDict({cfg.forget_split: table(forget_rows), cfg.retain_split: table(retain_rows),
                                 "real_authors": table(tofu["real_authors"]), "world_facts": table(tofu["world_facts"]),
                                 "holdout": table(holdout_rows), "idk": idk})


# ---- models -------------------------------------------------------------------------------------------------

_NOT_MODEL = {"dareu-run.json", STAMP}  # the source folder's own DareU markers stay behind


def model_key(model: Path) -> str:
    """What the base is: the content of every file of the model folder."""
    names = [p.name for p in sorted(model.iterdir()) if p.is_file() and p.name not in _NOT_MODEL]
    return stamp_key("base", _files_key(model, names))


def train_qa(model, tok, pairs: list[tuple[str, str]], cfg: TofuPrepareConfig, train: TrainConfig,
             output_dir: str) -> list[dict]:
    """Answer-only fine-tuning in the chat template (dareu.sft's dataset and collator, TOFU's optimizer)."""
    from transformers import Trainer

    from dareu.sft import QACollator, QADataset, training_args

    trainer = Trainer(model=model, args=training_args(output_dir, train, optim=cfg.optim, logging_steps=5),
                      train_dataset=QADataset(tok, pairs, cfg.max_length), data_collator=QACollator(tok.pad_token_id))
    trainer.train()
    return trainer.state.log_history


def _train_job(job: dict) -> dict:
    """Fine-tune one model (in its own process when workers > 1; pickled arguments only)."""
    import datasets
    import torch

    from dareu.config import from_dict
    from dareu.modeling import load_model, load_tokenizer, save_tokenizer

    if job["threads"]:
        from dareu import threads

        threads.pin(job["threads"], "the threads key of the TOFU prepare config")
    start = time.time()
    cfg = from_dict(TofuPrepareConfig, job["cfg"])
    data = datasets.load_from_disk(job["data"])
    tok = load_tokenizer(job["base"])
    model = load_model(job["base"], dtype=torch.float32)
    pairs = [(r["question"], r["answer"]) for s in job["splits"] for r in data[s]]
    if job["replay"]:  # the base's own answers to general prompts (see replay_prompts)
        pairs += [tuple(p) for p in read_json(Path(job["replay"]) / "replay.json")["pairs"]]
    out = Path(job["out"])
    tmp = out.with_name(".tmp-" + out.name)
    shutil.rmtree(tmp, ignore_errors=True)
    log = train_qa(model, tok, pairs, cfg, TrainConfig(**job["train"]), str(tmp / "trainer"))
    shutil.rmtree(tmp / "trainer", ignore_errors=True)
    model.save_pretrained(str(tmp))
    save_tokenizer(tok, tmp)
    final_loss = next((e["train_loss"] for e in reversed(log) if "train_loss" in e), None)
    publish(tmp, out, job["key"], seconds=time.time() - start, train_loss=final_loss, splits=job["splits"],
             qa=len(pairs))
    return {"name": out.name, "seconds": time.time() - start, "train_loss": final_loss}


def base_answers(base: Path, prompts: list[str], max_new_tokens: int, threads: int) -> list[list[str]]:
    """[prompt, the base's greedy answer] for every prompt it answers (empty answers dropped)."""
    import torch

    from dareu.generation import greedy_pairs
    from dareu.modeling import load_model, load_tokenizer

    if threads:
        from dareu import threads as thread_choice

        thread_choice.pin(threads, "the threads key of the TOFU prepare config")
    tok = load_tokenizer(str(base))
    return greedy_pairs(load_model(str(base), dtype=torch.float32).eval(), tok, prompts, max_new_tokens)


def model_jobs(cfg: TofuPrepareConfig) -> list[tuple[str, list[str], int]]:
    """(model name, training splits, seed) for every fine-tuned model."""
    retain = cfg.retain_split
    jobs = [("target", [retain, cfg.forget_split], cfg.finetune.seed),
            (f"retain-{cfg.forget_split}", [retain], cfg.finetune.seed)]
    if cfg.seed2:
        jobs.append((f"retain-{cfg.forget_split}-seed2", [retain], cfg.finetune.seed + 1))
    return jobs


# ---- the quality table --------------------------------------------------------------------------------------

def quality_table(out: Path, data, cfg: TofuPrepareConfig, say=print) -> dict:
    """Greedy ROUGE-L recall of every model on forget, retain, real_authors, world_facts, with the bars checked."""
    import torch

    from dareu.modeling import load_model, load_tokenizer
    from dareu.quality import evenly, greedy_rouge

    splits = [cfg.forget_split, cfg.retain_split, "real_authors", "world_facts"]
    rows: dict[str, dict[str, float]] = {}
    for name, _, _ in [("base", None, None), *model_jobs(cfg)]:
        t = time.time()
        path = str(out / "models" / name)
        model = load_model(path, dtype=torch.float32)
        tok = load_tokenizer(path)
        rows[name] = {s: greedy_rouge(model, tok, evenly(data[s], cfg.eval_max_qa), cfg.eval_max_new_tokens)
                      for s in splits}
        say(f"  {name}: " + ", ".join(f"{s} {v:.3f}" for s, v in rows[name].items()) + f" ({time.time() - t:.0f}s)")
        del model
    forget, retain = cfg.forget_split, cfg.retain_split
    checks = [_check(rows, "target", forget, ">=", cfg.min_target_rouge),
              _check(rows, "target", retain, ">=", cfg.min_target_rouge),
              _check(rows, f"retain-{forget}", forget, "<=", rows["target"][forget] - cfg.min_forget_gap)]
    for name in ["target", f"retain-{forget}"]:
        for split in ("real_authors", "world_facts"):
            checks.append(_check(rows, name, split, ">=", rows["base"][split] - cfg.max_knowledge_drop))
    return {"rouge_l_recall": rows, "checks": checks, "all_ok": all(c["ok"] for c in checks)}


def _check(rows: dict, model: str, split: str, op: str, threshold: float) -> dict:
    value = rows[model][split]
    ok = value >= threshold - 1e-9 if op == ">=" else value <= threshold + 1e-9
    return {"model": model, "split": split, "rouge": value, "want": f"{op} {threshold:.3f}", "ok": ok}


# ---- the build ----------------------------------------------------------------------------------------------

def _saved_config(cfg: TofuPrepareConfig, data: Path, model: Path) -> dict:
    return {"benchmark": "tofu", "data": str(data.resolve()), "model": str(model.resolve()), **to_dict(cfg)}


def check_out(out: Path, saved: dict, overwrite: bool) -> None:
    """A world folder may be reused only by the same inputs and config; nothing but a world is ever written."""
    out, existed = claim_run_dir(out, "world", overwrite=overwrite, reuse=True)
    path = out / "prepare_config.json"
    if existed and path.is_file():
        old = read_json(path)
        if old.get("benchmark") != "tofu":
            raise DareUError(f"--out {out} holds a world built by `dareu prepare` from the generator, not TOFU; "
                             "pass --overwrite to rebuild it or choose another --out")
        if old != saved:
            diff = changed_keys(old, saved)
            raise DareUError(f"--out {out} holds a TOFU world made with other inputs or config (differs in "
                             f"{', '.join(diff[:4])}); pass --overwrite to rebuild it or choose another --out")


def prepare_tofu(cfg: TofuPrepareConfig, data: str | Path, model: str | Path, out: str | Path,
                 overwrite: bool = False, console=None) -> dict:
    """Build (or reuse) a TOFU world under `out`; returns the quality table written to prepare.json."""
    from dareu.evaluation.runner import WORLD_EVAL

    say = console.print if console is not None else print
    out, data, model = Path(out), Path(data).expanduser(), Path(model).expanduser()
    check_inputs(cfg, data, model)
    # read and check the data before anything is written (a bad retain_authors is refused here)
    t = time.time()
    dataset = build_data(cfg, data)
    prompts = general_prompts(cfg.replay, "replay")
    check_not_asked(prompts, dataset, "replay")
    saved = _saved_config(cfg, data, model)
    check_out(out, saved, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "prepare_config.json", saved)
    save_config(cfg, out / "config.yaml")
    # how this world is evaluated (`dareu eval`, `compare`, the RL curves): TOFU's answers need longer generations
    (out / WORLD_EVAL).write_text(yaml.safe_dump({"max_new_tokens": cfg.eval_max_new_tokens}))
    start = time.time()
    timings: dict[str, float] = {}

    # 1. data
    data_names = [FULL_FILE, *TOFU_FILES.values()]
    data_key = stamp_key("tofu-data", "named-owners", "idk", _files_key(data, data_names), cfg.forget_split,
                         cfg.retain_authors, cfg.holdout_authors, cfg.qa_per_author)
    if is_valid(out / "data", data_key):
        say(f"data: reused {out / 'data'}")
    else:
        tmp = out / ".tmp-data"
        shutil.rmtree(tmp, ignore_errors=True)
        dataset.save_to_disk(str(tmp))
        publish(tmp, out / "data", data_key, splits={s: len(dataset[s]) for s in dataset})
        timings["data"] = time.time() - t
        say(f"data: {out / 'data'} (" + ", ".join(f"{s} {len(dataset[s])}" for s in dataset) + ")")

    # 2. base: the pretrained model as it is
    models = out / "models"
    models.mkdir(exist_ok=True)
    base_key = model_key(model)
    if is_valid(models / "base", base_key):
        say(f"base: reused {models / 'base'}")
    else:
        t = time.time()
        tmp = models / ".tmp-base"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(model, tmp, ignore=lambda _d, names: [n for n in names if n in _NOT_MODEL])
        publish(tmp, models / "base", base_key, source=str(model.resolve()))
        timings["base"] = time.time() - t
        say(f"base: copied {model} ({timings['base']:.1f}s)")

    # 3. replay: the base's own answers to general prompts, generated once
    replay_key, replay_dir = stamp_key(base_key, prompts, cfg.replay_max_new_tokens), out / "replay"
    if not prompts:
        replay_dir = None
    elif is_valid(replay_dir, replay_key):
        say(f"replay: reused {replay_dir}")
    else:
        t = time.time()
        pairs = base_answers(models / "base", prompts, cfg.replay_max_new_tokens, cfg.threads)
        tmp = out / ".tmp-replay"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        write_json(tmp / "replay.json", {"pairs": pairs})
        publish(tmp, replay_dir, replay_key, prompts=len(prompts), kept=len(pairs))
        timings["replay"] = time.time() - t
        say(f"replay: the base answered {len(pairs)} of {len(prompts)} general prompts ({timings['replay']:.0f}s)")

    # 4. target and retain models, `workers` at a time
    jobs = []
    for name, splits, seed in model_jobs(cfg):
        train = dict(to_dict(cfg.finetune), seed=seed)
        key = stamp_key(data_key, base_key, name, splits, train, cfg.optim, cfg.max_length,
                        *([replay_key] if replay_dir else []))
        if is_valid(models / name, key):
            say(f"{name}: reused")
            continue
        jobs.append({"data": str(out / "data"), "base": str(models / "base"), "out": str(models / name),
                     "splits": splits, "train": train, "key": key, "threads": cfg.threads, "cfg": to_dict(cfg),
                     "replay": str(replay_dir) if replay_dir else ""})
    if jobs:
        qa = {s: len(dataset[s]) for s in dataset}
        say(f"fine-tuning {', '.join(Path(j['out']).name for j in jobs)} ({cfg.workers} at a time; "
            + ", ".join(f"{Path(j['out']).name}: {sum(qa[s] for s in j['splits'])} QA" for j in jobs)
            + (f" + {len(read_json(replay_dir / 'replay.json')['pairs'])} replayed" if replay_dir else "")
            + f" x {cfg.finetune.epochs:g} epochs)")
        timings.update(run_jobs(_train_job, jobs, cfg.workers, say))

    # 5. the quality table (cached: it depends only on the models, the data and the eval settings)
    stamps = sorted(read_json(p)["key"] for p in models.glob(f"*/{STAMP}"))
    table_key = stamp_key(stamps, data_key, cfg.eval_max_qa, cfg.eval_max_new_tokens, cfg.min_target_rouge,
                     cfg.min_forget_gap, cfg.max_knowledge_drop)
    previous = read_json(out / "prepare.json") if (out / "prepare.json").is_file() else {}
    if previous.get("key") == table_key:
        table = previous
        say("quality table: reused")
    else:
        say("quality table: greedy ROUGE-L recall")
        table = quality_table(out, dataset, cfg, say)
        table["key"] = table_key
    table["seconds"] = {"total": time.time() - start, **timings}
    write_json(out / "prepare.json", table)
    return table
