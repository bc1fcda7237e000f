"""Rollout workers: Ray actors that sample completions for the learner. One interface, two backends.

    worker = RolloutWorker(model_dir, backend="auto")   # HF generate (CPU or GPU), or vLLM on a GPU
    worker.generate(prompts, n, temperature, max_new_tokens, seed, version, [weights]) -> completion token ids
    pool = RolloutPool(workers); pool.push(model); pool.sample(tok, prompts, cfg, seed)  # = ppo_loop.sample

Weight sync after every learner update (`pool.push(model)`):
  CPU path (hf backend): the learner's state dict goes through Ray's object store: `ray.put` once, as
      numpy arrays (zero-copy reads on every node that holds the object), and every worker loads that one
      object. Run and tested here (tests/test_cluster.py, benchmarks/ray_scaling.py).
  GPU path (vllm backend): an NCCL broadcast from learner rank 0 to every engine, vLLM's RLHF pattern (as
      OpenRLHF does it): a StatelessProcessGroup + PyNcclCommunicator spans the learner and the engines;
      per tensor the engines allocate, receive and `load_weights`. The engines must sit on other GPUs than
      the learner (NCCL cannot pair two ranks on one device).
      NOT RUN HERE: it was written on a machine without a GPU and without vLLM; treat it as untested.
      The alternative for TRL's GRPO/RLOO is TRL's own vLLM server mode (`trl vllm-serve` on the rollout
      GPUs, `vllm_mode="server"` in the trainer), which pushes weights the same way.

Fault tolerance: workers restart (`max_restarts`) and their calls are retried (`max_task_retries`). A
restarted worker starts from the model on disk, so every `generate` names the weight version it must
sample with and carries a reference to those weights: a worker that is behind loads them first. A
restart costs a reload, never a step sampled with stale weights. (GPU path: the pool notices a
restarted engine at the next push and rebuilds the NCCL group; a restart between a push and that
step's sampling samples the step with the weights on disk.)
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from pathlib import Path

import numpy as np
import torch

from dareu.generation import left_padded


def worker_name(run_dir: str | Path, index: int) -> str:
    """Rollout actors are named after the run folder: the learner finds them from its checkpoint folder."""
    digest = hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:10]
    return f"dareu-rollout-{digest}-{index}"


def policy_state(model) -> dict[str, torch.Tensor]:
    """The policy's weights under their plain (non-PEFT) names, detached."""
    if hasattr(model, "peft_config"):  # merged LoRA weights, as the worker's plain model expects them
        model.merge_adapter()
        try:
            return {k.removeprefix("base_model.model.").replace(".base_layer.", "."): v.detach().clone()
                    for k, v in model.state_dict().items() if "lora_" not in k}
        finally:
            model.unmerge_adapter()
    return {k: v.detach() for k, v in model.state_dict().items()}


