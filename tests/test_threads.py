"""DareU picks torch's thread count itself: by the model's size and the cores other processes leave free,
unless a flag, a config key or the environment says otherwise."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from dareu import threads


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.setattr(threads, "_pinned", None)
    monkeypatch.setattr(threads, "_said", None)
    monkeypatch.delenv("DAREU_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_a_small_model_gets_one_thread_whatever_the_cores():
    choice = threads.choose(1_050_624)
    assert choice.threads == 1 and "1.1M-parameter" in choice.why


def test_a_large_model_gets_the_cores_others_leave_free():
    choice = threads.choose(134_515_008)
    assert 1 <= choice.threads <= threads.usable_cores() and "cores free" in choice.why


def test_a_busy_process_beside_us_is_seen_as_a_busy_core():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        assert threads.busy_elsewhere(0.5) >= 0.5
    finally:
        busy.kill()


def test_the_environment_and_the_flag_override_the_choice(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.choose(1_000).threads == 3                       # Ray's way of giving an actor its CPUs
    monkeypatch.setenv("DAREU_THREADS", "2")
    assert threads.choose(1_000) == threads.Choice(2, "DAREU_THREADS")
    threads.pin(1, "prepare's threads key")                          # a config key yields to the user
    assert torch.get_num_threads() == 2
    threads.pin(4, "--threads", user=True)                           # the flag wins
    assert threads.choose(1_000).threads == 4 and torch.get_num_threads() == 4


def test_loading_a_model_applies_the_choice_and_says_it_once(tiny_world, capsys):
    from dareu.modeling import load_model

    torch.set_num_threads(2)
    load_model(str(tiny_world / "models" / "target"))
    load_model(str(tiny_world / "models" / "base"))
    err = capsys.readouterr().err
    assert torch.get_num_threads() == 1
    assert err.count("[dareu] torch threads: 1 (") == 1


def test_threads_flag_below_one_is_one_line_before_any_work(tiny_world, capsys):
    from dareu.cli import main

    rc = main(["eval", "--world", str(tiny_world), "--model", str(tiny_world / "models" / "target"),
               "--threads", "0", "--out", str(tiny_world.parent / "never")])
    assert rc == 2 and "--threads 0: give a number of threads >= 1" in capsys.readouterr().err
    assert not (tiny_world.parent / "never").exists()
