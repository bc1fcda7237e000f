"""The DareU method config (`configs/methods/dareu.yaml`): learner, rollouts, reward, auxiliary terms, Ray."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dareu.config import field
from rl.placement import PlacementConfig
from rl.ppo import PPOConfig
from rl.rewards import RewardConfig


@dataclass
class AuxConfig:
    forget: str = field("npo", help="Likelihood-space forget term from the objectives registry (npo, flat, satimp, "
                                    "simnpo, ...) or 'none'. The reward alone changes what the model says, not what "
                                    "it knows (see the README); this term moves the likelihoods.")
    forget_params: dict[str, float] = field(default_factory=lambda: {"beta": 0.1},
                                            help="Parameters of the forget objective, e.g. {beta: 0.1}.")
    forget_coef: float = field(1.0, help="Weight of the forget term.")
    retain: Literal["nll", "kl", "none"] = field("nll", help="Retain term: NLL on retain QA, KL distillation from "
                                                              "the reference on retain QA, or none.")
    retain_coef: float = field(2.0, help="Weight of the retain term (KL to the reference alone does not keep utility).")
    batch_size: int = field(8, help="Forget and retain QA per auxiliary batch.")


@dataclass
class DareUConfig:
    learner: Literal["grpo", "rloo", "ppo"] = field("grpo", help="RL algorithm: TRL GRPO, TRL RLOO, or our PPO.")
    max_steps: int = field(200, help="Learner steps (one rollout batch each).")
    learning_rate: float = field(4e-4, help="Peak learning rate (constant for GRPO/RLOO, annealed for PPO).")
    batch_size: int = field(16, help="Completions per step; must be divisible by num_generations.")
    num_generations: int = field(8, help="Completions sampled per prompt (the GRPO/RLOO group size).")
    temperature: float = field(1.5, help="Rollout sampling temperature; a memorised target is near-deterministic "
                                         "at 1.0, so groups would share one reward.")
    max_completion_length: int = field(24, help="Longest sampled completion, in tokens.")
    rl_coef: float = field(1.0, help="Weight of the RL loss; 0 runs the same auxiliary terms without the reward "
                                     "(the ablation behind the README's 'What RL adds').")
    beta: float = field(0.05, help="KL coefficient to the reference (initial) model.")
    max_grad_norm: float = field(1.0, help="Gradient clipping norm.")
    reward: RewardConfig = field(default_factory=RewardConfig, help="The attribution reward.")
    aux: AuxConfig = field(default_factory=AuxConfig, help="Auxiliary supervised terms.")
    ppo: PPOConfig = field(default_factory=PPOConfig, help="PPO details (learner=ppo only).")
    rollout_backend: Literal["auto", "hf", "vllm"] = field("auto", help="vLLM when installed on a GPU, else HF generate.")
    lora: bool = field(False, help="Train LoRA adapters (peft) instead of all weights; the reference is the base "
                                   "with adapters disabled.")
    lora_r: int = field(8, help="LoRA rank.")
    eval_every: int = field(50, help="Steps between curve evaluations (forget quality, utility, fact leakage); 0 = off.")
    utility_floor: float = field(0.95, help="The best checkpoint must keep model utility >= this x the target's.")
    save_steps: int = field(50, help="Steps between checkpoints (resume picks the latest).")
    seed: int = field(0, help="Seed of sampling and batch order.")
    ray_address: str = field("", help="Ray cluster to join; empty = RAY_ADDRESS or an embedded local Ray.")
    scorer_restarts: int = field(3, help="Times the attribution scorer actor is restarted after a failure.")
    learner_cpus: int = field(1, help="CPUs of the Ray Train learner worker (on CPU machines).")
    placement: PlacementConfig = field(default_factory=PlacementConfig, help="Where each role runs and with what "
                                       "(rl/placement.py); the default keeps rollouts inside the learner.")
