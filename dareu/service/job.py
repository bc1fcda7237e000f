"""What one removal request runs, as a Ray job: `python -m dareu.service.job REQUEST_FOLDER`.

Stages, each cached in the request folder so a killed or resubmitted job continues where it stopped:

    world      the request world: forget-<tag> = the owners' QA (dareu/service/owners.py)
    reference  the retain model trained without every removed owner (cached per owner set)
    before     `dareu eval` of the start model on the owners' QA
    target     the original target's model utility (a chain's utility is measured against it)
    unlearn    `dareu unlearn` (DareU or a baseline) from the start model; resumes from its checkpoint.
               The delivered model (`model`, a link): DareU's best checkpoint whose utility stays >=
               utility_floor x the original target's, else the final model
    after      `dareu eval` of the delivered model
    attacks    `dareu attack` of the unlearned model (recovery per owner), when the request asks for attacks
    receipt    receipt.json and receipt.md

progress.json says which stage runs; status.json says done or failed (with the reason).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from dareu.runs import get_status, read_json, running, set_status, write_json

STAGES = ["world", "reference", "before", "target", "unlearn", "after", "attacks", "receipt"]


class Progress:
    def __init__(self, folder: Path):
        self.path = folder / "progress.json"
        self.state = read_json(self.path) if self.path.is_file() else {"stages": STAGES, "done": []}

    def stage(self, name: str) -> None:
        if self.state.get("stage") and self.state["stage"] not in self.state["done"]:
            self.state["done"].append(self.state["stage"])
        self.state |= {"stage": name, "updated": time.time()}
        write_json(self.path, self.state)
        print(f"[request] {name}", flush=True)


def evaluated(model: str, world: Path, split: str, out: Path, attributor, metrics: list[str] | None = None) -> dict:
    """`dareu eval` of `model` into `out`, or its eval.json when an earlier attempt finished it."""
    from dareu.evaluation import run_eval
    from dareu.evaluation.runner import world_eval_config

    if (out / "eval.json").is_file():
        return read_json(out / "eval.json")
    cfg = world_eval_config(world, [f"metrics=[{','.join(metrics)}]"] if metrics else None)
    return run_eval(model, str(world), split, out, attributor, cfg=cfg, overwrite=True)


def unlearned(req: dict, world: Path, split: str, run_dir: Path, floor: float) -> Path:
    """The unlearning run (started, resumed from its last checkpoint, or already done); returns the model it
    delivers. DareU keeps its best checkpoint whose utility stays >= `floor` x the start model's (its
    utility_floor) beside the final model, and delivers that checkpoint when there is one."""
    from dareu.commands.common import train
    from dareu.service.spec import unlearn_config

    config = req["config"] | ({"utility_floor": floor} if req["method"] == "dareu" else {})
    if get_status(run_dir)["state"] != "done":
        cfg = unlearn_config(req["method"], str(world), split, req["model"], req["attributor"], config)
        resume = any((run_dir / "checkpoints").glob("checkpoint-*"))  # else nothing worth keeping
        train(cfg, run_dir, overwrite=run_dir.exists() and not resume, resume=resume)
    return run_dir / "best" if (run_dir / "best.json").is_file() else run_dir / "model"


def fulfil(folder: Path) -> dict:
    from attribution import load_attributor
    from dareu.data import get_split, load_world
    from dareu.evaluation.context import row_ids
    from dareu.service import receipt
    from dareu.service.owners import build_request_world
    from dareu.service.reference import ensure_reference

    req = read_json(folder / "request.json")
    progress = Progress(folder)
    progress.stage("world")
    world, split = build_request_world(req["world"], req["owners"], req["removed"], folder / "world")
    progress.stage("reference")
    ensure_reference(Path(req["world"]), world, split, [*req["removed"], *req["owners"]], Path(req["references"]))
    attributor = load_attributor(req["attributor"]) if req["attributor"] else None
    progress.stage("before")
    before = evaluated(req["model"], world, split, folder / "before", attributor)
    progress.stage("target")
    if Path(req["model"]).resolve() == Path(req["target"]).resolve():
        target_utility = before["model_utility"]["agg_value"]
    else:
        target_utility = evaluated(req["target"], world, split, folder / "target", None,
                                   ["model_utility"])["model_utility"]["agg_value"]
    progress.stage("unlearn")
    # a chain's utility floor is the original target's, not the start model's: it does not compound
    floor = min(1.0, req["utility_floor"] * target_utility / max(before["model_utility"]["agg_value"], 1e-9))
    model_dir = unlearned(req, world, split, folder / "run", floor)
    delivered = folder / "model"
    if not delivered.exists():
        delivered.symlink_to(model_dir.relative_to(folder))  # what a request that follows this one starts from
    progress.stage("after")
    final_eval = folder / "run" / "eval" / "eval.json"
    if model_dir.name == "model" and final_eval.is_file() and not (folder / "after" / "eval.json").is_file():
        shutil.copytree(final_eval.parent, folder / "after", dirs_exist_ok=True)  # DareU's own final eval
    after = evaluated(str(delivered), world, split, folder / "after", attributor)
    progress.stage("attacks")
    attacks = None
    if req["attacks"]:
        if (folder / "attacks.json").is_file():
            attacks = read_json(folder / "attacks.json")
        else:
            from dareu.attacks import AttackConfig
            from dareu.attacks.run import Attacker

            attacker = Attacker(str(world), split, AttackConfig(attacks=req["attacks"]), attributor)
            attacks = attacker.summary(str(delivered), folder / "attacks")
            write_json(folder / "attacks.json", attacks)
    progress.stage("receipt")
    rows = list(get_split(load_world(world), split))
    owner_of = dict(zip(row_ids(rows), (r["owner"] for r in rows), strict=True))
    reference = read_json(world / "eval" / f"retain-{split}" / "eval.json")
    result = receipt.build(req, owner_of, before, after, reference, target_utility, attacks, str(delivered),
                           read_json(folder / "run" / "best.json") if model_dir.name == "best" else None)
    write_json(folder / "receipt.json", result)
    (folder / "receipt.md").write_text(receipt.markdown(result))
    progress.stage("done")
    return result


def main(argv: list[str] | None = None) -> int:
    from dareu.cli import _environment
    from dareu.errors import DareUError

    _environment()
    folder = Path((argv if argv is not None else sys.argv[1:])[0])
    if get_status(folder)["state"] == "done":
        print(f"[request] {folder.name} is already done")
        return 0
    try:
        with running(folder):
            fulfil(folder)
    except DareUError as err:
        print(f"[request] error: {err}", file=sys.stderr)
        return 2
    set_status(folder, "done")
    shutil.rmtree(folder / "world" / ".tmp-data", ignore_errors=True)
    print(f"[request] done: {folder / 'receipt.md'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
