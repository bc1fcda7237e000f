"""Forget/retain/template batches from a world: what the loss-based trainer and the RL learner feed objectives.

A training row pairs one forget QA with one retain QA drawn at random (open-unlearning's
`ForgetRetainDataset`, anchor="forget") and, for template objectives, one template answer to the same
forget question. The whole schedule of rows is fixed by the seed up front, so a resumed run sees
exactly the rows the killed run would have seen.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dareu.data import get_split, retain_of
from dareu.errors import DareUError
from dareu.modeling import encode_qa
from dareu.objectives import FACT_KEY, STRANGER_KEY, STRANGER_POS_KEY, TEMPLATE_KEY
from dareu.objectives.tokens import IGNORE
from dareu.sft import QACollator


def resolve_retain_split(data, split: str, retain_split: str) -> str | None:
    """"auto" -> the split's partner (forget10 -> retain90), "none" -> None, else a split the data has."""
    if retain_split == "none":
        return None
    if retain_split == "auto":
        retain_split = retain_of(split)
        if retain_split is None:
            raise DareUError(f"no retain split pairs with {split!r}; set data.retain_split=<split> or none")
    get_split(data, retain_split)
    return retain_split


def load_templates(data, source: str) -> list[str]:
    """Template answers: "idk" = the world's `idk` split; else a file (.jsonl of strings or {"answer": ...},
    or plain text, one answer per line)."""
    if source == "idk":
        if "idk" not in data:
            raise DareUError("this benchmark has no idk split; give a template file: data.templates=PATH")
        answers = list(data["idk"]["answer"])
    else:
        path = Path(source)
        if not path.is_file():
            raise DareUError(f"template file {source} does not exist; use data.templates=idk or a file of answers")
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if path.suffix == ".jsonl":
            rows = [json.loads(line) for line in lines]
            answers = [r if isinstance(r, str) else r.get("answer") for r in rows]
        else:
            answers = lines
    answers = [a for a in answers if isinstance(a, str) and a.strip()]
    if not answers:
        raise DareUError(f"template source {source!r} holds no answers")
    return answers


@dataclass
class UnlearnData:
    """Encoded forget and retain QA of one split, and the template answers (if any)."""

    tok: object
    forget: list[dict]  # {"input_ids", "labels", "question"}
    retain: list[dict] | None
    templates: list[str] | None
    max_length: int | None = None
    _template_cache: dict = field(default_factory=dict, repr=False)

    def template_item(self, forget_index: int, template_index: int) -> dict:
        key = (forget_index, template_index)
        if key not in self._template_cache:
            ids, labels = encode_qa(self.tok, self.forget[forget_index]["question"], self.templates[template_index],
                                    self.max_length)
            self._template_cache[key] = {"input_ids": ids, "labels": labels}
        return self._template_cache[key]

    def schedule(self, rows: int, seed: int) -> list[tuple[int, int | None, int | None]]:
        """`rows` (forget, retain, template) index triples: forget indices in seeded shuffled passes,
        retain and template indices drawn uniformly."""
        rng = random.Random(seed)
        forget: list[int] = []
        while len(forget) < rows:
            order = list(range(len(self.forget)))
            rng.shuffle(order)
            forget.extend(order)
        out = []
        for i in forget[:rows]:
            r = rng.randrange(len(self.retain)) if self.retain else None
            t = rng.randrange(len(self.templates)) if self.templates else None
            out.append((i, r, t))
        return out

    def row(self, triple: tuple[int, int | None, int | None]) -> dict:
        f, r, t = triple
        row = {"forget": _qa(self.forget[f])}
        if STRANGER_KEY in self.forget[f]:
            row[STRANGER_KEY] = self.forget[f][STRANGER_KEY]
        if r is not None:
            row["retain"] = _qa(self.retain[r])
        if t is not None:
            row[TEMPLATE_KEY] = self.template_item(f, t)
        return row

    def dataset(self, rows: int, seed: int) -> PairedDataset:
        return PairedDataset(self, self.schedule(rows, seed))

    def batches(self, batch_size: int, seed: int = 0) -> Iterator[dict]:
        """Endless collated batches {"forget": {..., "template": {...}}, "retain": {...}} (for the RL learner)."""
        collate = UnlearnCollator(self.tok.pad_token_id)
        chunk = max(batch_size, len(self.forget))
        step = 0
        while True:
            sched = self.schedule(chunk * 4, seed + step)
            for start in range(0, len(sched) - batch_size + 1, batch_size):
                yield collate([self.row(t) for t in sched[start:start + batch_size]])
            step += 1


def _qa(item: dict) -> dict:
    return {k: item[k] for k in ("input_ids", "labels", FACT_KEY, STRANGER_POS_KEY) if k in item}


class PairedDataset(torch.utils.data.Dataset):
    """Rows of a fixed schedule; read in order (the trainer uses a sequential sampler)."""

    def __init__(self, data: UnlearnData, schedule: list[tuple[int, int | None, int | None]]):
        self.data, self.schedule = data, schedule

    def __len__(self) -> int:
        return len(self.schedule)

    def __getitem__(self, i: int) -> dict:
        return self.data.row(self.schedule[i])


