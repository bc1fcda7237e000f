"""PPO for de-attribution, every detail in one file (CleanRL's style).

TRL >= 1.13 no longer ships a PPO trainer, and the DareU paper's setting is PPO, so here it is.
Each iteration: sample completions for a batch of forget prompts, score them with the reward, then
run `ppo_epochs` passes of clipped-surrogate updates over minibatches. The numbered comments point
at "The 37 Implementation Details of PPO" (Huang et al., ICLR blog track 2022) where they apply;
the RLHF-specific choices follow the usual language-model PPO (per-token KL penalty to the reference
model, the scalar score on the last completion token, gamma = 1).

  (1)  value head: a linear layer on the policy's last hidden state (a shared trunk, as TRL's old
       value-head model); its output layer starts at zero so early values do not swamp the score
  (4)  Adam with eps 1e-5                       (5)  linear learning-rate annealing to 0
  (6)  GAE with lambda                          (7)  minibatch updates over shuffled samples
  (8)  advantages normalised per minibatch      (9)  clipped surrogate objective
  (10) value loss clipping                      (11) loss = policy - ent_coef * entropy + vf_coef * value
  (12) global gradient clipping                 (debug) approx_kl (k3 estimator) and clip fraction logged
  KL:  reward_t = -kl_coef * (logp_t - logp_ref_t); the score is added at the last completion token
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rl.config import PPOConfig


class ValueHead(torch.nn.Module):
    """(1) V(s_t) from the policy's last hidden state at each position."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.float()).squeeze(-1)


