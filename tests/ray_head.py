"""A Ray head on loopback for tests: the product's LocalHead, started by the `head` fixture (conftest.py, once per test
module) and stopped at its end (only that head: other Ray instances on the machine are left alone)."""

from __future__ import annotations

from dareu.ports import free_port
from dareu.service.cluster import head_env as env  # processes the tests start: this venv's dareu, Ray on loopback

HEAD_CPUS = 4  # logical: learner 1 + two rollout workers of 0.5 + room for the scorer and the job drivers

__all__ = ["HEAD_CPUS", "env", "free_port"]
