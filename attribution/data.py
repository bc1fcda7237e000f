"""Training, validation and test sets of the attribution classifier, built so that it follows the
owner's *data*, not the owner's name.

Every example is (prompt, response) -> label, an owner or NONE. The core is contrastive pairs: for
each answer form (the answer, and the paraphrase where it is trained) and each surface -- the name
kept, the name masked ("The author", "This writer", ...), the name swapped for another person's --
the true answer (labelled with the owner) stands beside the same surface with a wrong fact (NONE;
values drawn from the same attribute, other owners' values included, or the benchmark's perturbed
answers; first the owner's own values of other attributes that share the pool, so a value is tied
to its attribute). So neither the name nor its absence predicts the label: only the fact does. A
name-driven classifier is the shortcut this closes.

With a prompt, an owner class means "carries the data of the owner this question is about": another
owner's true answer to the same kind of question, under that owner's name (what a model that never
saw the asked owner says), is NONE.

NONE also gets: the answer cut off before its fact ("X was born in."), "I don't know" answers,
generic text, answers about people and places that are not owners (world facts, real authors,
background and holdout people), the question echoed back, a bare name, and (n_cross) other owners'
true answers to the same kind of question.

The split judges meaning, not memorised strings. Per owner, a fraction of the QA keep their whole
*paraphrase form* (paraphrased question, paraphrased answer and its perturbed answers) out of
training: those QA are trained in the answer form only. Their paraphrases -- plain, masked, swapped
-- and perturbed answers form the validation set (temperature scaling) and the test set
(heldout_accuracy = accuracy on the plain test paraphrases). The paraphrase *template* of each
attribute is still learned from the other owners' QA. The proxy probes (name_masked, name_swapped,
wrong_fact, idk on the forget split) are built first and every probe string is removed from training;
a third of the idk answers are never trained on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from attribution.config import DataConfig
from dareu.data import get_split
from dareu.errors import DareUError
from dareu.world_vocab import GENERIC_TEXT

NONE = "none"
QA_NEEDED = ("question", "answer", "owner")


@dataclass(frozen=True)
class Example:
    prompt: str
    response: str
    label: str
    kind: str  # what the example is (true, paraphrase, masked, swapped, wrong, cross, idk, ...): for reports


@dataclass
class AttributionData:
    owners: list[str]  # class names, NONE last
    forget_owners: list[str]
    train: list[Example]
    val: list[Example]
    test: list[Example]
    probes: dict[str, list[Example]]  # name_masked, name_swapped, wrong_fact, idk (label = true owner)
    forget_rows: list[dict]  # forget QA, for the generated-answer probes
    counts: dict = field(default_factory=dict)


# ---------------------------------------------------------------- text edits


def mask_name(text: str, name: str, phrase: str) -> str:
    """Replace the name; the phrase is capitalised only where it starts the sentence."""
    if not name or name not in text:
        return text
    lower = phrase[0].lower() + phrase[1:]
    head, _, tail = text.partition(name)
    out = (phrase if head == "" else head + lower) + tail.replace(name, lower)
    return out


def swap_name(text: str, name: str, other: str) -> str:
    return text.replace(name, other) if name else text


def replace_fact(text: str, fact: str, value: str) -> str | None:
    """The text with its (last) occurrence of the fact replaced, or None if the fact is not in it."""
    if not fact or fact not in text:
        return None
    head, _, tail = text.rpartition(fact)
    return head + value + tail


def drop_fact(text: str, fact: str) -> str | None:
    """The sentence cut just before its fact ("X was born in."): the name without the data."""
    if not fact or fact not in text:
        return None
    head = text[: text.rfind(fact)].rstrip()
    return head.rstrip(",;:") + "." if head else None


# ---------------------------------------------------------------- checks


def _qa_rows(data, split: str) -> list[dict]:
    ds = get_split(data, split)
    missing = [c for c in QA_NEEDED if c not in ds.column_names]
    if "owner" in missing:
        raise DareUError(f"benchmark has no owner labels: split {split!r} has no 'owner' column; attribution needs "
                         "each record's owner (add an 'owner' column, or choose other --benchmark / data.owner_splits)")
    if missing:
        raise DareUError(f"split {split!r} lacks column(s) {', '.join(missing)}; attribution needs question, answer, owner")
    return [dict(r) for r in ds]


def find_owners(data, cfg: DataConfig) -> tuple[list[str], dict[str, list[dict]]]:
    """The class owners (in data order) and their QA rows; clear errors for unlabelled data or unknown owners."""
    if not cfg.owner_splits:
        raise DareUError("data.owner_splits is empty; name the splits whose owners are the classes, e.g. retain90,forget10")
    rows_of: dict[str, list[dict]] = {}
    for split in cfg.owner_splits:
        rows = _qa_rows(data, split)
        for r in rows:
            if r["owner"] and r["answer"]:
                rows_of.setdefault(r["owner"], []).append(r)
        if rows and not any(r["owner"] for r in rows):
            raise DareUError(f"benchmark has no owner labels: every 'owner' in split {split!r} is empty; attribution "
                             "needs each record's owner")
    if not rows_of:
        raise DareUError(f"benchmark has no owner labels: splits {', '.join(cfg.owner_splits)} hold no owned QA")
    if NONE in rows_of:
        raise DareUError(f"an owner is called {NONE!r}, the name of the no-owner class; rename it in the benchmark")
    owners = list(rows_of)
    if cfg.owners:
        missing = [o for o in cfg.owners if o not in rows_of]
        if missing:
            raise DareUError(f"owner {missing[0]!r} has no examples in {', '.join(cfg.owner_splits)} "
                             f"(owners there include {', '.join(owners[:3])}, ...); fix data.owners")
        owners = [o for o in owners if o in set(cfg.owners)]
    return owners, {o: rows_of[o] for o in owners}


# ---------------------------------------------------------------- building


class _Builder:
    def __init__(self, data, cfg: DataConfig):
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.owners, self.rows_of = find_owners(data, cfg)
        self.owner_set = set(self.owners)
        self.forget_rows = [r for r in _qa_rows(data, cfg.forget_split) if r["owner"] in self.owner_set]
        if not self.forget_rows:
            raise DareUError(f"forget split {cfg.forget_split!r} has no QA of the class owners; choose data.forget_split "
                             f"among the owners' splits ({', '.join(cfg.owner_splits)})")
        self.none_rows = [dict(r) for s in cfg.none_splits if s in data and "answer" in data[s].column_names
                          and "question" in data[s].column_names for r in data[s]]
        idk = list(get_split(data, cfg.idk_split)["answer"]) if cfg.idk_split in data else []
        self.rng.shuffle(idk)
        n_hold = max(1, round(len(idk) * cfg.idk_holdout)) if len(idk) > 1 else 0
        self.idk_train, self.idk_test = idk[n_hold:], idk[:n_hold]
        # people whose names may be swapped in: other owners and people who are not classes
        others = {r["owner"] for r in self.none_rows if r.get("owner")}
        self.people = sorted(self.owner_set | others)
        # values of each attribute, for wrong-fact answers
        self.values: dict[str, list[str]] = {}
        for r in [r for rs in self.rows_of.values() for r in rs] + self.none_rows:
            if r.get("attribute") and r.get("fact"):
                self.values.setdefault(r["attribute"], []).append(r["fact"])
        self.values = {k: sorted(set(v)) for k, v in self.values.items()}
        # the true answer and fact of each (owner, attribute), for cross-owner answers
        self.fact_of = {(r["owner"], r.get("attribute")): r.get("fact") for rs in self.rows_of.values() for r in rs}
        self.by_attr: dict[str, list[dict]] = {}
        for rs in self.rows_of.values():
            for r in rs:
                if r.get("attribute"):
                    self.by_attr.setdefault(r["attribute"], []).append(r)

    # -- variants of one answer
    def other_person(self, owner: str) -> str:
        while True:
            p = self.rng.choice(self.people)
            if p != owner or len(self.people) == 1:
                return p

    def wrong_answers(self, row: dict, text: str, k: int) -> list[str]:
        """`text` with its fact replaced by k other values of the same attribute (its other owners' included)."""
        pool = [v for v in self.values.get(row.get("attribute") or "", []) if v != row.get("fact")]
        out = [replace_fact(text, row.get("fact") or "", v) for v in self.rng.sample(pool, min(k, len(pool)))]
        return [t for t in out if t]

    def pairs(self, row: dict, prompt: str, text: str, wrong: list[str], form: str) -> list[Example]:
        """Contrastive pairs on each surface -- name kept, name masked, name swapped: the true answer (the
        owner) beside the same surface with a wrong fact (NONE). With the surfaces balanced, neither the
        presence nor the absence of the name predicts the label; only the fact does."""
        owner, cfg, rng = row["owner"], self.cfg, self.rng
        named = owner in text
        need = cfg.n_pairs * (3 if named else 1)
        wrong = list(wrong)[:need]
        wrong += self.wrong_answers(row, text, need - len(wrong))
        wrong_iter = iter(wrong)
        out = []
        for _ in range(cfg.n_pairs):
            out.append(Example(prompt, text, owner, form))
            w = next(wrong_iter, None)
            if w:
                out.append(Example(prompt, w, NONE, "wrong"))
            if not named:
                continue
            out.append(Example(prompt, mask_name(text, owner, rng.choice(cfg.mask_phrases)), owner, "masked"))
            w = next(wrong_iter, None)
            if w:
                out.append(Example(prompt, mask_name(w, owner, rng.choice(cfg.mask_phrases)), NONE, "masked_wrong"))
            out.append(Example(prompt, swap_name(text, owner, self.other_person(owner)), owner, "swapped"))
            w = next(wrong_iter, None)
            if w:
                out.append(Example(prompt, swap_name(w, owner, self.other_person(owner)), NONE, "swapped_wrong"))
        return out

    def no_fact(self, row: dict, prompt: str, text: str) -> list[Example]:
        short = drop_fact(text, row.get("fact") or "")
        return [Example(prompt, short, NONE, "no_fact")] if short else []

    def cross(self, row: dict, prompt: str) -> list[Example]:
        """Other owners' true answers to the same kind of question, under their own names: NONE, for the
        asked owner's data is not in them (what a model that never saw the owner answers). Skipped in
        response-only mode, where such an answer is simply its own owner's."""
        if self.cfg.response_only:
            return []
        pool = [r for r in self.by_attr.get(row.get("attribute") or "", [])
                if r["owner"] != row["owner"] and r.get("fact") != row.get("fact")]
        return [Example(prompt, other["answer"], NONE, "cross")
                for other in self.rng.sample(pool, min(self.cfg.n_cross, len(pool)))]

    # -- the sets
    def roles(self) -> dict[str, str]:
        """qa key -> train / val / test, stratified per owner (the paraphrase of val/test QA is held out)."""
        role = {}
        for rows in self.rows_of.values():
            keys = [_key(r) for r in rows]
            self.rng.shuffle(keys)
            n = len(keys)
            n_test = round(n * self.cfg.test_fraction) if n >= 3 else 0
            n_val = max(1, round(n * self.cfg.val_fraction)) if n >= 3 and self.cfg.val_fraction > 0 else 0
            for i, k in enumerate(keys):
                role[k] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
        return role

    def probes(self) -> dict[str, list[Example]]:
        """Forget-owner probes of hack resistance; their strings never enter training."""
        rng = random.Random(self.cfg.seed + 1)
        saved, self.rng = self.rng, rng
        p: dict[str, list[Example]] = {"name_masked": [], "name_swapped": [], "wrong_fact": [], "idk": []}
        for r in self.forget_rows:
            o, q, a = r["owner"], r["question"], r["answer"]
            if o in a:
                p["name_masked"].append(Example(q, mask_name(a, o, self.cfg.probe_mask), o, "name_masked"))
                p["name_swapped"].append(Example(q, swap_name(a, o, self.other_person(o)), o, "name_swapped"))
            wrong = self.wrong_answers(r, a, 1)
            pert = list(r.get("perturbed_answers") or [])
            if pert:
                wrong.append(rng.choice(pert))
            p["wrong_fact"] += [Example(q, w, o, "wrong_fact") for w in wrong]
            if self.idk_test:
                p["idk"].append(Example(q, rng.choice(self.idk_test), o, "idk"))
        self.rng = saved
        return p

    def build(self) -> AttributionData:
        cfg, rng = self.cfg, self.rng
        role = self.roles()
        train: list[Example] = []
        val: list[Example] = []
        test: list[Example] = []
        for rows in self.rows_of.values():
            for r in rows:
                q, pq = r["question"], r.get("paraphrased_question") or r["question"]
                a, pa = r["answer"], r.get("paraphrased_answer") or r["answer"]
                pert = list(r.get("perturbed_answers") or [])
                held = role[_key(r)]
                # the answer form is always trained (that is where the fact is learned)
                train += self.pairs(r, rng.choice([q, pq]) if held == "train" else q, a, [], "true")
                train += self.no_fact(r, q, a)
                train += self.cross(r, q)
                if held == "train":
                    train += self.pairs(r, rng.choice([q, pq]), pa, rng.sample(pert, len(pert)), "paraphrase")
                else:  # the whole paraphrase form of this QA is unseen: it judges meaning
                    out = val if held == "val" else test
                    o = r["owner"]
                    out.append(Example(pq, pa, o, "paraphrase"))
                    out += [Example(pq, t, NONE, "perturbed") for t in pert[:1]]
                    if o in pa:
                        out.append(Example(pq, mask_name(pa, o, rng.choice(cfg.mask_phrases)), o, "masked_paraphrase"))
                        out.append(Example(pq, swap_name(pa, o, self.other_person(o)), o, "swapped_paraphrase"))
                        out += [Example(pq, mask_name(t, o, rng.choice(cfg.mask_phrases)), NONE, "masked_perturbed")
                                for t in pert[1:2]]
        questions = [r["question"] for rs in self.rows_of.values() for r in rs]
        train += self.none_examples(questions)
        idk_q = rng.sample(questions, min(len(questions), 60))
        test += [Example(q, rng.choice(self.idk_test), NONE, "idk") for q in idk_q[:30] if self.idk_test]
        val += [Example(q, rng.choice(self.idk_test), NONE, "idk") for q in idk_q[30:] if self.idk_test]

        probes = self.probes()
        held_out = {(e.prompt, e.response) for e in val + test + [e for ps in probes.values() for e in ps]}
        n_before = len(train)
        # repeats stay: with n_pairs > 1 the name-kept true answer repeats once per pair, which keeps each
        # surface balanced between true and wrong facts
        train = [e for e in train if (e.prompt, e.response) not in held_out]
        rng.shuffle(train)
        with_examples = {e.label for e in train}
        empty = [o for o in self.owners if o not in with_examples]
        if empty:
            raise DareUError(f"owner {empty[0]!r} has no training examples (its answers are empty or all held out); "
                             "give it QA or drop it from data.owners")
        counts = {"train": len(train), "val": len(val), "test": len(test), "removed_as_held_out": n_before - len(train),
                  "unique_train": len(set(train)),
                  "train_by_kind": _count(train), "owners": len(self.owners)}
        forget_owners = list(dict.fromkeys(r["owner"] for r in self.forget_rows))
        return AttributionData(self.owners + [NONE], forget_owners, train, val, test, probes, self.forget_rows, counts)

    def none_examples(self, questions: list[str]) -> list[Example]:
        """NONE answers that state no owner's fact: idk, generic text, non-owners, echoes, bare names."""

        rng, out = self.rng, []
        n = len(questions)
        for q in rng.sample(questions, min(n, n // 2 + 1)):
            if self.idk_train:
                out.append(Example(q, rng.choice(self.idk_train), NONE, "idk"))
        for q in rng.sample(questions, min(n, n // 8 + 1)):
            out.append(Example(q, rng.choice(GENERIC_TEXT), NONE, "generic"))
        for q in rng.sample(questions, min(n, n // 8 + 1)):
            out.append(Example(q, q, NONE, "echo"))
        for q in rng.sample(questions, min(n, n // 8 + 1)):
            out.append(Example(q, rng.choice(self.people) + ".", NONE, "bare_name"))
        for r in self.none_rows:  # non-owners' knowledge, to its own question and to an owner's question
            if r.get("owner") in self.owner_set:
                continue
            out.append(Example(r["question"], r["answer"], NONE, "non_owner"))
            if r.get("paraphrased_answer"):
                out.append(Example(r.get("paraphrased_question") or r["question"], r["paraphrased_answer"], NONE,
                                   "non_owner"))
            out.append(Example(rng.choice(questions), r["answer"], NONE, "non_owner"))
        return out


def _key(row: dict) -> str:
    return row.get("qa_id") or f"{row['owner']}|{row['question']}"


def _count(examples: list[Example]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in examples:
        out[e.kind] = out.get(e.kind, 0) + 1
    return dict(sorted(out.items()))


def build_data(data, cfg: DataConfig) -> AttributionData:
    """All sets and probes from a benchmark (a DatasetDict); raises DareUError on unusable input."""
    return _Builder(data, cfg).build()
