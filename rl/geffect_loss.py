"""DareU's loss as the G-effect sees it (registered as the G-effect method `dareu`): the RL policy-gradient surrogate on a batch of rollouts plus the
learner's auxiliary terms (rl/learners.py `AuxTerms`).

At a measured step the current policy samples `num_generations` completions for each of a few forget
questions (rl/ppo_loop.py `sample`); the reward scores them; advantages are GRPO's (reward minus its
group mean, over the group std). The loss is the sum of four terms, each its own G-effect:

    policy      −mean_tokens[A · π/π_old]         (π_old = π detached: on-policy, so the clip never binds)
    kl          β · mean_tokens[k3(π_ref ‖ π)]     (TRL's GRPO estimator; 0 gradient at the start model)
    aux_forget  forget_coef · aux.forget objective (fact NPO by default) on the forget QA batch
    aux_retain  retain_coef · retain NLL (or KL) on the retain QA batch

Reward: with an attributor (`--attributor A`), the learner's own `AttributionReward` (1 − P(owner) plus the
configured parts). Without one, the fact-leakage indicator: 1 when the completion does not state the
question's fact, else 0 (DareU's fact-leakage metric), so the tool runs before an attributor exists.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import torch

from dareu.config import from_dict, to_dict
from dareu.geffect.methods import PROVIDERS

Reward = Callable[[list[dict], list[str]], np.ndarray]  # (forget rows, completions) -> rewards


def leakage_reward(rows: list[dict], texts: list[str]) -> np.ndarray:
    """1 − [the completion states the row's fact] (rows without a fact count as not leaking)."""
    from dareu.evaluation.metrics import fact_leaks

    return np.array([0.0 if fact_leaks(t, r.get("fact", "")) else 1.0 for r, t in zip(rows, texts)])


def attribution_reward(path: str, forget_owners: list[str], cfg, model=None, tok=None, rows=None) -> Reward:
    """The RL learner's attribution reward from an attributor folder (its plausibility term built from `model`)."""
    from attribution import load_attributor
    from rl.learners import AttributionReward

    attributor = load_attributor(path)
    reward = AttributionReward(attributor.score, attributor.owners, forget_owners, cfg)
    if model is not None:
        reward.use_plausibility(model, tok, rows)

    def score(rows: list[dict], texts: list[str]) -> np.ndarray:
        return np.asarray(reward(prompts=None, completions=texts, question=[r["question"] for r in rows],
                                 owner=[r["owner"] for r in rows]), dtype=float)

    return score


def group_advantages(rewards: torch.Tensor, group: int) -> torch.Tensor:
    """GRPO: (r − mean of its group) / (std of its group + 1e-4); a group of one gets r − batch mean."""
    if group < 2:
        return rewards - rewards.mean()
    r = rewards.view(-1, group)
    return ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-4)).reshape(-1)


