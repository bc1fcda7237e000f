"""Forget splits cut from owner names, and the request world that holds one.

A removal request names owners, not a pre-made split. Its *request world* is a small folder beside the
request that the rest of DareU reads like any world:

    world/data                   the source world's splits + forget-<tag> (the owners' QA) and retain-<tag>
                                 (every other trained owner's QA, minus owners removed earlier in the chain)
    world/models/base, target    links to the source world's models (never copied, never written)
    world/models/retain-forget-<tag>   link to the retain reference trained without every removed owner
    world/eval.yaml              the source world's evaluation settings

The new splits are re-cuts of rows the source world already has, so the request world keeps the source's
data key: an attributor trained on the source world is valid here.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from dareu.data import FORGET_SPLITS, RETAIN_OF, load_world
from dareu.errors import DareUError
from dareu.runs import read_json, write_json

STAMP = "dareu_stamp.json"


def trained_rows(data) -> list[dict]:
    """Every QA the target was fine-tuned on: the rows of the world's forget and retain splits, once each."""
    seen, rows = set(), []
    for name in [*FORGET_SPLITS, *RETAIN_OF.values()]:
        if name not in data:
            continue
        for r in data[name]:
            key = (r["owner"], r["question"], r["answer"])
            if r["owner"] and key not in seen:
                seen.add(key)
                rows.append(r)
    return rows


def owners_of(data) -> list[str]:
    """The owners a request may name: those whose QA the target was trained on, in data order."""
    return list(dict.fromkeys(r["owner"] for r in trained_rows(data)))


def check_owners(data, owners: list[str], removed: list[str] = ()) -> None:
    """One line for an empty list, a repeated name, an owner the world does not have, or one already removed."""
    if not owners:
        raise DareUError("owners is empty: name at least one owner to remove")
    if len(set(owners)) != len(owners):
        raise DareUError(f"owners lists {min({o for o in owners if owners.count(o) > 1})!r} twice")
    known = set(owners_of(data))
    unknown = [o for o in owners if o not in known]
    if unknown:
        sample = ", ".join(list(known)[:3])
        raise DareUError(f"owner {unknown[0]!r} is not in this world (its trained owners are e.g. {sample}; "
                         "GET /v1/owners?world=... lists them)")
    again = [o for o in owners if o in removed]
    if again:
        raise DareUError(f"owner {again[0]!r} was already removed by an earlier request in this chain")


def owner_tag(owners: list[str]) -> str:
    """A short name for a set of owners (the split is forget-<tag>)."""
    return hashlib.sha256(json.dumps(sorted(owners)).encode()).hexdigest()[:10]


def owner_splits(data, owners: list[str], removed: list[str] = ()) -> tuple[list[dict], list[dict]]:
    """(forget rows, retain rows): the owners' QA, and the QA of every other trained owner not removed before."""
    mine, gone = set(owners), set(owners) | set(removed)
    rows = trained_rows(data)
    return [r for r in rows if r["owner"] in mine], [r for r in rows if r["owner"] not in gone]


def build_request_world(world: str | Path, owners: list[str], removed: list[str], out: str | Path) -> tuple[Path, str]:
    """Write (or reuse) the request world in `out`; returns (folder, forget split name)."""
    import datasets

    world, out = Path(world).resolve(), Path(out)
    tag = owner_tag(owners)
    split = f"forget-{tag}"
    stamp = out / "data" / STAMP
    key = {"source": str(world), "owners": sorted(owners), "removed": sorted(removed)}
    if stamp.is_file() and read_json(stamp).get("request") == key:
        return out, split
    data = load_world(world)
    check_owners(data, owners, removed)
    forget, retain = owner_splits(data, owners, removed)
    cut = datasets.DatasetDict({name: data[name] for name in data})
    features = next(data[n].features for n in [*FORGET_SPLITS, *RETAIN_OF.values()] if n in data)
    cut[split] = datasets.Dataset.from_list(forget, features=features)
    cut[f"retain-{tag}"] = datasets.Dataset.from_list(retain, features=features)
    tmp = out / ".tmp-data"
    shutil.rmtree(tmp, ignore_errors=True)
    cut.save_to_disk(str(tmp))
    source_stamp = world / "data" / STAMP
    source_key = read_json(source_stamp).get("key") if source_stamp.is_file() else None
    write_json(tmp / STAMP, {"key": source_key, "request": key})  # same rows, same data key (see module doc)
    shutil.rmtree(out / "data", ignore_errors=True)
    tmp.rename(out / "data")
    models = out / "models"
    models.mkdir(parents=True, exist_ok=True)
    for name in ("base", "target"):
        link = models / name
        if not link.exists() and (world / "models" / name).is_dir():
            link.symlink_to(world / "models" / name)
    if (world / "eval.yaml").is_file():
        shutil.copy(world / "eval.yaml", out / "eval.yaml")
    if not (out / "dareu-run.json").is_file():
        write_json(out / "dareu-run.json", {"kind": "world", "request": key})
    return out, split
