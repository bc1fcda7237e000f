"""What the G-effect differentiates: a method's loss split into named terms, and the NLL risk.

A method is anything with
    term_names() -> list[str]                       # the loss is the sum of these terms
    term_loss(model, batch, name) -> (loss, metrics)
    loss(model, batch) -> (loss, metrics)           # what one step of the run descends
    prepare(model, batch, seed) -> batch            # e.g. sample rollouts (DareU); identity for objectives
    params() -> dict
`batch` is a paired batch {"forget": ..., "retain": ...} from `dareu.unlearn.build_unlearn_data`.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import torch

from dareu.objectives import TEMPLATE_KEY, forward
from dareu.objectives.tokens import token_logprobs, token_mean
from dareu.registry import Registry


class MethodProvider(Protocol):
    """A method that is not a registered objective (DareU's RL loss, registered by rl/geffect_loss.py): how its
    parameters load, whether it needs template answers, and how its loss object is built."""

    takes_attributor: bool

    def config(self, params: list[str]): ...

    def needs_templates(self, cfg) -> bool: ...

    def forget_objective(self, cfg): ...  # the objective its forget term runs (None: no forget term)

    def build(self, cfg, tok, rows: list[dict], ref, attributor: str | None, model): ...


# name -> provider; the objectives registry covers every other method
PROVIDERS: Registry[MethodProvider] = Registry("G-effect method")


def risk(model, batch: dict) -> torch.Tensor:
    """R: mean NLL over the batch's answer tokens (HF's `outputs.loss`, the official code's metric)."""
    logp, mask = token_logprobs(forward(model, batch).logits, batch["labels"])
    return -token_mean(logp, mask)


def qa_only(batch: dict) -> dict:
    """A forget batch without its template sub-batch (the risk is on the forget answers themselves)."""
    return {k: v for k, v in batch.items() if k != TEMPLATE_KEY}


class ObjectiveMethod:
    """A registered objective: L = γ·forget + α·retain, exactly `obj.loss`."""

    def __init__(self, name: str, objective, ref=None):
        self.name, self.objective, self.ref = name, objective, ref

    def term_names(self) -> list[str]:
        return ["forget", "retain"] if self.objective.needs_retain else ["forget"]

    def term_loss(self, model, batch: dict, name: str):
        obj = self.objective
        if name == "forget":
            loss, metrics = obj.forget_loss(model, batch["forget"], ref=self.ref)
            return obj.gamma * loss, metrics
        if name == "retain":
            loss, metrics = obj.retain_term(model, batch["retain"], ref=self.ref)
            return obj.alpha * loss, metrics
        raise KeyError(name)

    def loss(self, model, batch: dict):
        return self.objective.loss(model, batch, self.ref)

    def prepare(self, model, batch: dict, seed: int) -> dict:
        return batch

    def params(self) -> dict:
        return dataclasses.asdict(self.objective)
