"""The attack registry. Two kinds:

- `model` attacks change the weights (relearning, quantization); the changed model then gets the same
  evaluation as `dareu eval`, on the held-out half of the forget QA.
- `probe` attacks keep the weights and change the questions (paraphrases, multiple choice, answer prefixes,
  in-context examples); each gives one leak value per held-out QA.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from dareu.registry import Registry


@dataclass(frozen=True)
class Attack:
    name: str
    kind: Literal["model", "probe"]
    run: Callable  # model: (model, tok, AttackInputs) -> model;  probe: (model, tok, AttackInputs) -> [leak per row]
    help: str


@dataclass
class AttackInputs:
    """What an attack may use: the benchmark, the forget split, the attacker's half (`taught`: rows it may train
    on) and the held-out rows every attack is scored on."""

    data: object
    split: str
    retain_split: str
    taught: list[dict]
    held_out: list[dict]
    held_data: object  # the benchmark with the forget split cut to `held_out` (what model attacks are evaluated on)
    cfg: object  # AttackConfig
    eval_cfg: object  # EvalConfig (generation length, batch sizes)
    work_dir: str


ATTACKS: Registry[Attack] = Registry("attack")


def attack(name: str, kind: Literal["model", "probe"]):
    def add(fn):
        ATTACKS.register(name)(Attack(name, kind, fn, (fn.__doc__ or "").strip().splitlines()[0]))
        return fn

    return add
