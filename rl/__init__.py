"""RL de-attribution: rollouts, attribution rewards, GRPO/RLOO/PPO learners with auxiliary losses, on Ray."""
