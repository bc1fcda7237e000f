"""The RL learners on TRL: GRPO and RLOO with DareU's auxiliary forget and retain terms.

The auxiliary terms are added in `compute_loss` (not `_compute_loss`: TRL's Liger path bypasses
that), scaled by gradient accumulation, and logged through TRL's `_metrics` so they land in the log
history beside the reward. The KL to the reference is TRL's own `beta` term.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from dareu.config import from_dict
from dareu.registry import Registry
from rl.config import DareUConfig
from rl.rewards import reward_components

LEARNERS: Registry = Registry("learner")


class AttributionReward:
    """TRL reward function: scores (question, completion) with the attribution model.

    `scorer(prompts, responses) -> probs (n, classes)` is the in-process attributor or a Ray actor call.
    TRL passes the dataset's extra columns (`question`, `owner`) as keyword lists. With
    `reward.plausibility_coef > 0`, call `use_plausibility` with the starting model before training."""

    __name__ = "attribution"

    def __init__(self, scorer: Callable, class_names: list[str], forget_owners: list[str], cfg: DareUConfig):
        self.scorer, self.class_names, self.forget_owners, self.cfg = scorer, class_names, forget_owners, cfg
        self.plausibility = None

    def use_plausibility(self, model, tok, rows: list[dict]) -> None:
        """Build the plausibility term from `model`'s generic answers to `rows` (rl/plausibility.py), when the
        config asks for it."""
        r = self.cfg.reward
        if r.plausibility_coef:
            from rl.plausibility import Plausibility, generic_answers, stranger_names

            names = stranger_names(r.strangers, set(self.class_names) | {row["owner"] for row in rows}, self.cfg.seed)
            self.plausibility = Plausibility(generic_answers(model, tok, rows, names), r.plausibility_measure)

    def __call__(self, prompts, completions, question, owner, log_metric=None, **_) -> list[float]:
        texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
        probs = np.asarray(self.scorer(list(question), texts))
        parts = reward_components(probs, list(owner), self.class_names, self.forget_owners, texts, self.cfg.reward)
        if self.plausibility is not None:
            parts["plausibility"] = self.cfg.reward.plausibility_coef * self.plausibility(list(question), texts)
        if log_metric is not None:
            index = {n: i for i, n in enumerate(self.class_names)}
            p_owner = probs[np.arange(len(probs)), [index[o] for o in owner]]
            log_metric("attribution_sampled", float(p_owner.mean()))
            for name, values in parts.items():
                log_metric(f"reward_parts/{name}", float(values.mean()))
        return [float(v) for v in sum(parts.values())]


class AuxTerms:
    """forget_coef * forget objective (e.g. NPO) + retain_coef * retain loss, on fixed QA batches.

    Batches come from an endless seeded iterator; `skip(n)` fast-forwards it on resume so a resumed run
    sees the same batches as an uninterrupted one."""

    def __init__(self, cfg: DareUConfig, unlearn_data, ref):
        from dareu.objectives import OBJECTIVES

        self.cfg = cfg.aux

        self.objective = None if cfg.aux.forget == "none" else from_dict(OBJECTIVES.get(cfg.aux.forget),
                                                                         cfg.aux.forget_params)
        self.ref = ref
        # the forget objective's own reference: `ref` (the starting model), the world's base for an objective
        # anchored there (fact_base), or the two mixed (stranger_kl's base_weight); the retain KL always reads `ref`
        self.forget_ref = ref
        if self.objective is not None and self.objective.anchor != "start":
            from dareu.unlearn.reference import reference_for

            self.forget_ref = reference_for(self.objective, ref.module, cfg.world, start=ref)
        self.batches = unlearn_data.batches(cfg.aux.batch_size, seed=cfg.seed)

    def skip(self, n: int) -> None:
        for _ in range(n):
            next(self.batches)

    def __call__(self, model, scale: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
        """The auxiliary loss (times `scale` when backpropagated, the trainer's 1 / accumulation steps)."""
        from dareu.objectives import retain_loss

        batch = next(self.batches)
        dev = next(model.parameters()).device
        batch = _to(batch, dev)
        total = torch.zeros((), device=dev)
        metrics: dict[str, float] = {}
        if self.objective is not None and self.cfg.forget_coef and self.cfg.relearn_rho > 0:
            loss, m = self.forget_after_relearning(model, batch["forget"], self.cfg.forget_coef * scale)
            total = total + self.cfg.forget_coef * loss  # already backpropagated: a value for the logs
            metrics["aux/forget_loss"] = loss.item()
            metrics.update({f"aux/{k}": v for k, v in m.items()})
        elif self.objective is not None and self.cfg.forget_coef:
            loss, m = self.objective.forget_loss(model, batch["forget"], ref=self.forget_ref)
            total = total + self.cfg.forget_coef * loss
            metrics["aux/forget_loss"] = loss.item()
            metrics.update({f"aux/{k}": v for k, v in m.items()})
        if self.cfg.retain != "none" and self.cfg.retain_coef:
            loss, m = retain_loss(model, batch["retain"], kind=self.cfg.retain, ref=self.ref)
            total = total + self.cfg.retain_coef * loss
            metrics["aux/retain_loss"] = loss.item()
        return total, metrics


    def forget_after_relearning(self, model, batch: dict, weight: float) -> tuple[torch.Tensor, dict]:
        """Sharpness-aware forgetting against relearning: step the weights `relearn_rho` along the direction an
        attacker fine-tuning on these answers would take (down the gradient of their NLL, normalised), take the
        forget term's gradient there, step back. The gradient (times `weight`) lands in `.grad` now; the
        returned loss is detached."""
        params = [p for p in model.parameters() if p.requires_grad]
        nll = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        grads = torch.autograd.grad(nll, params, allow_unused=True)
        norm = torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)) + 1e-12
        moved = [(p, g, p.detach().clone()) for p, g in zip(params, grads) if g is not None]
        with torch.no_grad():
            for p, g, _ in moved:
                p.sub_(self.cfg.relearn_rho * g / norm)
        try:
            loss, metrics = self.objective.forget_loss(model, batch, ref=self.forget_ref)
            (weight * loss).backward()
        finally:
            with torch.no_grad():  # back to exactly the weights we started from
                for p, _, saved in moved:
                    p.copy_(saved)
        return loss.detach(), {**metrics, "relearn_nll": nll.item()}


