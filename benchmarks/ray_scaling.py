"""Ray on one machine: rollout throughput with 1 and 2 rollout workers (and their ratio), the weight push
per learner step, and Ray's start-up overhead; on a GPU with vLLM installed, vLLM against HF generate.

    .venv/bin/python benchmarks/ray_scaling.py --world W [--prompts 64] [--samples 8] [--tokens 24] \
        [--repeats 3] [--out runs/bench/ray_scaling.json]

The model is the world's target model (`dareu prepare --out W`). Workers are rl/rollout.py's
RolloutWorker actors (HF generate, one thread, one Ray CPU each), fed through RolloutPool exactly as the
PPO learner feeds them; "in-process" is the same sampling without Ray. Throughput counts generated tokens
(up to and including eos). The best of `--repeats` runs counts: a shared CPU only ever slows a run down.
Prints a table and writes JSON (with the machine's load average, which explains most of the noise).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def best_rate(fn, repeats: int) -> tuple[float, float]:
    """(tokens per second, seconds) of the fastest of `repeats` calls of fn() -> tokens."""
    best_s, tokens = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        tokens = fn()
        best_s = min(best_s, time.perf_counter() - start)
    return tokens / best_s, best_s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", default="runs/world")
    p.add_argument("--prompts", type=int, default=64, help="forget questions per rollout batch")
    p.add_argument("--samples", type=int, default=8, help="completions per prompt")
    p.add_argument("--tokens", type=int, default=24, help="max new tokens per completion")
    p.add_argument("--temperature", type=float, default=1.5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="runs/bench/ray_scaling.json")
    args = p.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    import torch

    torch.set_num_threads(1)
    from dareu.data import load_world
    from dareu.modeling import load_model, load_tokenizer, prompt_text
    from rl.rollout import RolloutPool, RolloutWorker

    model_dir = str(Path(args.world) / "models" / "target")
    tok = load_tokenizer(model_dir)
    model = load_model(model_dir, dtype=torch.float32)
    rows = list(load_world(args.world)["forget10"])
    prompts = [prompt_text(tok, r["question"]) for r in (rows * (args.prompts // len(rows) + 1))[: args.prompts]]
    n, new, temp = args.samples, args.tokens, args.temperature
    result: dict = {"prompts": len(prompts), "samples": n, "max_new_tokens": new, "cpus": os.cpu_count(),
                    "load_average_before": os.getloadavg()[0],
                    "parameters": sum(p.numel() for p in model.parameters())}

    # in-process baseline (what rollouts inside the learner cost)
    from rl.rollout import cut_after_eos

    def local() -> int:
        torch.manual_seed(0)
        side, tok.padding_side = tok.padding_side, "left"
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        tok.padding_side = side
        with torch.no_grad():
            out = model.generate(**enc, do_sample=True, temperature=temp, top_k=0, top_p=1.0, max_new_tokens=new,
                                 num_return_sequences=n, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        rows_ = out[:, enc["input_ids"].shape[1]:].tolist()
        return sum(len(cut_after_eos(r, tok.eos_token_id)) for r in rows_)

    local()
    result["in_process_tokens_per_s"], _ = best_rate(local, args.repeats)

    import ray

    temp_dir = tempfile.mkdtemp(prefix="rb", dir="/tmp")  # short: Ray puts unix sockets under it
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 2**20, _temp_dir=temp_dir,
             log_to_driver=False, logging_config=ray.LoggingConfig(log_level="ERROR"))
    result["ray_init_s"] = time.perf_counter() - start
    try:
        start = time.perf_counter()
        cls = ray.remote(RolloutWorker).options(num_cpus=1, max_restarts=0)
        workers = [cls.remote(model_dir, "hf", 1)]
        ray.get(workers[0].info.remote())
        result["first_worker_ready_s"] = time.perf_counter() - start
        workers.append(cls.remote(model_dir, "hf", 1))
        ray.get(workers[1].info.remote())

        for k in (1, 2):
            pool = RolloutPool(workers[:k])
            pool.push(model)

            def pooled(pool=pool) -> int:
                return sum(len(c) for c in pool.generate(prompts, n, temp, new, seed=0))

            pooled()  # warm-up
            result[f"workers_{k}_tokens_per_s"], result[f"workers_{k}_batch_s"] = best_rate(pooled, args.repeats)
        result["ratio_2_over_1"] = result["workers_2_tokens_per_s"] / result["workers_1_tokens_per_s"]

        pool = RolloutPool(workers)
        for _ in range(args.repeats + 1):
            pool.push(model)
        pushes = pool.push_seconds[1:]  # the first one pays for the workers' first deserialisation
        result["weight_push_ms_mean"] = 1000 * sum(pushes) / len(pushes)
        result["weight_push_ms_best"] = 1000 * min(pushes)
        result["weight_mb"] = sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 2**20
        result["gpu"] = gpu_comparison(model_dir, prompts, n, new, temp, args.repeats)
    finally:
        start = time.perf_counter()
        ray.shutdown()
        result["ray_shutdown_s"] = time.perf_counter() - start
    result["load_average_after"] = os.getloadavg()[0]
    print_table(result)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


def gpu_comparison(model_dir: str, prompts, n: int, new: int, temp: float, repeats: int) -> dict | str:
    """vLLM against HF generate on one GPU, same model and prompts (only where a GPU and vLLM exist)."""
    from dareu.generation import vllm_available

    if not vllm_available():
        return "skipped: no GPU with vLLM on this machine"
    import ray

    from rl.rollout import RolloutWorker

    rates = {}
    for backend in ("hf", "vllm"):
        worker = ray.remote(RolloutWorker).options(num_gpus=1).remote(model_dir, backend, 1, 0.5)
        ray.get(worker.info.remote())

        def run(worker=worker) -> int:
            return sum(len(c) for c in ray.get(worker.generate.remote(prompts, n, temp, new, 0)))

        run()
        rates[f"{backend}_tokens_per_s"], _ = best_rate(run, repeats)
        ray.kill(worker)
    rates["vllm_over_hf"] = rates["vllm_tokens_per_s"] / rates["hf_tokens_per_s"]
    return rates


def print_table(r: dict) -> None:
    rows = [("in-process HF generate (no Ray)", f"{r['in_process_tokens_per_s']:.0f} tok/s"),
            ("1 rollout worker", f"{r['workers_1_tokens_per_s']:.0f} tok/s ({r['workers_1_batch_s']:.2f} s/batch)"),
            ("2 rollout workers", f"{r['workers_2_tokens_per_s']:.0f} tok/s ({r['workers_2_batch_s']:.2f} s/batch)"),
            ("ratio 2 / 1 workers", f"{r['ratio_2_over_1']:.2f}x"),
            (f"weight push to 2 workers ({r['weight_mb']:.1f} MB)",
             f"{r['weight_push_ms_mean']:.0f} ms mean, {r['weight_push_ms_best']:.0f} ms best"),
            ("ray.init (embedded, 2 CPUs)", f"{r['ray_init_s']:.1f} s"),
            ("first rollout worker ready", f"{r['first_worker_ready_s']:.1f} s"),
            ("ray.shutdown", f"{r['ray_shutdown_s']:.1f} s")]
    gpu = r["gpu"]
    rows += [("vLLM vs HF generate (GPU)", gpu if isinstance(gpu, str) else
              f"{gpu['vllm_tokens_per_s']:.0f} vs {gpu['hf_tokens_per_s']:.0f} tok/s ({gpu['vllm_over_hf']:.1f}x)")]
    width = max(len(a) for a, _ in rows)
    print(f"batch: {r['prompts']} prompts x {r['samples']} samples, <= {r['max_new_tokens']} new tokens; "
          f"{r['parameters'] / 1e6:.2f}M parameters; {r['cpus']} CPUs, load {r['load_average_before']:.1f}")
    for a, b in rows:
        print(f"  {a:<{width}}  {b}")


if __name__ == "__main__":
    main()
