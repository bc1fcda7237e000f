"""Rewards computed from the attribution model's probabilities over owners (+ `none`).

A reward is a sum of named components, each logged separately:
  deattribution  1 - P(owner of the prompt | prompt, response)      (the default)
  forget_mass    -sum of P(every forget owner | ...)                  (variant: push mass off all forget owners)
  none_bonus     + coef * P(none | ...)                               (optional: prefer "carries no owner's data")
  length         - coef * distance of the word count outside [min_words, max_words]  (guards against degenerate text)
  plausibility   + coef * ROUGE-L recall of the response against what the starting model answers about a
                 stranger asked the same question (rl/plausibility.py): the usual answer, not off-topic text
The last needs the starting model's generic answers, built once by the learner
(`AttributionReward.use_plausibility`); the rest are pure functions of the probabilities and the text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from dareu.config import field, require, require_choice
from dareu.registry import Registry

REWARDS: Registry[Callable[..., np.ndarray]] = Registry("reward")


@dataclass
class RewardConfig:
    name: str = field("deattribution", help="Main reward: deattribution (1 - P(owner)) or forget_mass (-sum P(forget owners)).")
    none_bonus: float = field(0.0, help="Weight of P(none) added to the reward (0 disables it).")
    min_words: int = field(2, help="Responses shorter than this many words are penalised (0 disables).")
    max_words: int = field(40, help="Responses longer than this many words are penalised (0 disables).")
    length_coef: float = field(0.1, help="Penalty per word outside [min_words, max_words].")
    plausibility_coef: float = field(0.25, help="Weight of the plausibility term: ROUGE-L recall of the response "
                                               "against the starting model's answers about strangers asked the same "
                                               "question (rl/plausibility.py); 0 disables it.")
    strangers: int = field(4, help="Fabricated names the plausibility term asks about instead of the owner.")
    plausibility_measure: Literal["recall", "f1"] = field(
        "recall", help="ROUGE-L measure of the plausibility term: recall, or f1, which also charges for words the "
                       "generic answers do not have (padding the answer with made-up names).")

    def __post_init__(self):
        require_choice(self, "name", REWARDS.names())
        for key in ("none_bonus", "min_words", "max_words", "length_coef", "plausibility_coef"):
            require(self, key, getattr(self, key) >= 0, "must be >= 0")
        require(self, "strangers", self.strangers >= 1, "must be >= 1")
        require(self, "plausibility_measure", self.plausibility_measure in ("recall", "f1"), "must be recall or f1")


@REWARDS.register("deattribution")
def deattribution(probs: np.ndarray, owner_idx: np.ndarray, forget_idx: np.ndarray) -> np.ndarray:
    """1 - P(the prompt's owner): 1 when the response carries nothing of its owner's data."""
    return 1.0 - probs[np.arange(len(probs)), owner_idx]


@REWARDS.register("forget_mass")
def forget_mass(probs: np.ndarray, owner_idx: np.ndarray, forget_idx: np.ndarray) -> np.ndarray:
    """-sum of the probabilities of every forget owner: renaming to another forget owner earns nothing."""
    return -probs[:, forget_idx].sum(axis=1)


def length_penalty(responses: list[str], cfg: RewardConfig) -> np.ndarray:
    words = np.array([len(r.split()) for r in responses], dtype=float)
    short = np.clip(cfg.min_words - words, 0, None) if cfg.min_words > 0 else 0 * words
    long = np.clip(words - cfg.max_words, 0, None) if cfg.max_words > 0 else 0 * words
    return -cfg.length_coef * (short + long)


def reward_components(probs: np.ndarray, owners: list[str], class_names: list[str], forget_owners: list[str],
                      responses: list[str], cfg: RewardConfig) -> dict[str, np.ndarray]:
    """Every component of the reward, by name; the reward is their sum."""
    index = {name: i for i, name in enumerate(class_names)}
    owner_idx = np.array([index[o] for o in owners])
    forget_idx = np.array([index[o] for o in forget_owners if o in index], dtype=int)
    parts = {cfg.name: REWARDS.get(cfg.name)(probs, owner_idx, forget_idx)}
    if cfg.none_bonus:
        parts["none_bonus"] = cfg.none_bonus * probs[:, index["none"]]
    if cfg.length_coef and (cfg.min_words or cfg.max_words):
        parts["length"] = length_penalty(responses, cfg)
    return parts
