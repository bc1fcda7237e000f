"""Benchmarks: the world's DatasetDict on disk, or TOFU from the hub, behind one loader.

A benchmark is a `datasets.DatasetDict` whose QA splits carry the columns of `world.QA_COLUMNS`.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from dareu.errors import DareUError
from dareu.registry import Registry

FORGET_SPLITS = ("forget01", "forget05", "forget10")
RETAIN_OF = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}
# A forget split cut from owner names (`dareu serve` writes them): forget-<tag> pairs with retain-<tag>.
OWNER_SPLIT = re.compile(r"^forget-([a-z0-9][a-z0-9_.-]*)$")
BENCHMARKS: Registry = Registry("benchmark")


def world_data_dir(world: str | Path) -> Path:
    """A world folder (made by `dareu prepare`) keeps its data in `data/`; accept either."""
    p = Path(world)
    return p / "data" if (p / "data" / "dataset_dict.json").exists() else p


def world_data_key(world: str | Path | None) -> str | None:
    """The key of the data a world was built from (its data folder's stamp), or None for a benchmark without one.
    Attributors, evaluations and reference logs record it, so a mismatch is refused instead of mixed in."""
    if world is None:
        return None
    stamp = Path(world) / "data" / "dareu_stamp.json"
    if not stamp.is_file():
        return None
    import json

    return json.loads(stamp.read_text()).get("key")


def split_key(data, split: str) -> str:
    """A hash of a split's content (owner, question, answer of every row): what reference logs were computed on."""
    import hashlib
    import json

    rows = get_split(data, split)
    text = json.dumps([list(rows[c]) for c in ("owner", "question", "answer")], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_same_data(recorded: str | None, world: str | Path | None, what: str, fix: str) -> None:
    """Refuse `what` (an attributor, a run, an evaluation) made from another build of the world's data."""
    current = world_data_key(world)
    if recorded and current and recorded != current:
        raise DareUError(f"{what} was made from other data than {world} (data key {recorded} vs {current}); {fix}")


def check_world(path: str | Path) -> Path:
    """The data folder of a world, checked without loading it (a cheap first check of any command)."""
    data_dir = world_data_dir(path)
    if not Path(path).exists():
        raise DareUError(f"world folder {path} does not exist; build it with `dareu prepare --out {path}`")
    if not (data_dir / "dataset_dict.json").is_file():
        raise DareUError(f"{path} holds no dataset (no dataset_dict.json); build it with `dareu prepare --out {path}`")
    return data_dir


@BENCHMARKS.register("world")
def load_world(path: str | Path):
    import datasets

    data_dir = check_world(path)
    try:
        return datasets.load_from_disk(str(data_dir))
    except Exception as err:  # noqa: BLE001 - any read failure means a damaged folder
        raise DareUError(f"dataset in {data_dir} is corrupt ({type(err).__name__}: {str(err).splitlines()[0][:120]}); "
                         f"rebuild it with `dareu prepare --out {path} --overwrite`") from None


# TOFU's hub configs for each of our split names; perturbed configs carry truth-ratio answers.
_TOFU_CONFIGS = {"forget01": "forget01_perturbed", "forget05": "forget05_perturbed",
                 "forget10": "forget10_perturbed", "retain99": "retain99", "retain95": "retain95",
                 "retain90": "retain_perturbed", "real_authors": "real_authors_perturbed",
                 "world_facts": "world_facts_perturbed", "holdout": "holdout10"}


TOFU_REPO = "locuslab/TOFU"
TOFU_FILES = {ours: f"{config}.json" for ours, config in _TOFU_CONFIGS.items()}  # the hub keeps one file a config
_TOFU_COPY = (f"a local copy of {TOFU_REPO} (the hub's layout: one JSON Lines file per config, e.g. "
              f"{TOFU_FILES['forget10']}, {TOFU_FILES['retain90']})")
_TOFU_FETCH = (f"download it where there is network (`hf download {TOFU_REPO} --repo-type dataset --local-dir DIR`) "
               "and pass --benchmark-path DIR, the local copy")


@BENCHMARKS.register("tofu")
def load_tofu(path: str | Path | None = None):
    """TOFU from a local copy of the hub repository (`path`), else from the local HF cache or the hub,
    mapped to our columns.

    TOFU has no `fact` column (fact leakage is then unavailable) and its owners are implicit: each author
    has 20 consecutive QA, numbered as in TOFU's `full` (forget splits are its last authors, the retain
    split its first), so one author has one owner name in every split; holdout authors are others.
    """
    import datasets

    folder = check_tofu_copy(path) if path is not None else _tofu_from_hub()
    splits = {}
    for ours, file in TOFU_FILES.items():
        rows = read_tofu_file(folder / file, ours)
        first = TOFU_AUTHORS - 2 * int(ours[-2:]) if ours.startswith("forget") else 0  # forget10: the last 20
        prefix = "holdout" if ours.startswith("holdout") else "author"
        splits[ours] = rows.map(tofu_row, with_indices=True,
                                fn_kwargs={"split": ours, "first": first, "prefix": prefix})
    return datasets.DatasetDict(splits)


def check_tofu_copy(path: str | Path) -> Path:
    """A local TOFU copy must exist and hold every config file the splits read (the missing one is named)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DareUError(f"TOFU copy {path} does not exist; pass {_TOFU_COPY}")
    for ours, file in TOFU_FILES.items():
        if not (folder / file).is_file():
            raise DareUError(f"TOFU copy {path} has no {file} (split {ours}); pass {_TOFU_COPY}")
    return folder


def _tofu_from_hub() -> Path:
    """The hub repository's files: from the local HF cache first, then (online only) the hub. One quick
    attempt, not the retry loop of datasets.load_dataset against an unreachable hub."""
    from huggingface_hub import constants, snapshot_download

    failed = f"could not load TOFU ({TOFU_REPO}) from the Hugging Face hub"
    files = list(TOFU_FILES.values())
    cached = _cached_tofu(files)
    if cached is not None:
        return cached
    if constants.HF_HUB_OFFLINE:
        raise DareUError(f"{failed}: it is not in the local cache and HF_HUB_OFFLINE=1 forbids downloading; "
                         f"{_TOFU_FETCH}")
    try:
        folder = Path(snapshot_download(TOFU_REPO, repo_type="dataset", allow_patterns=files))
    except Exception as err:  # noqa: BLE001 - unreachable hub, rate limit, ...: the same advice
        raise DareUError(f"{failed} ({type(err).__name__}); {_TOFU_FETCH}") from None
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:  # the hub's layout changed
        raise DareUError(f"{failed}: it has no {missing[0]}; {_TOFU_FETCH}")
    return folder


def _cached_tofu(files: list[str]) -> Path | None:
    """The snapshot of TOFU in the local HF cache when it holds every file we read, else None."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(TOFU_REPO, repo_type="dataset", allow_patterns=files, local_files_only=True))
    except LocalEntryNotFoundError:
        return None
    return folder if all((folder / f).is_file() for f in files) else None


def read_tofu_file(file: Path, split: str):
    import datasets

    try:
        return datasets.load_dataset("json", data_files=str(file), split="train")
    except Exception as err:  # noqa: BLE001 - a damaged file: say which
        raise DareUError(f"TOFU file {file} (split {split}) is not JSON Lines of QA rows "
                         f"({type(err).__name__}: {str(err).splitlines()[0][:120]})") from None


TOFU_AUTHORS = 200  # in TOFU's `full`, 20 QA each

# lowercase words that may sit inside a name ("Isabella van Pletzen")
_NAME_PARTICLES = {"van", "von", "de", "del", "della", "der", "den", "da", "di", "du", "dos", "das", "le", "la",
                   "bin", "ibn", "al", "el", "ben", "ter", "y"}
_WORD = re.compile(r"[^\W\d_][\w'’.-]*")


def _capitalised_runs(text: str):
    """Runs of capitalised words (with name particles inside), cut at punctuation and possessives."""
    run: list[str] = []
    end = 0
    for m in _WORD.finditer(text):
        word = re.sub(r"['’]s$", "", m.group()).rstrip(".,'’-")
        if run and not text[end:m.start()].isspace():
            yield run
            run = []
        if word[:1].isupper() or (run and word in _NAME_PARTICLES):
            run.append(word)
        elif run:
            yield run
            run = []
        end = m.end()
        if run and m.group().endswith(("'s", "’s", ",", ".")):
            yield run
            run = []
    if run:
        yield run


def owner_name(texts: list[str], min_share: float = 0.4) -> str | None:
    """An owner's name read from their own QA: the capitalised phrase of two or more words that the most of
    `texts` contain (the longest on a tie), if at least `min_share` of them do. TOFU numbers its authors; their
    names are only in the text ("Basil Mahfouz Al-Kuwaiti" in 19 of his 20 QA). None when no phrase is common
    enough (TOFU has one author, 88, who is never named)."""
    count: Counter = Counter()
    for text in texts:
        seen = set()
        for run in _capitalised_runs(text):
            for i in range(len(run)):
                for j in range(i + 2, len(run) + 1):
                    if run[i][:1].isupper() and run[j - 1][:1].isupper():
                        seen.add(" ".join(run[i:j]))
        count.update(seen)
    if not count:
        return None
    name, n = max(count.items(), key=lambda kv: (kv[1], len(kv[0].split()), len(kv[0])))
    return name if n >= min_share * len(texts) else None


def tofu_row(row: dict, idx: int, split: str, first: int = 0, prefix: str = "author") -> dict:
    perturbed = row.get("perturbed_answer") or []
    return {"qa_id": f"{split}/{idx}", "question": row["question"],
            "paraphrased_question": row.get("paraphrased_question", row["question"]),
            "answer": row["answer"], "paraphrased_answer": row.get("paraphrased_answer", row["answer"]),
            "perturbed_answers": perturbed if isinstance(perturbed, list) else [perturbed],
            "owner": f"{prefix}-{first + idx // 20}" if split not in ("real_authors", "world_facts") else "",
            "attribute": "", "fact": ""}


def check_benchmark(name_or_path: str, path: str | Path | None = None) -> None:
    """Cheap checks of a benchmark (does the folder exist?), before a model is checked or loaded."""
    if name_or_path == "tofu":
        if path is not None:
            check_tofu_copy(path)
        return
    if path is not None:
        raise DareUError(f"--benchmark-path {path} is {_TOFU_COPY}; it goes with --benchmark tofu")
    if name_or_path not in BENCHMARKS:
        check_world(name_or_path)


def load_benchmark(name_or_path: str, path: str | Path | None = None):
    """'tofu' -> TOFU (from `path`, a local copy, else the HF cache or the hub); anything else is a world folder."""
    check_benchmark(name_or_path, path)
    if name_or_path == "tofu":
        return load_tofu(path)
    if name_or_path in BENCHMARKS and name_or_path != "world":
        return BENCHMARKS.get(name_or_path)()
    return load_world(name_or_path)


def get_split(data, name: str):
    if name not in data:
        raise DareUError(f"split {name!r} is not in this benchmark; it has: {', '.join(sorted(data))}")
    return data[name]


def retain_of(name: str) -> str | None:
    """The retain split that pairs with a forget split (forget10 -> retain90, forget-x -> retain-x), or None."""
    if name in RETAIN_OF:
        return RETAIN_OF[name]
    m = OWNER_SPLIT.match(name)
    return f"retain-{m.group(1)}" if m else None


def check_forget_split(name: str) -> str:
    """The retain split that pairs with a forget split (e.g. forget10 -> retain90)."""
    retain = retain_of(name)
    if retain is None:
        raise DareUError(f"unknown forget split {name!r}; choose one of {', '.join(FORGET_SPLITS)} "
                         "(or forget-<tag>, a split cut from owner names)")
    return retain


def general_prompts(source: str, key: str) -> list[str]:
    """General prompts (no owner's data): `default` = the shipped configs/prepare/replay_prompts.txt, else a file
    of prompts (one a line, '#' comments); `none` = []. `key` names the config key in the one-line error."""
    if source == "none":
        return []
    from dareu.config import CONFIGS_DIR

    path = CONFIGS_DIR / "prepare" / "replay_prompts.txt" if source == "default" else Path(source)
    if not path.is_file():
        raise DareUError(f"config key {key!r}: {source} is not a file of prompts; give one (a prompt per line), "
                         "`default` or none")
    lines = [line.strip() for line in path.read_text().splitlines()]
    prompts = [line for line in lines if line and not line.startswith("#")]
    if not prompts:
        raise DareUError(f"config key {key!r}: {path} holds no prompts")
    return prompts


def check_not_asked(prompts: list[str], data, key: str) -> None:
    """General prompts keep what a model knew; none may be a question of the data (the evaluation's real_authors
    and world_facts above all), or training on it would game the evaluation."""
    asked = {q.strip().lower() for split in data.values() if "question" in split.column_names
             for q in split["question"]}
    clash = [p for p in prompts if p.strip().lower() in asked]
    if clash:
        raise DareUError(f"config key {key!r}: prompt {clash[0]!r} is a question of the data; general prompts must "
                         "not train on the evaluation's questions, drop it from the prompt file")
