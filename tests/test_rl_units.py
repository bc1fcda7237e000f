"""RL building blocks against hand-computed values: GAE, per-token KL rewards, PPO clipping, rewards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rl.ppo import gae, masked_mean, per_token_rewards
from rl.rewards import RewardConfig, reward_components


def test_gae_matches_hand_computation_and_stops_at_the_last_real_token():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 5.0]])
    values = torch.tensor([[0.5, 0.2, 0.4, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the 4th position is padding: terminal before it
    gamma, lam = 0.9, 0.8
    adv, ret = gae(rewards, values, mask, gamma, lam)
    d2 = 1.0 - 0.4                      # last real token: next value 0 (padding is terminal)
    d1 = 0.0 + gamma * 0.4 - 0.2
    d0 = 0.0 + gamma * 0.2 - 0.5
    a2 = d2
    a1 = d1 + gamma * lam * a2
    a0 = d0 + gamma * lam * a1
    assert adv[0, :3].tolist() == pytest.approx([a0, a1, a2])
    assert adv[0, 3].item() == 0.0
    assert ret[0, :3].tolist() == pytest.approx([a0 + 0.5, a1 + 0.2, a2 + 0.4])


def test_score_lands_on_the_last_real_token_and_kl_on_every_token():
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, -1.0]])
    ref = torch.tensor([[-1.5, -2.0, -1.0], [-1.0, -2.0, -1.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    r = per_token_rewards(torch.tensor([2.0, -1.0]), logp, ref, mask, kl_coef=0.1)
    assert r[0].tolist() == pytest.approx([-0.1 * 0.5, 0.0 + 2.0, 0.0])
    assert r[1].tolist() == pytest.approx([0.0, -0.1 * 1.0, -1.0])


def test_masked_mean_ignores_padding():
    assert masked_mean(torch.tensor([1.0, 3.0, 100.0]), torch.tensor([1.0, 1.0, 0.0])).item() == 2.0


def test_deattribution_reward_is_one_minus_owner_probability_with_named_parts():
    classes = ["A", "B", "C", "none"]
    probs = np.array([[0.7, 0.1, 0.1, 0.1], [0.05, 0.05, 0.1, 0.8]])
    cfg = RewardConfig(none_bonus=0.5, min_words=2, max_words=3, length_coef=0.1)
    parts = reward_components(probs, ["A", "A"], classes, ["A", "B"], ["two words", "one two three four five"], cfg)
    assert parts["deattribution"].tolist() == pytest.approx([0.3, 0.95])
    assert parts["none_bonus"].tolist() == pytest.approx([0.05, 0.4])
    assert parts["length"].tolist() == pytest.approx([0.0, -0.2])


def test_forget_mass_reward_counts_every_forget_owner():
    classes = ["A", "B", "C", "none"]
    probs = np.array([[0.1, 0.6, 0.2, 0.1]])
    cfg = RewardConfig(name="forget_mass", length_coef=0.0)
    parts = reward_components(probs, ["A"], classes, ["A", "B"], ["x y"], cfg)
    assert parts["forget_mass"].tolist() == pytest.approx([-0.7])  # renaming A -> B earns nothing
