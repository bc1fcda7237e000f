"""A removal request, checked and resolved before any job starts.

`resolve(body, store)` turns what a client posted into the request the Ray job runs (`request.json`): absolute
paths, the start model (the world's target, or the model of the request it follows), the owners removed earlier
in the chain. Everything that can be wrong is one `DareUError` naming the problem; `status` says which HTTP code
the server answers with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dareu.errors import DareUError

DEFAULT_ATTACKS = ["relearn", "quant4", "paraphrase", "prefix"]  # the cheap, telling ones; [] = none
REFERENCES = ("retrain",)


class RequestError(DareUError):
    """A request refused: `status` is the HTTP code (400 bad input, 404 unknown id, 409 conflicts with the chain)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class Body:
    """What a client posts (`POST /v1/requests`); the server's pydantic model mirrors these fields."""

    world: str = ""
    owners: list[str] = field(default_factory=list)
    method: str = "dareu"
    model: str | None = None
    attributor: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    follows: str | None = None
    reference: str = "retrain"
    attacks: list[str] | None = None
    utility_floor: float = 0.95


def unlearn_config(method: str, world: str, split: str, model: str, attributor: str, config: dict):
    """The run's typed config, as `dareu unlearn` builds it: the method's YAML <- `config` <- the request's inputs.
    An unknown key or a bad value is one line."""
    from dareu.commands.common import method_config
    from dareu.config import merge

    inputs = {"world": world, "split": split, "model": model} | ({"attributor": attributor} if method == "dareu" else {})
    return method_config(method, None, None, merge(dict(config), inputs))


def resolve(body: Body, store) -> dict:
    """The job's request.json for `body`, or a RequestError. `store` answers for earlier requests."""
    from dareu.attacks.run import check_attacks
    from dareu.data import check_world, load_world, world_data_key
    from dareu.modeling import check_model_path, load_tokenizer, resolve_model_dir
    from dareu.service.owners import check_owners

    # the world
    if not body.world:
        raise RequestError("world is missing: give the folder of a world made by `dareu prepare`")
    world = Path(body.world).expanduser().resolve()
    check_world(world)
    for need in ("models/target", "models/base", "prepare_config.json"):
        if not (world / need).exists():
            raise RequestError(f"world {world} has no {need}; a request needs a world built by `dareu prepare`")
    # the chain: the parent must exist, belong to the same world and not have failed
    removed: list[str] = []
    parent = None
    if body.follows:
        parent = store.get(body.follows)
        if parent is None:
            raise RequestError(f"follows {body.follows!r}: no such request", 404)
        if parent["state"] in ("failed", "cancelled"):
            raise RequestError(f"follows {body.follows!r}: that request {parent['state']}; follow one that is done "
                               "or still running", 409)
        if parent["request"]["world"] != str(world):
            raise RequestError(f"follows {body.follows!r}: it removed owners from {parent['request']['world']}, "
                               f"not {world}", 409)
        removed = [*parent["request"]["removed"], *parent["request"]["owners"]]
        if body.model:
            raise RequestError("give model or follows, not both: a request that follows another starts from its model")
    # the owners
    data = load_world(world)
    try:
        check_owners(data, list(body.owners), removed)
    except DareUError as err:
        raise RequestError(str(err), 409 if "already removed" in str(err) else 400) from None
    # the start model: the parent's output (checked when the parent ends), else a model that loads
    if parent is not None:
        model = str(Path(parent["folder"]) / "model")  # the model it delivers (dareu/service/job.py)
    else:
        model = str(Path(body.model).expanduser().resolve()) if body.model else str(world / "models" / "target")
        model = resolve_model_dir(model)
        check_model_path(model, "model")
        load_tokenizer(model)
    # the attributor: DareU's reward, and the receipt's attribution
    attributor = ""
    if body.attributor:
        from attribution.attributor import read_info
        from dareu.data import check_same_data

        attributor = str(Path(body.attributor).expanduser().resolve())
        info = read_info(attributor)  # its owners and data key, without loading its model
        check_same_data(info.get("benchmark", {}).get("data_key"), world, f"attributor {attributor}",
                        "train one on this world (`dareu train-attributor`)")
        missing = [o for o in body.owners if o not in set(info["owners"])]
        if missing:
            raise RequestError(f"attributor {attributor} has no class for owner {missing[0]!r}; train one on the "
                               "world's owners")
    elif body.method == "dareu":
        raise RequestError("method dareu needs an attributor (its reward): give attributor, a folder made by "
                           "`dareu train-attributor` on this world")
    # the method and its config: every key and value checked as `dareu unlearn` checks them
    unlearn_config(body.method, str(world), "forget-check", model, attributor, body.config)
    if not 0 < body.utility_floor <= 1:
        raise RequestError(f"utility_floor {body.utility_floor}: give a fraction of the original target's utility in "
                           "(0, 1]")
    if body.reference not in REFERENCES:
        raise RequestError(f"reference {body.reference!r}: choose one of {', '.join(REFERENCES)} (a retain model "
                           "trained without the removed owners)")
    attacks = DEFAULT_ATTACKS if body.attacks is None else list(body.attacks)
    if attacks:
        check_attacks(attacks)
    return {"world": str(world), "owners": list(body.owners), "removed": removed, "method": body.method,
            "model": model, "target": str(world / "models" / "target"), "attributor": attributor,
            "config": body.config, "follows": body.follows, "reference": body.reference, "attacks": attacks,
            "utility_floor": body.utility_floor,
            "data_key": world_data_key(world)}