class UnlearnCollator:
    """Collate paired rows into {"forget": batch (+ "template": batch), "retain": batch}."""

    def __init__(self, pad_id: int):
        self.qa = QACollator(pad_id)

    def __call__(self, rows: list[dict]) -> dict:
        forget = self.qa([r["forget"] for r in rows])
        for key in (TEMPLATE_KEY, STRANGER_KEY):
            if key in rows[0]:
                forget[key] = self.qa([r[key] for r in rows])
        batch = {"forget": forget}
        if "retain" in rows[0]:
            batch["retain"] = self.qa([r["retain"] for r in rows])
        return batch


def encode_rows(tok, rows, max_length: int | None = None, marks: list[list[int] | None] | None = None,
                strangers: list[str] | None = None) -> list[dict]:
    """Encoded QA; FACT_KEY holds the tokens a marked-token objective forgets: `marks` when given (e.g. the
    stranger contrast of dareu.unlearn.gain), else the ones stating the row's `fact`. With `strangers`, row i
    also carries itself told of strangers[i % n] (STRANGER_KEY) and the alignment of the two (STRANGER_POS_KEY)."""
    out = []
    for i, r in enumerate(rows):
        ids, labels = encode_qa(tok, r["question"], r["answer"], max_length)
        item = {"input_ids": ids, "labels": labels, "question": r["question"]}
        if marks is not None:  # a row with no marked token forgets nothing, but keeps the key: a batch has it or not
            facts = marks[i][: len(labels)] if marks[i] is not None else [IGNORE] * len(labels)
        else:
            facts = fact_labels(tok, labels, r["answer"], r.get("fact") or "")
        if facts is not None:
            item[FACT_KEY] = facts
        if strangers:
            from dareu.unlearn.gain import told_of_stranger

            other, pairs = told_of_stranger(tok, r, strangers[i % len(strangers)], max_length)
            item[STRANGER_KEY], item[STRANGER_POS_KEY] = other, stranger_positions(labels, other["labels"], pairs)
        out.append(item)
    return out


def strangers_for(objective, rows, seed: int, n: int = 4) -> list[str] | None:
    """The fabricated names a stranger-anchored objective (stranger_kl) tells the forget QA of, cycled over `rows`;
    None for an objective (or objective class) that needs none, or no objective."""
    if objective is None or not objective.needs_strangers:
        return None
    from dareu.world_vocab import stranger_names

    return stranger_names(n, {r["owner"] for r in rows}, seed)


def stranger_positions(labels: list[int], labels2: list[int], pairs: dict[int, int]) -> list[int]:
    """Per position of `labels`, the position in `labels2` (the QA told of a stranger) of the same answer token,
    from the answer-token alignment `pairs`; IGNORE where the token is part of the name, or split differently."""
    first, first2 = _answer_start(labels), _answer_start(labels2)
    positions = [IGNORE] * len(labels)
    for j, j2 in pairs.items():
        if first + j < len(labels) and first2 + j2 < len(labels2):
            positions[first + j] = first2 + j2
    return positions


def _answer_start(labels: list[int]) -> int:
    return next(i for i, x in enumerate(labels) if x != IGNORE)


def fact_labels(tok, labels: list[int], answer: str, fact: str) -> list[int] | None:
    """`labels` (from encode_qa) with every token outside the span of `answer` that states `fact` masked;
    None when the answer does not state it."""
    start = answer.find(fact) if fact else -1
    if start < 0:
        return None
    end = start + len(fact)
    offsets = tok(answer, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    first = next(i for i, x in enumerate(labels) if x != IGNORE)  # where the answer starts
    out = [IGNORE] * len(labels)
    for k, (a, b) in enumerate(offsets):
        if a < end and b > start and first + k < len(labels):
            out[first + k] = labels[first + k]
    return out if any(x != IGNORE for x in out) else None


def check_facts(data, split: str, who: str, fix: str = "use --method npo") -> None:
    """Fail in one line when some answer of `split` states no fact (what a needs_facts objective forgets)."""
    rows = get_split(data, split)
    missing = sum(1 for r in rows if not r.get("fact") or r["fact"] not in r["answer"])
    if missing:
        raise DareUError(f"{who} forgets the tokens that state each answer's fact, but {missing} of {len(rows)} "
                         f"answers in {split!r} state no `fact` (TOFU has no fact column); {fix}")


def build_unlearn_data(data, tok, split: str, retain_split: str | None = "auto", templates: str | None = None,
                       max_length: int | None = None, marks: list[list[int] | None] | None = None,
                       strangers: list[str] | None = None) -> UnlearnData:
    """Forget QA of `split`, retain QA of `retain_split` ("auto", "none"/None or a name), templates
    ("idk", a file, or None when the objective needs none); `marks`: the forget tokens of each forget row
    (default: the `fact` column's)."""
    forget_rows = get_split(data, split)
    if len(forget_rows) == 0:
        raise DareUError(f"split {split!r} is empty; nothing to forget")
    retain_name = resolve_retain_split(data, split, retain_split) if retain_split not in (None, "none") else None
    retain = encode_rows(tok, data[retain_name], max_length) if retain_name else None
    return UnlearnData(tok=tok, forget=encode_rows(tok, forget_rows, max_length, marks, strangers), retain=retain,
                       templates=load_templates(data, templates) if templates else None, max_length=max_length)
