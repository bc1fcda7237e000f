"""The retain reference of a request: the source world's base fine-tuned, with the world's own recipe, on every
trained owner's QA except the owners removed so far. Forget quality and attack recovery are measured against it.

Trained once per (world, removed owners, forget split) and cached in the store's `references/` folder, so a
request asked again, or resumed after a kill, reuses it; the request world links to it.
"""

from __future__ import annotations

import time
from pathlib import Path

from dareu.errors import DareUError
from dareu.runs import read_json


def recipe(world: Path) -> tuple[str, dict]:
    """(kind, saved prepare config) of the source world: how its own retain models were trained."""
    path = world / "prepare_config.json"
    if not path.is_file():
        raise DareUError(f"world {world} has no prepare_config.json: a retain reference is trained with the "
                         "world's own recipe; build the world with `dareu prepare`")
    saved = read_json(path)
    return ("tofu" if saved.get("benchmark") == "tofu" else "world"), saved


def ensure_reference(source: Path, request_world: Path, split: str, removed: list[str], cache: Path,
                     say=print) -> Path:
    """Train (or reuse) the retain reference of `split` and link it as request_world/models/retain-<split>."""
    from dareu.data import check_forget_split, world_data_key
    from dareu.prepare import STAMP, is_valid, stamp_key

    source, request_world = Path(source).resolve(), Path(request_world)
    retain_split = check_forget_split(split)
    kind, saved = recipe(source)
    train = dict(saved["finetune"])  # the recipe of the world's own retain-<split> (its first seed)
    key = stamp_key("request-reference", kind, world_data_key(source), sorted(removed), retain_split, train)
    out = Path(cache) / key
    if not is_valid(out, key):
        start = time.time()
        say(f"reference: fine-tuning {source.name}'s base without {len(removed)} removed owners")
        job = {"base": str(source / "models" / "base"), "out": str(out), "splits": [retain_split], "train": train,
               "key": key, "threads": saved.get("threads", 1)}
        out.parent.mkdir(parents=True, exist_ok=True)
        if kind == "tofu":
            from dareu.prepare_tofu import _train_job

            replay = source / "replay"
            _train_job(job | {"data": str(request_world / "data"), "cfg": {k: v for k, v in saved.items()
                                                                          if k not in ("benchmark", "data", "model")},
                              "replay": str(replay) if saved.get("replay") and (replay / STAMP).is_file() else ""})
        else:
            from dareu.prepare import _train_job

            _train_job(job | {"world": str(request_world)})
        say(f"reference: done ({time.time() - start:.0f}s)")
    link = request_world / "models" / f"retain-{split}"
    if not link.exists():
        link.symlink_to(out.resolve())
    return link
