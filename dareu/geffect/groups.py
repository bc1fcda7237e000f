"""Layer groups of a causal LM: embeddings, each transformer block, the head.

Groups come from parameter names, so they work for Qwen2/Llama (`model.layers.3.`), GPT-2
(`transformer.h.3.`) and peft-wrapped models alike. With tied input/output embeddings (our worlds'
models) the shared matrix is one parameter and counts under `embeddings`; `head` then holds the final
norm only.
"""

from __future__ import annotations

import re

from dareu.errors import DareUError

EMBEDDINGS, HEAD = "embeddings", "head"
_BLOCK = re.compile(r"(?:^|\.)(?:layers|h|blocks|block|layer)\.(\d+)\.")
_EMBED = ("embed", "wte", "wpe")


def group_of(name: str) -> str:
    """The layer group of parameter `name`."""
    match = _BLOCK.search(name)
    if match:
        return f"block_{int(match.group(1))}"
    if any(key in name for key in _EMBED):
        return EMBEDDINGS
    return HEAD


def group_names(num_blocks: int) -> list[str]:
    """Every group of a model with `num_blocks` blocks, input to output."""
    return [EMBEDDINGS, *(f"block_{i}" for i in range(num_blocks)), HEAD]


def num_blocks(config) -> int:
    """Transformer blocks of a model config (before loading any weights)."""
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if getattr(config, key, None):
            return int(getattr(config, key))
    raise DareUError(f"cannot tell how many blocks the model has (no num_hidden_layers in its {type(config).__name__})")


def select_groups(spec: str, available: list[str]) -> list[str]:
    """Groups named by `spec`: "all", or a comma list of group names and "blocks" (every block).

    An unknown name is one clear line listing the model's groups."""
    if spec.strip() in ("", "all"):
        return list(available)
    chosen: list[str] = []
    for raw in spec.split(","):
        name = raw.strip()
        if not name:
            continue
        names = [g for g in available if g.startswith("block_")] if name == "blocks" else [name]
        if name != "blocks" and name not in available:
            blocks = [g for g in available if g.startswith("block_")]
            span = f"{blocks[0]}..{blocks[-1]}, " if blocks else ""
            raise DareUError(f"unknown layer group {name!r}; this model has {EMBEDDINGS}, {span}{HEAD} "
                             "(or 'blocks', 'all')")
        chosen.extend(n for n in names if n not in chosen)
    if not chosen:
        raise DareUError(f"--layers {spec!r} names no layer group")
    return [g for g in available if g in chosen]  # input-to-output order


def measured_parameters(model, groups: list[str]) -> dict[str, tuple[object, str]]:
    """name -> (parameter, group) for the trainable parameters in `groups`."""
    wanted = set(groups)
    return {name: (p, group_of(name)) for name, p in model.named_parameters()
            if p.requires_grad and group_of(name) in wanted}
