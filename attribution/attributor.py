"""The scoring interface every attributor kind shares, and the folder format that saves it.

A saved attributor folder holds `attributor.json` (kind, owners, temperature, input mode, the
benchmark it was trained on) beside its model files. `load_attributor(path)` reads the kind and
returns the matching class; loading a folder through the wrong class is a clear error.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from dareu.errors import DareUError

INFO_FILE = "attributor.json"
FORMAT = 1


def owners_signature(owners: Iterable[str]) -> str:
    """A short hash of the sorted owner names (the `none` class excluded): the benchmark's identity."""
    names = sorted(o for o in owners if o != "none")
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class Attributor:
    """Scores (prompt, response) pairs: calibrated probabilities over `owners` (the last is "none").

    Prompts are the plain question text (not chat-formatted); in response-only mode they are ignored.
    Subclasses implement `logits` (uncalibrated, batched) and the folder I/O.
    """

    kind: ClassVar[str] = ""

    def __init__(self, owners: list[str], temperature: float = 1.0, response_only: bool = False,
                 benchmark: dict | None = None, extra: dict | None = None):
        self.owners = list(owners)
        self.temperature = float(temperature)
        self.response_only = bool(response_only)
        self.benchmark = dict(benchmark or {})
        self.extra = dict(extra or {})
        self._index = {o: i for i, o in enumerate(self.owners)}

    # -- scoring
    def logits(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def _check(self, prompts: Sequence[str], responses: Sequence[str]) -> tuple[list[str], list[str]]:
        if isinstance(prompts, str) or isinstance(responses, str):
            raise DareUError("score() takes lists of prompts and responses, not single strings")
        prompts, responses = list(prompts), list(responses)
        if len(prompts) != len(responses):
            raise DareUError(f"score() got {len(prompts)} prompts but {len(responses)} responses; give one each")
        if self.response_only:
            prompts = [""] * len(responses)
        return prompts, responses

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """(n, len(owners)) calibrated probabilities."""
        prompts, responses = self._check(prompts, responses)
        if not responses:
            return np.zeros((0, len(self.owners)), dtype=np.float32)
        return softmax(self.logits(prompts, responses).astype(np.float64), self.temperature).astype(np.float32)

    def owner_probability(self, prompts: Sequence[str], responses: Sequence[str], owners: Sequence[str]) -> np.ndarray:
        """(n,) probability of each row's given owner; 0 where that owner is not a class."""
        owners = list(owners)
        if len(owners) != len(responses):
            raise DareUError(f"owner_probability() got {len(responses)} responses but {len(owners)} owners")
        probs = self.score(prompts, responses)
        idx = np.array([self._index.get(o, -1) for o in owners], dtype=np.int64)
        out = np.zeros(len(owners), dtype=np.float32)
        known = idx >= 0
        out[known] = probs[np.nonzero(known)[0], idx[known]]
        return out

    # -- benchmark identity
    def check_owners(self, owners: Iterable[str], where: str = "this benchmark") -> None:
        """Refuse to serve a benchmark whose owners this attributor was not trained on."""
        owners = [o for o in dict.fromkeys(owners) if o]
        missing = [o for o in owners if o not in self._index]
        if missing:
            raise DareUError(f"attributor was trained on another benchmark: owner {missing[0]!r} of {where} is not one "
                             f"of its {len(self.owners) - 1} classes ({len(missing)} missing); train one for it with "
                             "`dareu train-attributor`")

    # -- folder
    def info(self) -> dict:
        return {"format": FORMAT, "kind": self.kind, "owners": self.owners, "temperature": self.temperature,
                "response_only": self.response_only, "benchmark": self.benchmark, **self.extra}

    def write_info(self, path: str | Path) -> None:
        from dareu.runs import write_json

        write_json(Path(path) / INFO_FILE, {**self.info(), "saved_at": time.time()})

    def save(self, path: str | Path) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, path: str | Path) -> Attributor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({len(self.owners)} classes, T={self.temperature:.3g}, "
                f"{'response only' if self.response_only else 'prompt+response'})")


def read_info(path: str | Path, expected_kind: str | None = None) -> dict:
    """attributor.json of a folder, with clear errors for a missing folder, another kind or a plain model."""
    path = Path(path)
    if not path.is_dir():
        raise DareUError(f"attributor folder {path} does not exist; train one with `dareu train-attributor --out {path}`")
    info_path = path / INFO_FILE
    if not info_path.is_file():
        what = "a model folder" if (path / "config.json").is_file() else "not an attributor folder"
        raise DareUError(f"{path} is {what} with no {INFO_FILE}; pass a folder written by `dareu train-attributor`")
    try:
        info = json.loads(info_path.read_text())
    except json.JSONDecodeError as err:
        raise DareUError(f"{info_path} is not valid JSON ({err.msg}); retrain the attributor") from None
    kind = info.get("kind")
    if expected_kind is not None and kind != expected_kind:
        raise DareUError(f"{path} holds a {kind!r} attributor, not a {expected_kind!r} one; load it with "
                         "attribution.load_attributor(path), which picks the right kind")
    if info.get("format", 0) > FORMAT:
        raise DareUError(f"{path} was saved by a newer DareU (format {info['format']}); upgrade DareU")
    return info


def load_attributor(path: str | Path) -> Attributor:
    """Load any saved attributor folder (its kind is read from attributor.json)."""
    from attribution.llm import LLMAttributor
    from attribution.tfidf import TfidfAttributor

    info = read_info(path)
    classes = {LLMAttributor.kind: LLMAttributor, TfidfAttributor.kind: TfidfAttributor}
    if info.get("kind") not in classes:
        raise DareUError(f"{path}: unknown attributor kind {info.get('kind')!r}; known: {', '.join(classes)}")
    attributor = classes[info["kind"]].load(path)
    attributor.path = str(path)  # where it came from: evaluations record it
    return attributor
