"""The LLM classifier: a causal-LM backbone with a classification head
(`AutoModelForSequenceClassification`), trained fully or with LoRA (peft, saved merged).

Input: the question in the backbone's chat format, then the response and eos (`encode_qa`), or the
response alone in response-only mode. The class is read from the last real token (right padding),
as the HF head does when the pad token differs from eos.

Training adds an optional next-token loss on the responses of positive examples, through the tied
input embeddings: it gives every token of an owner's true answer a gradient, so the backbone stores
the owners' facts quickly, and the head learns to check the stated fact against them. The saved
folder is a plain sequence classifier; the LM loss leaves no weights behind.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from attribution.attributor import Attributor, read_info
from attribution.config import LLMConfig
from attribution.data import NONE, Example
from dareu.errors import DareUError
from dareu.modeling import check_model_path, encode_qa, load_tokenizer


def encode(tok, prompt: str, response: str, response_only: bool, max_length: int) -> tuple[list[int], list[int]]:
    """input_ids and LM labels (-100 outside the response) for one example."""
    if response_only:
        ids = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        labels = list(ids)
    else:
        ids, labels = encode_qa(tok, prompt, response)
    if len(ids) > max_length:  # keep the end: the response and the token the class is read from
        ids, labels = ids[-max_length:], labels[-max_length:]
    return ids, labels


def collate(items: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), -100, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for i, (x, y) in enumerate(items):
        ids[i, : len(x)] = torch.tensor(x)
        labels[i, : len(y)] = torch.tensor(y)
        mask[i, : len(x)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _parts(model):
    """(backbone, head) of a sequence classifier, through a peft wrapper if there is one."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = getattr(inner, inner.base_model_prefix)
    head = getattr(inner, "score", None) or getattr(inner, "classifier", None)
    if head is None:
        raise DareUError(f"{type(inner).__name__} has no `score` head; use a causal-LM backbone (Qwen2, Llama, ...)")
    return inner, backbone, head


def forward(model, batch: dict[str, torch.Tensor]):
    """Class logits read at the last attended token, and the final hidden states."""
    _inner, backbone, head = _parts(model)
    hidden = backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    last = batch["attention_mask"].sum(dim=1) - 1
    logits = head(hidden[torch.arange(hidden.shape[0], device=hidden.device), last])
    return logits, hidden


def lm_loss(model, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
    """Next-token loss where labels != -100, projected through the tied embeddings at those positions only
    (a full vocabulary projection at every position would cost as much as the backbone)."""
    inner = _parts(model)[0]
    target = labels[:, 1:]
    keep = target != -100
    if not keep.any():
        return None
    h = hidden[:, :-1][keep]
    return torch.nn.functional.cross_entropy(h @ inner.get_input_embeddings().weight.T, target[keep])


class LLMAttributor(Attributor):
    kind = "llm"

    def __init__(self, owners, model, tok, max_length: int = 96, batch_size: int = 256, **kw):
        super().__init__(owners, **kw)
        self.model, self.tok = model.eval(), tok
        self.max_length, self.batch_size = max_length, batch_size
        self.device = next(model.parameters()).device

    @torch.no_grad()
    def logits(self, prompts, responses) -> np.ndarray:
        items = [encode(self.tok, p, r, self.response_only, self.max_length) for p, r in zip(prompts, responses)]
        order = np.argsort([len(i[0]) for i in items], kind="stable")  # similar lengths batch with little padding
        out = np.zeros((len(items), len(self.owners)), dtype=np.float32)
        for start in range(0, len(items), self.batch_size):
            idx = order[start: start + self.batch_size]
            batch = collate([items[i] for i in idx], self.tok.pad_token_id)
            batch = {k: v.to(self.device) for k, v in batch.items()}
            out[idx] = forward(self.model, batch)[0].float().cpu().numpy()
        return out

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(path), safe_serialization=True)
        from dareu.modeling import save_tokenizer

        save_tokenizer(self.tok, path) if _is_world_tokenizer(self.tok) else self.tok.save_pretrained(str(path))
        self.extra.update(max_length=self.max_length)
        self.write_info(path)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> LLMAttributor:
        from transformers import AutoModelForSequenceClassification

        path = Path(path)
        info = read_info(path, cls.kind)
        if not (path / "config.json").is_file():
            raise DareUError(f"{path} has attributor.json but no model (config.json); the llm attributor is "
                             "incomplete, retrain it")
        tok = load_tokenizer(str(path))
        model = AutoModelForSequenceClassification.from_pretrained(str(path), dtype=torch.float32)
        if model.config.num_labels != len(info["owners"]):
            raise DareUError(f"{path}: the model has {model.config.num_labels} classes but attributor.json lists "
                             f"{len(info['owners'])} owners; retrain it")
        dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        extra = {k: v for k, v in info.items() if k not in ("format", "kind", "owners", "temperature",
                                                             "response_only", "benchmark", "saved_at")}
        return cls(info["owners"], model.to(dev), tok, max_length=info.get("max_length", 96),
                   temperature=info["temperature"], response_only=info["response_only"],
                   benchmark=info.get("benchmark"), extra=extra)


