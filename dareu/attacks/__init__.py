"""Does the forgetting survive an attacker? Relearning, weight quantization and probing attacks, and the
recovery each one gives back (see `run.py` for the stages, `recovery.py` for the number)."""

from dareu.attacks import model_attacks, probes  # noqa: F401 - registers the attacks
from dareu.attacks.config import AttackConfig, RelearnConfig
from dareu.attacks.recovery import recovery
from dareu.attacks.registry import ATTACKS
from dareu.attacks.run import run_attack

__all__ = ["ATTACKS", "AttackConfig", "RelearnConfig", "recovery", "run_attack"]
