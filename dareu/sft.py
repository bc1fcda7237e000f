"""Answer-only supervised fine-tuning on QA pairs with the transformers Trainer (builds base/target/retain)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dareu.config import field, require
from dareu.modeling import encode_qa


@dataclass
class TrainConfig:
    epochs: float = field(15.0, help="Passes over the training QA.")
    batch_size: int = field(64, help="QA pairs per optimizer step.")
    learning_rate: float = field(3e-3, help="Peak learning rate (AdamW, linear warmup then cosine decay).")
    warmup_ratio: float = field(0.05, help="Fraction of steps spent warming up the learning rate.")
    weight_decay: float = field(0.0, help="AdamW weight decay.")
    max_grad_norm: float = field(1.0, help="Gradient clipping norm.")
    seed: int = field(0, help="Seed of initialisation order and data shuffling.")

    def __post_init__(self):
        require(self, "epochs", self.epochs > 0, "must be > 0")
        require(self, "batch_size", self.batch_size >= 1, "must be >= 1")
        require(self, "learning_rate", self.learning_rate > 0, "must be > 0")
        require(self, "warmup_ratio", 0 <= self.warmup_ratio < 1, "must be in [0, 1)")
        require(self, "weight_decay", self.weight_decay >= 0, "must be >= 0")
        require(self, "max_grad_norm", self.max_grad_norm > 0, "must be > 0")


class QACollator:
    """Right-pads input_ids/labels; padded label positions are -100 so they carry no loss."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, batch: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        # extra label rows (the fact labels, stranger positions of dareu.unlearn.data) are padded like labels when
        # every item has them
        extra = [k for k in batch[0] if k.endswith(("labels", "_positions")) and k != "labels"
                 and all(k in b for b in batch)]
        more = {k: torch.full((len(batch), width), -100, dtype=torch.long) for k in extra}
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n] = torch.tensor(b["input_ids"])
            labels[i, :n] = torch.tensor(b["labels"])
            mask[i, :n] = 1
            for k in extra:
                more[k][i, :n] = torch.tensor(b[k])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels, **more}


class QADataset(torch.utils.data.Dataset):
    def __init__(self, tok, pairs: list[tuple[str, str]], max_length: int | None = None):
        self.items = [dict(zip(("input_ids", "labels"), encode_qa(tok, q, a, max_length))) for q, a in pairs]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def training_args(output_dir: str, cfg: TrainConfig, **overrides):
    """TrainingArguments that work the same on CPU (fp32) and GPU (bf16)."""
    from transformers import TrainingArguments

    on_gpu = torch.cuda.is_available()
    kw = {"output_dir": output_dir, "per_device_train_batch_size": cfg.batch_size, "learning_rate": cfg.learning_rate,
              "num_train_epochs": cfg.epochs, "warmup_steps": cfg.warmup_ratio, "lr_scheduler_type": "cosine",
              "weight_decay": cfg.weight_decay, "max_grad_norm": cfg.max_grad_norm, "seed": cfg.seed, "data_seed": cfg.seed,
              "logging_steps": 25, "save_strategy": "no", "report_to": "none", "bf16": on_gpu, "use_cpu": not on_gpu,
              "dataloader_num_workers": 0, "remove_unused_columns": False, "disable_tqdm": False}
    kw.update(overrides)
    return TrainingArguments(**kw)


def finetune_qa(model, tok, pairs: list[tuple[str, str]], cfg: TrainConfig, output_dir: str,
                max_length: int | None = None, quiet: bool = False, **args) -> list[dict]:
    """Train `model` in place on (question, answer) pairs; returns the Trainer's log history. `args` override
    TrainingArguments (e.g. max_steps); `quiet` prints neither progress nor logs."""
    from transformers import Trainer
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer = Trainer(model=model, args=training_args(output_dir, cfg, **args), train_dataset=QADataset(tok, pairs, max_length),
                      data_collator=QACollator(tok.pad_token_id))
    if quiet:
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
    trainer.train()
    return trainer.state.log_history
