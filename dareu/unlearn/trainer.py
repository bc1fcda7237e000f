"""The loss-based unlearning trainer: transformers' Trainer with the objective as its loss."""

from __future__ import annotations

from collections import defaultdict

import torch
from transformers import Trainer

from dareu.objectives import Objective


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; training stops before the bad gradient is applied."""

    def __init__(self, step: int, value: float):
        super().__init__(f"loss is {value} at step {step}")
        self.step, self.value = step, value


class UnlearnTrainer(Trainer):
    """Each batch is {"forget": ..., "retain": ...} (see dareu.unlearn.data); loss = objective.loss(...).

    Rows are read in the order of the dataset (its schedule is already shuffled by seed), so resuming
    from a checkpoint replays exactly the rows a run that was not killed would have seen.
    """

    def __init__(self, *args, objective: Objective, ref=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.objective = objective
        self.ref = ref
        # Our loss is already a mean; let the Trainer divide by gradient accumulation itself.
        self.model_accepts_loss_kwargs = False
        self._sums: dict[str, float] = defaultdict(float)
        self._count = 0

    def _get_train_sampler(self, train_dataset=None):
        return torch.utils.data.SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, metrics = self.objective.loss(model, inputs, self.ref)
        if not torch.isfinite(loss.detach()):
            raise NonFiniteLoss(self.state.global_step + 1, float(loss.detach()))
        for key, value in metrics.items():
            self._sums[key] += value
        self._count += 1
        return (loss, None) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._count and "loss" in logs:  # training logs get the objective's metrics, averaged
            logs.update({k: v / self._count for k, v in self._sums.items()})
            self._sums.clear()
            self._count = 0
        super().log(logs, start_time)
