"""Benchmarks: the world's DatasetDict on disk, or TOFU from the hub, behind one loader.

A benchmark is a `datasets.DatasetDict` whose QA splits carry the columns of `world.QA_COLUMNS`.
"""

from __future__ import annotations

from pathlib import Path

from dareu.errors import DareUError
from dareu.registry import Registry

FORGET_SPLITS = ("forget01", "forget05", "forget10")
RETAIN_OF = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}
BENCHMARKS: Registry = Registry("benchmark")


def world_data_dir(world: str | Path) -> Path:
    """A world folder (made by `dareu prepare`) keeps its data in `data/`; accept either."""
    p = Path(world)
    return p / "data" if (p / "data" / "dataset_dict.json").exists() else p


@BENCHMARKS.register("world")
def load_world(path: str | Path):
    import datasets

    data_dir = world_data_dir(path)
    if not Path(path).exists():
        raise DareUError(f"world folder {path} does not exist; build it with `dareu prepare --out {path}`")
    if not (data_dir / "dataset_dict.json").is_file():
        raise DareUError(f"{path} holds no dataset (no dataset_dict.json); build it with `dareu prepare --out {path}`")
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


@BENCHMARKS.register("tofu")
def load_tofu(path: str | Path = "locuslab/TOFU"):
    """TOFU from the hub (or a local copy of the repository), mapped to our columns.

    TOFU has no `fact` column (fact leakage is then unavailable) and its owners are implicit:
    each author has 20 consecutive QA, so owner = "author-<row // 20>" within a split.
    """
    import datasets

    splits = {}
    for ours, config in _TOFU_CONFIGS.items():
        try:
            ds = datasets.load_dataset(str(path), config, split="train")
        except Exception as err:  # noqa: BLE001
            raise DareUError(f"could not load TOFU config {config!r} from {path} ({type(err).__name__}); with no "
                             "network, clone locuslab/TOFU elsewhere and pass --benchmark-path to the local copy") from None
        splits[ours] = ds.map(_tofu_row, with_indices=True, fn_kwargs={"split": ours})
    return datasets.DatasetDict(splits)


def _tofu_row(row: dict, idx: int, split: str) -> dict:
    perturbed = row.get("perturbed_answer") or []
    return {"qa_id": f"{split}/{idx}", "question": row["question"],
            "paraphrased_question": row.get("paraphrased_question", row["question"]),
            "answer": row["answer"], "paraphrased_answer": row.get("paraphrased_answer", row["answer"]),
            "perturbed_answers": perturbed if isinstance(perturbed, list) else [perturbed],
            "owner": f"author-{idx // 20}" if split not in ("real_authors", "world_facts") else "",
            "attribute": "", "fact": ""}


def load_benchmark(name_or_path: str):
    """'tofu' -> TOFU from the hub; anything else is a world folder."""
    if name_or_path in BENCHMARKS and name_or_path != "world":
        return BENCHMARKS.get(name_or_path)()
    return load_world(name_or_path)


def get_split(data, name: str):
    if name not in data:
        raise DareUError(f"split {name!r} is not in this benchmark; it has: {', '.join(sorted(data))}")
    return data[name]


def check_forget_split(name: str) -> str:
    """The retain split that pairs with a forget split (e.g. forget10 -> retain90)."""
    if name not in RETAIN_OF:
        raise DareUError(f"unknown forget split {name!r}; choose one of {', '.join(FORGET_SPLITS)}")
    return RETAIN_OF[name]
