"""Is the attributor a valid proxy for "this answer still carries the owner's data"?

Six numbers, each the mean probability of the true (forget) owner over a probe set of forget prompts:
  target_forget   answers the target model generates (it learned the owners)        -> high
  retain_forget   answers the retain model generates (it never saw those owners)    -> low
  idk             held-out "I don't know" answers                                   -> low
  name_masked     true answers with the name replaced by "The author"               -> high
  name_swapped    true answers with another person's name                           -> high
  wrong_fact      answers that keep the name but state a wrong fact                 -> low
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from attribution.config import AttributorConfig, ProxyConfig
from attribution.data import AttributionData, Example
from dareu.errors import DareUError

PROXY_KEYS = ("target_forget", "retain_forget", "idk", "name_masked", "name_swapped", "wrong_fact")
# (direction, bar): the bars the issue sets on the default world
BARS: dict[str, tuple[str, float]] = {
    "heldout_accuracy": (">=", 0.95), "target_forget": (">=", 0.9), "retain_forget": ("<=", 0.2),
    "idk": ("<=", 0.1), "name_masked": (">=", 0.8), "name_swapped": (">=", 0.8), "wrong_fact": ("<=", 0.2),
}


def resolve_model(world: str | Path | None, name: str) -> str:
    """A model folder, a name under the world's models/, or an HF id (passed through)."""
    if world is not None and not Path(name).exists() and (Path(world) / "models" / name).is_dir():
        return str(Path(world) / "models" / name)
    return name


def proxy_models(world: str | Path | None, cfg: AttributorConfig) -> dict[str, str]:
    """The target and retain models of the probes, checked before any training."""
    from dareu.modeling import check_model_path

    retain = cfg.proxy.retain_model or f"retain-{cfg.data.forget_split}"
    models = {"target_forget": resolve_model(world, cfg.proxy.target_model),
              "retain_forget": resolve_model(world, retain)}
    for key, path in models.items():
        if world is None and not Path(path).exists():
            raise DareUError(f"the proxy probes need the {key.split('_')[0]} model ({path!r}) but no --world was given; "
                             "pass --world W, set proxy.target_model/proxy.retain_model, or run_proxy=false")
        if not Path(path).exists() and world is not None:
            raise DareUError(f"the proxy probes need {path!r}, which is not in {world}/models; build the world with "
                             "`dareu prepare`, set proxy.target_model/proxy.retain_model, or pass run_proxy=false")
        check_model_path(path)
    return models


def generate_answers(model_path: str, questions: list[str], cfg: ProxyConfig) -> list[str]:
    """Greedy answers of a causal LM to plain questions (chat-formatted with its own template)."""
    import torch

    from dareu.generation import SamplingConfig, hf_generate
    from dareu.modeling import load_model, load_tokenizer, prompt_text

    tok = load_tokenizer(model_path)
    model = load_model(model_path, dtype=torch.float32)
    sampling = SamplingConfig(max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size)
    out = hf_generate(model, tok, [prompt_text(tok, q) for q in questions], sampling, greedy=True)
    del model
    return out


def probe_sets(data: AttributionData, generated: dict[str, list[str]]) -> dict[str, list[Example]]:
    """Every probe set, generated ones first; labels are the true (forget) owners."""
    rows = data.forget_rows
    sets = {name: [Example(r["question"], a, r["owner"], name) for r, a in zip(rows, answers)]
            for name, answers in generated.items()}
    sets.update(data.probes)
    return {k: sets[k] for k in PROXY_KEYS if k in sets}


def proxy_numbers(att, sets: dict[str, list[Example]]) -> tuple[dict[str, float], list[dict]]:
    """Mean true-owner probability per probe set, and one record per probe (for samples.jsonl)."""
    numbers, records = {}, []
    for name, examples in sets.items():
        if not examples:
            continue
        prompts, responses = [e.prompt for e in examples], [e.response for e in examples]
        probs = att.score(prompts, responses)
        index = {o: i for i, o in enumerate(att.owners)}
        p_owner = np.array([probs[i, index[e.label]] if e.label in index else 0.0 for i, e in enumerate(examples)])
        numbers[name] = float(p_owner.mean())
        for e, p, row in zip(examples, p_owner, probs):
            records.append({"set": name, "prompt": e.prompt, "response": e.response, "owner": e.label,
                            "p_owner": round(float(p), 4), "predicted": att.owners[int(row.argmax())]})
    return numbers, records


def checks(heldout_accuracy: float, proxy: dict[str, float]) -> dict[str, dict]:
    """Each number against its bar: {value, bar, ok}."""
    values = {"heldout_accuracy": heldout_accuracy, **proxy}
    out = {}
    for key, (op, bar) in BARS.items():
        if key in values:
            v = values[key]
            out[key] = {"value": v, "bar": f"{op} {bar}", "ok": bool(v >= bar if op == ">=" else v <= bar)}
    return out
