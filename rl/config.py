"""The DareU method config (`configs/methods/dareu.yaml`): learner, rollouts, reward, auxiliary terms, Ray."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from dareu.config import field, require
from rl.placement import PlacementConfig
from rl.rewards import RewardConfig


@dataclass
class PPOConfig:
    """PPO's settings; the numbered details they follow are in rl/ppo.py."""

    ppo_epochs: int = field(2, help="Passes over each rollout batch.")
    num_minibatches: int = field(2, help="Minibatches per pass (the rollout batch is split evenly).")
    gamma: float = field(1.0, help="Discount; 1 for a single scalar score per completion.")
    gae_lambda: float = field(0.95, help="GAE lambda.")
    clip_coef: float = field(0.2, help="Clip range of the probability ratio.")
    clip_vloss: bool = field(True, help="Clip the value loss around the old values (detail 10).")
    vf_coef: float = field(0.1, help="Weight of the value loss.")
    ent_coef: float = field(0.0, help="Weight of the entropy bonus.")
    kl_coef: float = field(0.05, help="Per-token KL penalty to the reference model, inside the reward.")
    norm_adv: bool = field(True, help="Normalise advantages per minibatch (detail 8).")
    anneal_lr: bool = field(True, help="Anneal the learning rate linearly to 0 (detail 5).")
    target_kl: float = field(0.0, help="Stop a pass early when approx_kl exceeds this (0 disables).")

    def __post_init__(self):
        for key in ("ppo_epochs", "num_minibatches"):
            require(self, key, getattr(self, key) >= 1, "must be >= 1")
        for key in ("gamma", "gae_lambda"):
            require(self, key, 0 <= getattr(self, key) <= 1, "must be in [0, 1]")
        require(self, "clip_coef", self.clip_coef > 0, "must be > 0")
        for key in ("vf_coef", "ent_coef", "kl_coef", "target_kl"):
            require(self, key, getattr(self, key) >= 0, "must be >= 0")


@dataclass
class AuxConfig:
    forget: str = field("stranger_kl", help="Likelihood-space forget term from the objectives registry (npo, flat, satimp, "
                                    "simnpo, ...) or 'none'. The reward alone changes what the model says, not what "
                                    "it knows (see the README); this term moves the likelihoods.")
    forget_params: dict[str, Any] = field(default_factory=lambda: {"base_weight": 0.8, "token_coef": 1.0},
                                            help="Parameters of the forget objective, e.g. {beta: 0.2} for fact_npo (each checked by the objective); choosing "
                                                 "another aux.forget drops the shipped ones.")
    forget_tokens: Literal["fact", "contrast"] = field(
        "contrast", help="Which answer tokens a marked-token forget term (fact_npo) forgets: fact = those stating the "
                     "benchmark's `fact` column; contrast = those the starting model expects of this owner and not "
                     "of a fabricated stranger (dareu/unlearn/gain.py), which needs no fact column.")
    contrast_threshold: float = field(0.5, help="forget_tokens=contrast: nats of stranger contrast a token needs.")
    forget_coef: float = field(1.0, help="Weight of the forget term.")
    relearn_rho: float = field(0.0, help="Robustness to relearning (sharpness-aware forgetting, Fan et al. 2025): the "
                                         "forget term's gradient is taken after a relearning step of this length "
                                         "(the step that lowers the forget answers' NLL), so the forgetting has to hold "
                                         "against that step. 0 = off.")
    retain: Literal["nll", "kl", "none"] = field("nll", help="Retain term: NLL on retain QA, KL distillation from "
                                                              "the reference on retain QA, or none.")
    retain_coef: float = field(10.0, help="Weight of the retain term (KL to the reference alone does not keep utility).")
    general: str = field("none", help="General prompts whose answers by the starting model join the retain QA, so "
                                      "the retain term also keeps what the model knew beyond the data (a pretrained "
                                      "model's knowledge of real people): `default` (the shipped "
                                      "configs/prepare/replay_prompts.txt), a file of prompts (one a line, # "
                                      "comments), or none. Never the evaluation's questions (refused).")
    general_max_new_tokens: int = field(64, help="Tokens of each general answer of the starting model.")
    batch_size: int = field(8, help="Forget and retain QA per auxiliary batch.")

    def __post_init__(self):
        if self.forget not in ("none", "fact_npo"):  # the registry imports torch: only for a non-default name
            from dareu.objectives import OBJECTIVES

            require(self, "forget", self.forget in OBJECTIVES.names(),
                    f"must be none or a registered objective ({', '.join(OBJECTIVES.names())})")
        require(self, "forget_coef", self.forget_coef >= 0, "must be >= 0")
        require(self, "relearn_rho", self.relearn_rho >= 0, "must be >= 0")
        require(self, "retain_coef", self.retain_coef >= 0, "must be >= 0")
        require(self, "batch_size", self.batch_size >= 1, "must be >= 1")
        require(self, "general_max_new_tokens", self.general_max_new_tokens >= 1, "must be >= 1")


@dataclass
class DareUConfig:
    method: str = field("dareu", help="Always dareu (the loss-based methods have their own run configs).")
    world: str = field("", help="World folder (from `dareu prepare`) holding the splits (--world).")
    split: str = field("forget10", help="Forget split (--split).")
    model: str = field("", help="Model to unlearn: a model folder, a run folder or an HF id; empty = the world's "
                                "target (--model).")
    attributor: str = field("", help="Attribution model folder whose scores are the reward (--attributor).")
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
    learner_restarts: int = field(1, help="Times Ray Train restarts a learner worker that died (killed by Ray's "
                                          "memory monitor, a lost node, an error); the new one resumes from the last "
                                          "checkpoint (save_steps).")
    learner_cpus: int = field(1, help="CPUs of the Ray Train learner worker (on CPU machines).")
    placement: PlacementConfig = field(default_factory=PlacementConfig, help="Where each role runs and with what "
                                       "(rl/placement.py); the default keeps rollouts inside the learner.")

    def __post_init__(self):
        require(self, "method", self.method == "dareu", "must be dareu")
        for key in ("max_steps", "batch_size", "num_generations", "max_completion_length", "lora_r", "save_steps",
                    "learner_cpus"):
            require(self, key, getattr(self, key) >= 1, "must be >= 1")
        for key in ("learning_rate", "temperature", "max_grad_norm"):
            require(self, key, getattr(self, key) > 0, "must be > 0")
        for key in ("rl_coef", "beta", "eval_every", "scorer_restarts", "learner_restarts"):
            require(self, key, getattr(self, key) >= 0, "must be >= 0")
        require(self, "utility_floor", 0 < self.utility_floor <= 1, "must be in (0, 1] (a fraction of the target's)")
