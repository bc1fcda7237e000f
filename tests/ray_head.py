"""A Ray head on loopback for tests (the product's LocalHead), started by the `head` fixture (conftest.py, once per
test module) and stopped at its end (only that head: other Ray instances on the machine are left alone)."""

from __future__ import annotations

from dareu.service.cluster import LocalHead, free_port, head_env

HEAD_CPUS = 4  # logical: learner 1 + two rollout workers of 0.5 + room for the scorer and the job drivers


def env() -> dict[str, str]:
    """The environment of processes the tests start: this venv's `dareu` first, Ray on loopback."""
    return head_env()


def start_head(cpus: int = HEAD_CPUS) -> LocalHead:
    return LocalHead.start(cpus)


__all__ = ["HEAD_CPUS", "env", "free_port", "start_head"]
