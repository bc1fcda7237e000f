"""DareU: unlearning by de-attribution (RL against an owner-attribution reward) and its baselines."""

__version__ = "0.1.0"
