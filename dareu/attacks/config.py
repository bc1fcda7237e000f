"""The attack config: which attacks, how hard the relearning attacker trains, how the probes are built."""

from __future__ import annotations

from dataclasses import dataclass

from dareu.config import field, require

DEFAULT_ATTACKS = ["relearn", "relearn_retain", "quant8", "quant4", "paraphrase", "mc", "prefix", "icl"]


@dataclass
class RelearnConfig:
    steps: int = field(20, help="Optimizer steps the attacker fine-tunes for (a few: the attack is cheap).")
    batch_size: int = field(16, help="QA pairs per step.")
    learning_rate: float = field(3e-4, help="Constant AdamW learning rate. The default world's models were fine-tuned "
                                            "at 3e-3; for a pretrained LM (TOFU world) use about 1e-5 to 2e-5.")
    seed: int = field(0, help="Seed of the attacker's data order.")

    def __post_init__(self):
        require(self, "steps", self.steps >= 1, "must be >= 1")
        require(self, "batch_size", self.batch_size >= 1, "must be >= 1")
        require(self, "learning_rate", self.learning_rate > 0, "must be > 0")


@dataclass
class AttackConfig:
    relearn: RelearnConfig = field(default_factory=RelearnConfig, help="The relearning attacker.")
    attacks: list[str] = field(default_factory=lambda: list(DEFAULT_ATTACKS),
                               help="Attacks to run (see `dareu attack --help`); `none`, the model as it is, always "
                                    "runs as the baseline.")
    icl_examples: int = field(3, help="Other owners' QA shown as earlier chat turns by the `icl` probe.")
    prefix_words: float = field(0.34, help="Without a fact column: the share of the answer's words the `prefix` "
                                           "probe gives away (with one, everything before the fact).")
    min_gap: float = field(0.1, help="Recovery under an attack is reported only when the target leaks at least this "
                                     "much more than the retain model under it (else the attack measures nothing).")
    utility: bool = field(True, help="Also measure model utility after each model-changing attack (retain, real "
                                     "authors, world facts).")

    def __post_init__(self):
        require(self, "icl_examples", self.icl_examples >= 1, "must be >= 1")
        require(self, "prefix_words", 0 < self.prefix_words < 1, "must be in (0, 1)")
        require(self, "min_gap", 0 < self.min_gap < 1, "must be in (0, 1)")