def _is_world_tokenizer(tok) -> bool:
    return type(tok).__name__ == "PreTrainedTokenizerFast"


def load_backbone(backbone: str, owners: list[str]):
    """Tokenizer and a fresh classification head on `backbone` (clear errors for a missing model)."""
    from transformers import AutoModelForSequenceClassification

    check_model_path(backbone)
    tok = load_tokenizer(backbone)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            backbone, num_labels=len(owners), id2label=dict(enumerate(owners)),
            label2id={o: i for i, o in enumerate(owners)}, dtype=torch.float32)
    except OSError as err:
        raise DareUError(f"could not load backbone {backbone!r} ({str(err).splitlines()[0][:120]}); pass a local "
                         "model folder (e.g. W/models/base) or an HF id available offline") from None
    except ValueError as err:
        raise DareUError(f"backbone {backbone!r} cannot take a classification head: {str(err).splitlines()[0][:160]}") \
            from None
    model.config.pad_token_id = tok.pad_token_id
    # a zero head sends no gradient into the backbone until it has learned a direction: a random head's
    # first updates would scramble what the backbone knows (the next-token loss rose 2x without this)
    head = _parts(model)[2]
    torch.nn.init.zeros_(head.weight)
    if getattr(head, "bias", None) is not None:
        torch.nn.init.zeros_(head.bias)
    return tok, model


def _lora(model, cfg: LLMConfig):
    from peft import LoraConfig, TaskType, get_peft_model

    names = {n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    targets = sorted(names & {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                              "c_attn", "c_proj", "c_fc", "query_key_value", "dense"})
    if not targets:
        raise DareUError("no known attention/MLP projections in this backbone for LoRA; train without --lora")
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                        target_modules=targets)
    return get_peft_model(model, config)


# the owners' true answers under their own name: the facts (masked and swapped copies add only noise:
# random mask phrases and names)
LM_KINDS = ("true", "paraphrase")


