"""Shared fixtures: a tiny world built once per session, and a guard that no test reaches the network."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[var] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

# Tiny models gain nothing from a second thread, and under load OpenMP spin-waits cost a lot.
import torch

torch.set_num_threads(1)

_connect = socket.socket.connect


def _loopback_only(self, address):
    """Tests never download: any connection off this machine fails loudly (unix sockets pass)."""
    if isinstance(address, tuple):
        try:
            try:
                ip = ipaddress.ip_address(address[0])
            except ValueError:
                ip = ipaddress.ip_address(socket.gethostbyname(address[0]))
        except (socket.gaierror, ValueError, UnicodeError):
            raise OSError(f"test tried to resolve {address[0]!r}; tests must stay offline") from None
        if not ip.is_loopback:
            raise OSError(f"test tried to reach {address}; tests must stay offline")
    return _connect(self, address)


socket.socket.connect = _loopback_only


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """`dareu prepare` on configs/prepare/tiny.yaml: data, base, target, retain-forget10 (+ seed2)."""
    from dareu.config import load_config
    from dareu.prepare import PrepareConfig, prepare

    out = tmp_path_factory.mktemp("world") / "w"
    cfg = load_config(PrepareConfig, CONFIGS / "prepare" / "tiny.yaml")
    prepare(cfg, out)
    return out


@pytest.fixture(scope="session")
def tiny_data(tiny_world):
    from dareu.data import load_world

    return load_world(tiny_world)


@pytest.fixture(scope="session")
def tiny_attributor(tiny_world, tmp_path_factory) -> Path:
    """A TF-IDF attributor of the tiny world's owners (the RL reward's scorer)."""
    from dareu.cli import main

    out = tmp_path_factory.mktemp("attributor") / "tfidf"
    assert main(["train-attributor", "--world", str(tiny_world), "--kind", "tfidf", "--out", str(out)]) in (0, 1)
    return out


@pytest.fixture(scope="module")
def head():
    """A Ray head on loopback for the module's tests (tests/ray_head.py); stopped at the module's end."""
    from dareu.service.cluster import LocalHead
    from tests.ray_head import HEAD_CPUS

    h = LocalHead.start(HEAD_CPUS)
    yield h
    h.stop()