def completion_logprobs(logits: torch.Tensor, input_ids: torch.Tensor, n_completion: int) -> torch.Tensor:
    """Log-probs of the last `n_completion` tokens, each predicted from its prefix (float32 or float64)."""
    logits = logits[:, -n_completion - 1:-1]
    logp = torch.log_softmax(logits if logits.dtype == torch.float64 else logits.float(), -1)
    return logp.gather(-1, input_ids[:, -n_completion:].unsqueeze(-1)).squeeze(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


class DareULoss:
    """The method `dareu`: policy surrogate + KL + auxiliary forget and retain terms."""

    name = "dareu"

    def __init__(self, cfg, tok, forget_rows: list[dict], ref, reward: Reward, reward_name: str):
        from dareu.objectives import OBJECTIVES

        self.cfg, self.tok, self.forget_rows, self.ref = cfg, tok, forget_rows, ref
        self.reward, self.reward_name = reward, reward_name
        aux = cfg.aux
        self.aux = None if aux.forget == "none" else OBJECTIVES.get(aux.forget)(**aux.forget_params)
        self.forget_ref = ref  # the aux forget term's reference; the world's base for one anchored there (set by the run)

    def term_names(self) -> list[str]:
        names = ["policy"]
        if self.cfg.beta:
            names.append("kl")
        if self.aux is not None and self.cfg.aux.forget_coef:
            names.append("aux_forget")
        if self.cfg.aux.retain != "none" and self.cfg.aux.retain_coef:
            names.append("aux_retain")
        return names

    @torch.no_grad()
    def prepare(self, model, batch: dict, seed: int) -> dict:
        """Sample rollouts from the current policy and attach them (with advantages) to the batch."""
        from dareu.modeling import prompt_text
        from rl.ppo_loop import sample

        cfg = self.cfg
        group = cfg.num_generations
        rows = random.Random(seed).sample(self.forget_rows, min(max(1, cfg.batch_size // group), len(self.forget_rows)))
        was_training = model.training
        input_ids, attention_mask, n_prompt, texts = sample(model, self.tok, [prompt_text(self.tok, r["question"])
                                                                              for r in rows], cfg, seed)
        model.train(was_training)
        rewards = torch.tensor(self.reward([r for r in rows for _ in range(group)], texts), dtype=torch.float64)
        n_completion = input_ids.shape[1] - n_prompt
        dtype = next(model.parameters()).dtype
        rollout = {"input_ids": input_ids, "attention_mask": attention_mask, "n_completion": n_completion,
                   "mask": attention_mask[:, n_prompt:].to(torch.float32),
                   "advantages": group_advantages(rewards, group).to(torch.float32), "reward": float(rewards.mean())}
        if cfg.beta:
            ref_logits = self.ref({"input_ids": input_ids, "attention_mask": attention_mask}).logits
            rollout["ref_logp"] = completion_logprobs(ref_logits, input_ids, n_completion)
        if dtype == torch.float64:  # keep the surrogate in the model's precision (the first-order checks)
            rollout["mask"], rollout["advantages"] = rollout["mask"].double(), rollout["advantages"].double()
        return {**batch, "rollout": rollout}

    def term_loss(self, model, batch: dict, name: str):
        from dareu.objectives import retain_loss

        cfg = self.cfg
        if name in ("policy", "kl"):
            ro = batch["rollout"]
            logits = model(input_ids=ro["input_ids"], attention_mask=ro["attention_mask"], use_cache=False).logits
            logp = completion_logprobs(logits, ro["input_ids"], ro["n_completion"])
            mask = ro["mask"]
            if name == "policy":
                ratio = torch.exp(logp - logp.detach())
                return -masked_mean(ro["advantages"][:, None] * ratio, mask), {"reward": ro["reward"]}
            delta = ro["ref_logp"] - logp
            kl = masked_mean(torch.exp(delta) - delta - 1, mask)
            return cfg.beta * kl, {"kl": float(kl.detach())}
        if name == "aux_forget":
            loss, metrics = self.aux.forget_loss(model, batch["forget"], ref=self.forget_ref)
            return cfg.aux.forget_coef * loss, metrics
        if name == "aux_retain":
            loss, metrics = retain_loss(model, batch["retain"], kind=cfg.aux.retain, ref=self.ref)
            return cfg.aux.retain_coef * loss, metrics
        raise KeyError(name)

    def loss(self, model, batch: dict):
        total, metrics = None, {}
        for name in self.term_names():
            loss, m = self.term_loss(model, batch, name)
            total = loss if total is None else total + loss
            metrics.update(m)
        return total, metrics

    def params(self) -> dict:
        return {**to_dict(self.cfg), "reward_source": self.reward_name}


@PROVIDERS.register("dareu")
class DareUProvider:
    """How `dareu g-effect --method dareu` loads, checks and builds DareU's loss."""

    takes_attributor = True

    @staticmethod
    def config(params: list[str]):
        from rl.launch import load_dareu_config

        return load_dareu_config(params)

    @staticmethod
    def forget_objective(cfg):
        """The auxiliary forget objective (an unknown parameter fails here), or None."""
        from dareu.objectives import OBJECTIVES

        if cfg.aux.forget == "none":
            return None
        return from_dict(OBJECTIVES.get(cfg.aux.forget), dict(cfg.aux.forget_params))

    @staticmethod
    def needs_templates(cfg) -> bool:
        """Whether the auxiliary forget objective trains towards template answers."""
        forget = DareUProvider.forget_objective(cfg)
        return forget is not None and forget.needs_templates

    @staticmethod
    def build(cfg, tok, rows: list[dict], ref, attributor: str | None, model) -> DareULoss:
        if attributor:
            reward = attribution_reward(attributor, sorted({r["owner"] for r in rows}), cfg, model, tok, rows)
            return DareULoss(cfg, tok, rows, ref, reward, "attributor")
        return DareULoss(cfg, tok, rows, ref, leakage_reward, "fact_leakage")