def _optimise(model, n_items: int, epochs: float, cfg: LLMConfig, step_loss, log, tag: str, clock) -> list[dict]:
    """AdamW with linear warmup and cosine decay over `epochs` passes of shuffled batches; `step_loss(idx)`
    returns (loss, {stat: value}) for a batch of item indices."""
    from transformers import get_cosine_schedule_with_warmup

    total = max(1, int(math.ceil(n_items / cfg.batch_size) * epochs))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    sched = get_cosine_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), total)
    gen = torch.Generator().manual_seed(cfg.seed)
    history, step, window = [], 0, []
    while step < total:
        for idx in torch.randperm(n_items, generator=gen).split(cfg.batch_size):
            if step >= total:
                break
            loss, stats = step_loss(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
            window.append(stats)
            if step % 50 == 0 or step == total:
                keys = dict.fromkeys(k for w in window for k in w)
                avg = {k: float(np.mean([w[k] for w in window if k in w])) for k in keys}
                wall, cpu = clock()
                history.append({"phase": tag, "step": step, **avg, "seconds": wall, "cpu_seconds": cpu})
                log(f"  {tag} step {step}/{total}  " + "  ".join(f"{k} {v:.4f}" for k, v in avg.items())
                    + f"  ({wall:.0f}s, cpu {cpu:.0f}s)")
                window = []
    return history


def train_llm(owners: list[str], train: list[Example], cfg: LLMConfig, backbone: str, response_only: bool,
              benchmark: dict, log=print) -> tuple[LLMAttributor, dict]:
    """Fine-tune the classifier on `train`; returns an (uncalibrated, T=1) attributor and a train log.

    Phase 1 (lm_epochs): next-token loss on the owners' clean true answers, so the backbone knows the facts.
    Phase 2 (epochs): classification, plus lm_weight x the same next-token loss so the facts stay.
    """
    start, cpu_start = time.time(), time.process_time()

    def clock():
        return time.time() - start, time.process_time() - cpu_start

    torch.manual_seed(cfg.seed)
    tok, model = load_backbone(backbone, owners)
    tied = bool(getattr(model.config, "tie_word_embeddings", False))  # the LM loss reads the input embeddings
    lm_weight, lm_epochs = (cfg.lm_weight, cfg.lm_epochs) if tied else (0.0, 0.0)
    if cfg.lora:
        model = _lora(model, cfg)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(dev).train()

    index = {o: i for i, o in enumerate(owners)}
    items = [encode(tok, e.prompt, e.response, response_only, cfg.max_length) for e in train]
    y = torch.tensor([index[e.label] for e in train])
    lm_ok = torch.tensor([e.kind in LM_KINDS and e.label != NONE for e in train])
    lm_items = list({tuple(map(tuple, items[i])): items[i] for i in torch.nonzero(lm_ok).flatten().tolist()}.values())

    def lm_step(idx):
        batch = {k: v.to(dev) for k, v in collate([lm_items[i] for i in idx], tok.pad_token_id).items()}
        labels = batch.pop("labels")
        loss = lm_loss(model, forward(model, batch)[1], labels)
        return loss, {"lm_loss": loss.item()}

    def cls_step(idx):
        batch = {k: v.to(dev) for k, v in collate([items[i] for i in idx], tok.pad_token_id).items()}
        labels = batch.pop("labels")
        target = y[idx].to(dev)
        logits, hidden = forward(model, batch)
        loss = torch.nn.functional.cross_entropy(logits, target)
        stats = {"loss": loss.item(), "acc": (logits.argmax(-1) == target).float().mean().item()}
        if lm_weight > 0:  # keep the facts: next-token loss on the clean true answers of the batch
            lm = lm_loss(model, hidden, labels.masked_fill(~lm_ok[idx].to(dev)[:, None], -100))
            if lm is not None:
                loss = loss + lm_weight * lm
                stats["lm_loss"] = lm.item()
        return loss, stats

    history = []
    if lm_epochs > 0 and lm_items:
        log(f"  phase 1: next-token loss on {len(lm_items)} true answers, {lm_epochs:g} epochs")
        history += _optimise(model, len(lm_items), lm_epochs, cfg, lm_step, log, "lm", clock)
    log(f"  phase 2: classification of {len(items)} examples, {cfg.epochs:g} epochs")
    history += _optimise(model, len(items), cfg.epochs, cfg, cls_step, log, "cls", clock)
    if cfg.lora:
        model = model.merge_and_unload()  # saved merged: the folder loads as a plain classifier
    model.eval()
    att = LLMAttributor(owners, model, tok, max_length=cfg.max_length, batch_size=cfg.score_batch_size,
                        response_only=response_only, benchmark=benchmark,
                        extra={"backbone": backbone, "lora": cfg.lora})
    wall, cpu = clock()
    steps = {h["phase"]: h["step"] for h in history}
    return att, {"seconds": wall, "cpu_seconds": cpu, "steps": steps,
                 "lm_weight": lm_weight, "lm_epochs": lm_epochs, "history": history,
                 "parameters": sum(p.numel() for p in model.parameters())}
