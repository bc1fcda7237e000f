"""What an evaluation computes once and many metrics share: the QA rows of each role, teacher-forced
answer statistics and generated answers, each computed on first use and memoised."""

from __future__ import annotations

from contextlib import contextmanager
from functools import cached_property

import numpy as np
import torch

from dareu.data import get_split, retain_of
from dareu.errors import DareUError
from dareu.evaluation.config import EvalConfig
from dareu.evaluation.scoring import AnswerStats, score_answers
from dareu.generation import SamplingConfig, generate
from dareu.modeling import prompt_text
from dareu.quality import evenly

# Roles an evaluation reads, and the columns they need (idk and background are never read).
ROLES = ("forget", "retain", "real_authors", "world_facts", "holdout")


def role_split(role: str, split: str) -> str:
    """The benchmark split that plays `role` for the forget split `split`."""
    return {"forget": split, "retain": retain_of(split) or ""}.get(role, role)


def row_ids(rows: list[dict]) -> list[str]:
    """Per-sample keys of value_by_index: the QA id when the benchmark has one, else the row index."""
    return [str(r.get("qa_id") or i) for i, r in enumerate(rows)]


class Steps:
    """A transient rich progress bar, one task per stage (no-op when disabled)."""

    def __init__(self, enabled: bool):
        self._progress = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("eval {task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), transient=True, console=Console(stderr=True))

    def __enter__(self):
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.stop()

    @contextmanager
    def stage(self, description: str, total: int):
        if self._progress is None:
            yield lambda: None
            return
        task = self._progress.add_task(description, total=total)
        try:
            yield lambda: self._progress.advance(task)
        finally:
            self._progress.remove_task(task)


class EvalContext:
    """The model, the benchmark and the config of one evaluation, plus memoised per-sample inputs."""

    def __init__(self, model, tok, data, split: str, cfg: EvalConfig, engine=None, attributor=None,
                 steps: Steps | None = None, judge=None):
        self.model, self.tok, self.data, self.split, self.cfg = model, tok, data, split, cfg
        self.engine, self.attributor, self.judge = engine, attributor, judge  # judge: (model, tokenizer)
        self.steps = steps or Steps(False)
        self._memo: dict[tuple, object] = {}

    # -- rows ------------------------------------------------------------------------------------
    def rows(self, role: str) -> list[dict]:
        key = ("rows", role)
        if key not in self._memo:
            rows = list(get_split(self.data, role_split(role, self.split)))
            # TOFU scores utility on a fixed 400-QA subset of the retain split; so do we.
            self._memo[key] = evenly(rows, self.cfg.retain_qa()) if role == "retain" else rows
        return self._memo[key]  # type: ignore[return-value]

    def ids(self, role: str) -> list[str]:
        return row_ids(self.rows(role))

    # -- teacher forcing ---------------------------------------------------------------------------
    def answer_stats(self, role: str, column: str, question: str = "question",
                     detail: bool = False) -> list[AnswerStats]:
        """Stats of one answer column (e.g. answer, paraphrased_answer) for every row of a role."""
        # Forget and holdout answers also feed ES/EM/MIA: score them once, with token detail.
        detail = detail or (column == "answer" and role in ("forget", "holdout"))
        key = ("stats", role, column, question, detail)
        if key not in self._memo:
            rows = self.rows(role)
            pairs = [(r[question], r[column]) for r in rows]
            self._memo[key] = self._score(f"{role}/{column}", pairs, detail)
        return self._memo[key]  # type: ignore[return-value]

    def losses(self, role: str, column: str) -> np.ndarray:
        return np.array([s.avg_loss for s in self.answer_stats(role, column)])

    def perturbed_losses(self, role: str) -> list[list[float]]:
        """Mean token loss of every perturbed answer, one list per row (all rows scored in one pass)."""
        key = ("perturbed", role)
        if key not in self._memo:
            rows = self.rows(role)
            pairs = [(r["question"], p) for r in rows for p in r["perturbed_answers"]]
            flat = [s.avg_loss for s in self._score(f"{role}/perturbed", pairs, False)]
            out, at = [], 0
            for r in rows:
                out.append(flat[at: at + len(r["perturbed_answers"])])
                at += len(r["perturbed_answers"])
            self._memo[key] = out
        return self._memo[key]  # type: ignore[return-value]

    def _score(self, what: str, pairs: list[tuple[str, str]], detail: bool) -> list[AnswerStats]:
        n_batches = -(-len(pairs) // self.cfg.batch_size)
        with self.steps.stage(f"scoring {what}", n_batches) as tick:
            return score_answers(self.model, self.tok, pairs, self.cfg.batch_size, detail, on_batch=tick)

    # -- generation --------------------------------------------------------------------------------
    def greedy(self, role: str, question: str = "question") -> list[str]:
        key = ("greedy", role, question)
        if key not in self._memo:
            self._memo[key] = self._generate(f"{role}/{question}", self.rows(role), question, greedy=True, k=1)
        return self._memo[key]  # type: ignore[return-value]

    def sampled(self, role: str, question: str = "question") -> list[list[str]]:
        """`cfg.samples()` answers per row at `cfg.temperature`, seeded (same seed, same samples)."""
        key = ("sampled", role, question)
        if key not in self._memo:
            k = self.cfg.samples()
            flat = self._generate(f"{role}/{question} x{k}", self.rows(role), question, greedy=False, k=k)
            self._memo[key] = [flat[i * k:(i + 1) * k] for i in range(len(self.rows(role)))]
        return self._memo[key]  # type: ignore[return-value]

    def _generate(self, what: str, rows: list[dict], question: str, greedy: bool, k: int) -> list[str]:
        cfg = self.cfg
        sampling = SamplingConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=1.0,
                                  batch_size=cfg.gen_batch_size)
        prompts = [prompt_text(self.tok, r[question]) for r in rows]
        # Chunks of whole batches, so the bar moves; seeding once keeps samples reproducible.
        chunk = max(1, cfg.gen_batch_size // k)
        out: list[str] = []
        # Seeding must not reset the caller's random state (the RL learner samples with it between evals).
        with torch.random.fork_rng(), self.steps.stage(f"generating {what}", -(-len(prompts) // chunk)) as tick:
            for start in range(0, len(prompts), chunk):
                seed = None if greedy else cfg.seed + start
                out += generate(self.model, self.tok, prompts[start: start + chunk], sampling, greedy=greedy,
                                num_samples=k, seed=seed, engine=self.engine)
                tick()
        return out

    # -- attribution -------------------------------------------------------------------------------
    @cached_property
    def owner_columns(self) -> list[int]:
        """Column of each forget row's owner in the attributor's output."""
        owners = list(self.attributor.owners)
        missing = sorted({r["owner"] for r in self.rows("forget")} - set(owners))
        if missing:
            raise DareUError(f"the attributor does not know the owner(s) {', '.join(missing[:3])} of split "
                             f"{self.split}; train it on this benchmark (dareu train-attributor)")
        return [owners.index(r["owner"]) for r in self.rows("forget")]