def _to(batch, dev):
    if isinstance(batch, dict):
        return {k: _to(v, dev) for k, v in batch.items()}
    return batch.to(dev) if isinstance(batch, torch.Tensor) else batch


class AuxLossMixin:
    """Adds `self.aux_terms(model)` to the RL loss of any TRL trainer with a `compute_loss`."""

    aux_terms: AuxTerms | None = None
    rl_coef: float = 1.0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.aux_terms is None:
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        # the auxiliary terms before the RL forward: relearn_rho > 0 moves the weights and back in place, which
        # must not happen while a graph holds them for backward
        aux, metrics = self.aux_terms(model, scale=1 / self.current_gradient_accumulation_steps)
        loss = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)
        mode = "train" if model.training else "eval"
        for key, value in metrics.items():
            self._metrics[mode][key].append(value)
        self._metrics[mode]["rl_loss"].append(loss.item())
        return self.rl_coef * loss + aux / self.current_gradient_accumulation_steps


def _trl_kwargs(cfg: DareUConfig, output_dir: str) -> dict:
    """Settings shared by GRPOConfig and RLOOConfig; CPU-safe (fp32, no gradient checkpointing)."""
    on_gpu = torch.cuda.is_available()
    from dareu.generation import vllm_available

    use_vllm = cfg.rollout_backend == "vllm" or (cfg.rollout_backend == "auto" and vllm_available())
    kw = {"output_dir": output_dir, "max_steps": cfg.max_steps, "learning_rate": cfg.learning_rate,
              "lr_scheduler_type": "constant", "per_device_train_batch_size": cfg.batch_size,
              "num_generations": cfg.num_generations, "max_completion_length": cfg.max_completion_length,
              "temperature": cfg.temperature, "beta": cfg.beta, "max_grad_norm": cfg.max_grad_norm,
              "bf16": on_gpu, "use_cpu": not on_gpu, "gradient_checkpointing": False, "logging_steps": 1, "report_to": "none",
              "save_strategy": "steps", "save_steps": cfg.save_steps, "seed": cfg.seed, "data_seed": cfg.seed,
              "dataloader_num_workers": 0, "remove_unused_columns": False, "disable_tqdm": True, "use_vllm": use_vllm}
    if use_vllm:
        kw.update(vllm_mode="colocate", vllm_gpu_memory_utilization=0.3, vllm_enable_sleep_mode=False)
    return kw


def _build(trainer_cls, config_cls, cfg: DareUConfig, model, tok, reward: AttributionReward, dataset, output_dir: str,
           peft_config=None):
    cls = type(f"DareU{trainer_cls.__name__}", (AuxLossMixin, trainer_cls), {"rl_coef": cfg.rl_coef})
    args = config_cls(**_trl_kwargs(cfg, output_dir))
    return cls(model=model, reward_funcs=[reward], args=args, train_dataset=dataset, processing_class=tok,
               peft_config=peft_config)


@LEARNERS.register("grpo")
def grpo(cfg, model, tok, reward, dataset, output_dir, peft_config=None):
    from trl import GRPOConfig, GRPOTrainer

    return _build(GRPOTrainer, GRPOConfig, cfg, model, tok, reward, dataset, output_dir, peft_config)


@LEARNERS.register("rloo")
def rloo(cfg, model, tok, reward, dataset, output_dir, peft_config=None):
    from trl import RLOOConfig, RLOOTrainer

    return _build(RLOOTrainer, RLOOConfig, cfg, model, tok, reward, dataset, output_dir, peft_config)



def forget_dataset(rows, tok):
    """The RL prompts: forget questions in the chat format, with the question and owner for the reward."""
    import datasets

    from dareu.modeling import prompt_text

    return datasets.Dataset.from_dict({"prompt": [prompt_text(tok, r["question"]) for r in rows],
                                       "question": [r["question"] for r in rows],
                                       "owner": [r["owner"] for r in rows]})


def build_learner(cfg: DareUConfig, model, tok, reward, rows, unlearn_data, output_dir, peft_config=None):
    """The TRL learner of `cfg.learner` (grpo, rloo) on the forget prompts `rows`, with DareU's auxiliary forget
    and retain terms attached: the one place the product, the tests and the benchmarks assemble it. The
    reference is TRL's own when it keeps one (beta > 0), else a frozen copy (or the adapters disabled)."""
    from dareu.unlearn import RefModel, make_reference

    trainer = LEARNERS.get(cfg.learner)(cfg, model, tok, reward, forget_dataset(rows, tok), str(output_dir),
                                        peft_config)
    ref = RefModel(trainer.ref_model) if getattr(trainer, "ref_model", None) is not None \
        else make_reference(trainer.model)
    trainer.aux_terms = AuxTerms(cfg, unlearn_data, ref)
    return trainer
