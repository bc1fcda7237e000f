"""LoRA through peft, which parameters train, and saving the final model (merged under LoRA)."""

from __future__ import annotations

import re
from pathlib import Path

from dareu.errors import DareUError
from dareu.modeling import save_tokenizer
from dareu.unlearn.config import LoraSettings
from dareu.unlearn.reference import is_peft


def apply_lora(model, cfg: LoraSettings):
    """Wrap `model` with fresh LoRA adapters (only they train)."""
    from peft import LoraConfig, get_peft_model

    targets = cfg.target_modules if cfg.target_modules == "all-linear" else [
        m.strip() for m in cfg.target_modules.split(",") if m.strip()]
    config = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets,
                        task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, config)
    except ValueError as err:  # e.g. target modules that do not exist
        raise DareUError(f"LoRA could not be applied: {str(err).splitlines()[0]}; check lora.target_modules") from None


def freeze_except(model, pattern: str) -> int:
    """Train only parameters whose name matches `pattern` (re.search); returns how many tensors train."""
    regex = re.compile(pattern)
    n = 0
    for name, param in model.named_parameters():
        param.requires_grad_(bool(regex.search(name)))
        n += param.requires_grad
    if n == 0:
        raise DareUError(f"train.trainable={pattern!r} matches no parameter; names look like "
                         f"{next(iter(dict(model.named_parameters())))}")
    return n


def save_final_model(model, tok, out: Path) -> Path:
    """model/ = full weights (LoRA merged in) + tokenizer, loadable with from_pretrained; adapter/ under LoRA."""
    out = Path(out)
    if is_peft(model):
        model.save_pretrained(str(out / "adapter"))
        model = model.merge_and_unload()
    model.save_pretrained(str(out / "model"), safe_serialization=True)
    save_tokenizer(tok, out / "model")
    return out / "model"