def forward_tokens(model, value_head: ValueHead | None, input_ids, attention_mask, n_completion: int):
    """Log-probs, entropies (and values) of the last `n_completion` tokens, each predicted from its prefix."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=value_head is not None)
    logits = out.logits[:, -n_completion - 1: -1].float()
    targets = input_ids[:, -n_completion:]
    logp_all = F.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    values = None
    if value_head is not None:
        values = value_head(out.hidden_states[-1][:, -n_completion - 1: -1])
    return logp, entropy, values


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """(6) Generalised advantage estimation over completion tokens (mask: 1 for real tokens).

    Positions after the last real token are terminal: their value and advantage are 0."""
    values = values * mask
    advantages = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0], device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        advantages[:, t] = last
    return advantages, advantages + values


def per_token_rewards(scores: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor,
                      kl_coef: float) -> torch.Tensor:
    """-kl_coef * (logp - logp_ref) on every token, plus the scalar score on the last real token."""
    rewards = -kl_coef * (logp - ref_logp) * mask
    last = mask.sum(1).long().clamp(min=1) - 1
    rewards[torch.arange(len(scores)), last] += scores
    return rewards


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


@dataclass
class Rollout:
    """One batch of sampled completions with everything the update needs."""

    input_ids: torch.Tensor       # prompt (left-padded) + completion (right-padded)
    attention_mask: torch.Tensor
    mask: torch.Tensor            # 1 on real completion tokens
    logp: torch.Tensor            # old policy log-probs of the completion tokens
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    scores: torch.Tensor
    n_completion: int


class PPO:
    """The learner. `sample(prompts) -> (input_ids, attention_mask, n_prompt)` and
    `score(completion_texts, batch_rows) -> (scores, metrics)` come from the launcher, so rollouts and
    rewards can be in-process or Ray actors. `aux_loss(model) -> (loss, metrics)` adds the forget/retain
    terms to every minibatch step."""

    def __init__(self, model, tok, ref_logps_fn: Callable, cfg: PPOConfig, learning_rate: float, total_iterations: int,
                 max_grad_norm: float = 1.0, aux_loss: Callable | None = None):
        self.model, self.tok, self.cfg = model, tok, cfg
        self.ref_logps_fn = ref_logps_fn
        self.aux_loss = aux_loss
        self.value_head = ValueHead(model.config.hidden_size).to(next(model.parameters()).device)
        params = [p for p in model.parameters() if p.requires_grad] + list(self.value_head.parameters())
        self.optimizer = torch.optim.Adam(params, lr=learning_rate, eps=1e-5)  # (4)
        self.learning_rate = learning_rate
        self.total_iterations = total_iterations
        self.max_grad_norm = max_grad_norm
        self.iteration = 0

    @torch.no_grad()
    def make_rollout(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, n_prompt: int,
                     scores: torch.Tensor) -> Rollout:
        n_completion = input_ids.shape[1] - n_prompt
        mask = attention_mask[:, n_prompt:].float()
        self.model.eval()
        logp, _, values = forward_tokens(self.model, self.value_head, input_ids, attention_mask, n_completion)
        ref_logp = self.ref_logps_fn(input_ids, attention_mask, n_completion)
        rewards = per_token_rewards(scores, logp, ref_logp, mask, self.cfg.kl_coef)
        advantages, returns = gae(rewards, values, mask, self.cfg.gamma, self.cfg.gae_lambda)
        return Rollout(input_ids, attention_mask, mask, logp, values, advantages, returns, scores, n_completion)

    def update(self, ro: Rollout) -> dict[str, float]:
        cfg = self.cfg
        if cfg.anneal_lr:  # (5)
            frac = 1.0 - self.iteration / max(1, self.total_iterations)
            for group in self.optimizer.param_groups:
                group["lr"] = frac * self.learning_rate
        self.model.train()
        n = ro.input_ids.shape[0]
        mb_size = max(1, math.ceil(n / cfg.num_minibatches))
        stats: dict[str, list[float]] = {}
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(n)  # (7)
            approx_kl = 0.0
            for start in range(0, n, mb_size):
                idx = order[start: start + mb_size]
                mask = ro.mask[idx]
                # the auxiliary terms first: relearn_rho > 0 moves the weights and back, and backpropagates its
                # part at once, which must happen before the policy's forward saves the weights for backward
                self.optimizer.zero_grad()
                aux, aux_metrics = self.aux_loss(self.model) if self.aux_loss is not None else (0.0, {})
                logp, entropy, values = forward_tokens(self.model, self.value_head, ro.input_ids[idx],
                                                       ro.attention_mask[idx], ro.n_completion)
                log_ratio = logp - ro.logp[idx]
                ratio = log_ratio.exp()
                with torch.no_grad():
                    approx_kl = masked_mean((ratio - 1) - log_ratio, mask).item()  # k3 estimator
                    clipfrac = masked_mean(((ratio - 1.0).abs() > cfg.clip_coef).float(), mask).item()
                adv = ro.advantages[idx]
                if cfg.norm_adv:  # (8)
                    mean, std = masked_mean(adv, mask), masked_mean((adv - masked_mean(adv, mask)) ** 2, mask).sqrt()
                    adv = (adv - mean) / (std + 1e-8)
                pg_loss = masked_mean(torch.max(-adv * ratio, -adv * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)),
                                      mask)  # (9)
                v_loss_unclipped = (values - ro.returns[idx]) ** 2
                if cfg.clip_vloss:  # (10)
                    v_clipped = ro.values[idx] + (values - ro.values[idx]).clamp(-cfg.clip_coef, cfg.clip_coef)
                    v_loss = 0.5 * masked_mean(torch.max(v_loss_unclipped, (v_clipped - ro.returns[idx]) ** 2), mask)
                else:
                    v_loss = 0.5 * masked_mean(v_loss_unclipped, mask)
                ent = masked_mean(entropy, mask)
                loss = pg_loss - cfg.ent_coef * ent + cfg.vf_coef * v_loss  # (11)
                loss = loss + aux
                loss.backward()
                params = [p for g in self.optimizer.param_groups for p in g["params"]]
                grad_norm = torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)  # (12)
                self.optimizer.step()
                for key, value in {"policy_loss": pg_loss.item(), "value_loss": v_loss.item(), "entropy": ent.item(),
                                   "approx_kl": approx_kl, "clipfrac": clipfrac, "grad_norm": float(grad_norm),
                                   **aux_metrics}.items():
                    stats.setdefault(key, []).append(value)
            if cfg.target_kl and approx_kl > cfg.target_kl:
                break
        self.iteration += 1
        out = {k: sum(v) / len(v) for k, v in stats.items()}
        with torch.no_grad():
            out["kl"] = masked_mean(ro.logp - self.ref_logps_fn(ro.input_ids, ro.attention_mask, ro.n_completion),
                                    ro.mask).item()
        out["score"] = ro.scores.mean().item()
        out["learning_rate"] = self.optimizer.param_groups[0]["lr"]
        out["time"] = time.time()
        return out

    def state_dict(self) -> dict:
        return {"value_head": self.value_head.state_dict(), "optimizer": self.optimizer.state_dict(),
                "iteration": self.iteration}

    def load_state_dict(self, state: dict) -> None:
        self.value_head.load_state_dict(state["value_head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.iteration = state["iteration"]