def encode(state: dict[str, torch.Tensor]) -> dict[str, tuple[str, np.ndarray]]:
    """CPU numpy arrays (Ray stores them zero-copy); bf16 travels as int16 bits since numpy has no bf16."""
    out = {}
    for name, t in state.items():
        t = t.detach().cpu().contiguous()
        dtype = str(t.dtype).removeprefix("torch.")
        out[name] = (dtype, (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy())
    return out


def decode(arrays: dict[str, tuple[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    import warnings

    with warnings.catch_warnings():  # object-store arrays are read-only; load_state_dict copies them anyway
        warnings.simplefilter("ignore", UserWarning)
        return {name: torch.from_numpy(a).view(getattr(torch, dtype)) if dtype == "bfloat16" else torch.from_numpy(a)
                for name, (dtype, a) in arrays.items()}


def cut_after_eos(ids: list[int], eos: int) -> list[int]:
    """Completion tokens up to and including the first eos (HF pads finished rows after it)."""
    if eos in ids:
        return ids[: ids.index(eos) + 1]
    return ids


class RolloutWorker:
    """Holds one copy of the policy and samples from it. `backend`: hf, vllm, or auto (vLLM when it is
    installed and this actor has a GPU)."""

    def __init__(self, model_dir: str, backend: str = "auto", threads: int = 1, gpu_memory_utilization: float = 0.5,
                 seed: int = 0):
        from dareu import threads as thread_choice
        from dareu.generation import vllm_available
        from dareu.modeling import load_tokenizer

        thread_choice.pin(max(1, threads), "the rollout worker's CPUs")
        if backend == "vllm" and not vllm_available():
            raise RuntimeError("rollout_backend=vllm but this worker has no GPU or no vllm (pip install 'dareu[vllm]')")
        self.backend = "vllm" if backend == "vllm" or (backend == "auto" and vllm_available()) else "hf"
        self.tok = load_tokenizer(model_dir)
        self.version = "disk"  # the id of the weights it holds
        self.incarnation = uuid.uuid4().hex  # changes on every restart (the GPU path re-joins its NCCL group)
        if self.backend == "vllm":
            from vllm import LLM

            self.engine = LLM(model=model_dir, seed=seed, gpu_memory_utilization=gpu_memory_utilization,
                              worker_extension_cls="rl.rollout.VLLMWeightReceiver")
        else:
            from dareu.modeling import device, load_model

            self.model = load_model(model_dir).to(device()).eval()

    def info(self) -> dict:
        return {"backend": self.backend, "version": self.version, "incarnation": self.incarnation,
                "pid": os.getpid()}

    def pid(self) -> int:
        return os.getpid()

    # -- CPU path (hf backend): weights from the object store
    def load(self, version: str, weights: list) -> float:
        """Load the weights in `weights[0]` (an ObjectRef, wrapped so Ray does not resolve it for us)."""
        import ray

        start = time.perf_counter()
        if version != self.version:
            self.model.load_state_dict(decode(ray.get(weights[0])))
            self.version = version
        return time.perf_counter() - start

    # -- GPU path: weights broadcast over NCCL (not run here, see the module docstring)
    def join_weight_group(self, host: str, port: int, rank: int, world_size: int) -> None:
        self.engine.collective_rpc("join_weight_group", args=(host, port, rank, world_size))

    def receive(self, version: str, specs: list[tuple[str, str, tuple[int, ...]]]) -> None:
        self.engine.collective_rpc("receive", args=(specs,))
        self.engine.reset_prefix_cache()
        self.version = version

    @torch.no_grad()
    def generate(self, prompts: list[str], n: int, temperature: float, max_new_tokens: int, seed: int,
                 version: str = "disk", weights: list | None = None) -> list[list[int]]:
        """`n` completions per prompt (prompt-major) as token ids, each cut after its first eos."""
        if version != self.version and weights and self.backend == "hf":
            self.load(version, weights)  # restarted or behind: catch up before sampling
        eos, pad = self.tok.eos_token_id, self.tok.pad_token_id
        if self.backend == "vllm":
            from vllm import SamplingParams

            ids = [self.tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
            params = SamplingParams(n=n, temperature=temperature, top_p=1.0, max_tokens=max_new_tokens, seed=seed)
            results = self.engine.generate([{"prompt_token_ids": i} for i in ids], params, use_tqdm=False)
            return [cut_after_eos(list(o.token_ids), eos) for r in results for o in r.outputs]
        torch.manual_seed(seed)
        enc = left_padded(self.tok, prompts, next(self.model.parameters()).device)
        out = self.model.generate(**enc, do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                                  max_new_tokens=max_new_tokens, num_return_sequences=n, pad_token_id=pad,
                                  eos_token_id=eos)
        return [cut_after_eos(row, eos) for row in out[:, enc["input_ids"].shape[1]:].tolist()]


class VLLMWeightReceiver:
    """vLLM worker extension (`worker_extension_cls`): the engine's side of the weight push.
    NOT RUN HERE (no GPU on the machine this was written on)."""

    def join_weight_group(self, host: str, port: int, rank_offset: int, world_size: int) -> None:
        from vllm.distributed.device_communicators.pynccl import PyNcclCommunicator
        from vllm.distributed.parallel_state import get_world_group
        from vllm.distributed.utils import StatelessProcessGroup

        group = StatelessProcessGroup.create(host=host, port=port, rank=get_world_group().rank + rank_offset,
                                             world_size=world_size)
        self.weight_group = PyNcclCommunicator(group, device=self.device)

    def receive(self, specs: list[tuple[str, str, tuple[int, ...]]]) -> None:
        for name, dtype, shape in specs:  # the learner broadcasts in this same order
            weight = torch.empty(shape, dtype=getattr(torch, dtype), device="cuda")
            self.weight_group.broadcast(weight, src=0, stream=torch.cuda.current_stream())
            self.model_runner.model.load_weights(weights=[(name, weight)])
            del weight


class RolloutPool:
    """The learner's view of its rollout workers: push weights, sample a batch split across workers."""

    def __init__(self, workers: list):
        import ray

        self.workers = workers
        self.version = "disk"  # a fresh id per push: workers compare ids, so pools never confuse versions
        self.weights = None  # ObjectRef of the latest pushed weights (kept alive while workers may need it)
        self.backend = ray.get(workers[0].info.remote())["backend"]
        self.nccl = None  # (communicator, incarnations it was built with); GPU path only
        self.push_seconds: list[float] = []

    @classmethod
    def connect(cls, run_dir: str | Path, count: int) -> RolloutPool:
        import ray

        return cls([ray.get_actor(worker_name(run_dir, i)) for i in range(count)])

    def push(self, model) -> float:
        """Send the learner's current weights to every worker; returns the seconds it took."""
        import ray

        start = time.perf_counter()
        self.version = uuid.uuid4().hex
        if self.backend == "vllm":
            self._broadcast(model)
        else:
            self.weights = ray.put(encode(policy_state(model)))  # once, whatever the number of workers
            ray.get([w.load.remote(self.version, [self.weights]) for w in self.workers])
        self.push_seconds.append(time.perf_counter() - start)
        return self.push_seconds[-1]

    def _broadcast(self, model) -> None:
        """GPU path: NCCL broadcast from this process (learner rank 0). NOT RUN HERE."""
        import ray

        incarnations = [i["incarnation"] for i in ray.get([w.info.remote() for w in self.workers])]
        if self.nccl is None or self.nccl[1] != incarnations:  # first push, or a worker restarted: (re)build
            import socket

            from vllm.distributed.device_communicators.pynccl import PyNcclCommunicator
            from vllm.distributed.utils import StatelessProcessGroup

            with socket.socket() as s:  # a free port on this node for the group's rendezvous
                s.bind(("", 0))
                port = s.getsockname()[1]
            host, world = ray.util.get_node_ip_address(), len(self.workers) + 1
            joined = [w.join_weight_group.remote(host, port, 1 + i, world) for i, w in enumerate(self.workers)]
            group = StatelessProcessGroup.create(host=host, port=port, rank=0, world_size=world)
            self.nccl = (PyNcclCommunicator(group, device=torch.cuda.current_device()), incarnations)
            ray.get(joined)
        state = policy_state(model)
        specs = [(name, str(t.dtype).removeprefix("torch."), tuple(t.shape)) for name, t in state.items()]
        received = [w.receive.remote(self.version, specs) for w in self.workers]
        for t in state.values():
            self.nccl[0].broadcast(t.contiguous(), src=0, stream=torch.cuda.current_stream())
        torch.cuda.synchronize()
        ray.get(received)

    def generate(self, prompts: list[str], n: int, temperature: float, max_new_tokens: int,
                 seed: int) -> list[list[int]]:
        """Prompts split into contiguous chunks, one per worker (a prompt's n samples stay on one worker)."""
        import ray

        k = min(len(self.workers), len(prompts))
        bounds = np.linspace(0, len(prompts), k + 1).round().astype(int)
        weights = [self.weights] if self.weights is not None else None
        calls = [w.generate.remote(prompts[a:b], n, temperature, max_new_tokens, seed + 1_000_003 * i,
                                   self.version, weights)
                 for i, (w, a, b) in enumerate(zip(self.workers, bounds[:-1], bounds[1:]))]
        return [ids for chunk in ray.get(calls) for ids in chunk]

    def sample(self, tok, prompts: list[str], cfg, seed: int, device=None):
        """The same tensors as `rl.ppo_loop.sample`: (input_ids, attention_mask, n_prompt, texts)."""
        completions = self.generate(prompts, cfg.num_generations, cfg.temperature, cfg.max_completion_length, seed)
        return assemble(tok, prompts, completions, cfg.num_generations, device)


def assemble(tok, prompts: list[str], completions: list[list[int]], n: int, device=None):
    """Left-padded prompts + right-padded completions (mask 0 after the first eos), as `ppo_loop.sample`."""
    enc = left_padded(tok, prompts)
    width = max(1, max(len(c) for c in completions))
    completion = torch.full((len(completions), width), tok.pad_token_id, dtype=torch.long)
    comp_mask = torch.zeros((len(completions), width), dtype=torch.long)
    for i, ids in enumerate(completions):
        completion[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        comp_mask[i, : len(ids)] = 1
    input_ids = torch.cat([enc["input_ids"].repeat_interleave(n, dim=0), completion], dim=1)
    attention_mask = torch.cat([enc["attention_mask"].repeat_interleave(n, dim=0), comp_mask], dim=1)
    texts = [t.strip() for t in tok.batch_decode(completion, skip_special_tokens=True)]
    if device is not None:
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    return input_ids, attention_mask, enc["input_ids"].shape[1], texts


def start_workers(plan, run_dir: str | Path, model_dir: str, cfg) -> list:
    """The rollout actors of a run, each pinned to its bundle of the placement plan."""
    role = cfg.placement.rollout
    threads = max(1, int(role.num_cpus))
    # an engine sharing a GPU must stay inside its fraction of the device memory
    memory = min(0.9, 0.9 * role.num_gpus) if role.num_gpus else 0.5
    return [plan.start("rollout", RolloutWorker, model_dir, cfg.rollout_backend, threads, memory, cfg.seed,
                       index=i, name=worker_name(run_dir, i), restarts=cfg.placement.rollout_restarts)
            for i in range(role.count)]
