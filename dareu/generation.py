"""Batched text generation: HF `generate` (CPU or GPU) or vLLM (GPU, when the `vllm` extra is installed).

Both backends take chat-formatted prompts and return the decoded completions only.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch

from dareu.config import field


@dataclass
class SamplingConfig:
    max_new_tokens: int = field(32, help="Longest completion generated.")
    temperature: float = field(1.0, help="Sampling temperature (ignored when greedy).")
    top_p: float = field(1.0, help="Nucleus sampling threshold.")
    batch_size: int = field(64, help="Prompts per generate call (HF backend).")


def vllm_available() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None


def left_padded(tok, prompts: list[str], device=None):
    """Prompts tokenised as one left-padded batch (what `generate` continues), the tokenizer left as it was."""
    side, tok.padding_side = tok.padding_side, "left"
    try:
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tok.padding_side = side
    return enc.to(device) if device is not None else enc


@torch.no_grad()
def hf_generate(model, tok, prompts: list[str], cfg: SamplingConfig, greedy: bool = True,
                num_samples: int = 1, seed: int | None = None) -> list[str]:
    """Left-padded batched generation; returns len(prompts) * num_samples completions, prompt-major.
    A `seed` makes sampling repeatable without touching the caller's random state."""
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return hf_generate(model, tok, prompts, cfg, greedy, num_samples, None)
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    out: list[str] = []
    try:
        for start in range(0, len(prompts), cfg.batch_size):
            enc = left_padded(tok, prompts[start: start + cfg.batch_size], dev)
            kw = {"max_new_tokens": cfg.max_new_tokens, "pad_token_id": tok.pad_token_id,
                      "eos_token_id": tok.eos_token_id, "num_return_sequences": num_samples}
            if greedy:
                kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            else:
                kw.update(do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p, top_k=0)
            gen = model.generate(**enc, **kw)
            out += tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        model.train(was_training)
    return [t.strip() for t in out]


def greedy_pairs(model, tok, prompts: list[str], max_new_tokens: int) -> list[list[str]]:
    """[prompt, the model's greedy answer in its chat template] for every prompt it answers (empty answers
    dropped): a model's own answers to general prompts, kept as training data (prepare's replay, DareU's
    aux.general)."""
    from dareu.modeling import prompt_text

    outs = hf_generate(model, tok, [prompt_text(tok, p) for p in prompts],
                       SamplingConfig(max_new_tokens=max_new_tokens, batch_size=64))
    return [[p, o] for p, o in zip(prompts, outs) if o]


class VLLMGenerator:
    """vLLM engine over a saved model folder (GPU only; imported lazily)."""

    def __init__(self, model_dir: str, gpu_memory_utilization: float = 0.3, seed: int = 0):
        from vllm import LLM

        self.llm = LLM(model=model_dir, gpu_memory_utilization=gpu_memory_utilization, seed=seed,
                       enable_prefix_caching=True)

    def generate(self, prompts: list[str], cfg: SamplingConfig, greedy: bool = True, num_samples: int = 1,
                 seed: int | None = None) -> list[str]:
        from vllm import SamplingParams

        params = SamplingParams(n=num_samples, max_tokens=cfg.max_new_tokens, seed=seed,
                                temperature=0.0 if greedy else cfg.temperature, top_p=1.0 if greedy else cfg.top_p)
        results = self.llm.generate(prompts, params, use_tqdm=False)
        return [o.text.strip() for r in results for o in r.outputs]


def generate(model, tok, prompts: list[str], cfg: SamplingConfig, greedy: bool = True, num_samples: int = 1,
             seed: int | None = None, engine: VLLMGenerator | None = None) -> list[str]:
    """Generate with vLLM when an engine is given, with HF `generate` otherwise."""
    if engine is not None:
        return engine.generate(prompts, cfg, greedy, num_samples, seed)
    return hf_generate(model, tok, prompts, cfg, greedy, num_samples, seed)
