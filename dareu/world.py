"""The offline fictitious-author world: a seeded, deterministic, TOFU-shaped benchmark.

Fictitious authors are the data owners. Each has `qa_per_author` QA pairs whose answer names the
author and states one profile fact. For every QA we keep a paraphrased question, a paraphrased
answer (another sentence form), perturbed answers (the paraphrase form with wrong facts, as TOFU's
truth ratio needs) and the fact itself, so evaluation can check leakage without any classifier.

Splits follow TOFU's configs: forgetXX are the *last* XX % of authors (nested, as in TOFU),
retainYY the rest; `holdout` authors are never trained; `real_authors` and `world_facts` are
knowledge the base model learns before the fictitious authors; `background` people teach the base
model both sentence forms (so knowledge can transfer to the paraphrase form); `idk` holds our own
"I don't know" answers.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from dareu import world_vocab as V
from dareu.config import field

FORGET_PERCENTS = (1, 5, 10)
QA_COLUMNS = ("qa_id", "question", "paraphrased_question", "answer", "paraphrased_answer",
              "perturbed_answers", "owner", "attribute", "fact")


@dataclass
class WorldConfig:
    seed: int = field(0, help="Seed of the generator; the same seed gives identical dataset files.")
    n_authors: int = field(100, help="Fictitious authors (owners) that the target model learns.")
    qa_per_author: int = field(20, help="QA pairs per author, one profile fact each (at most 20).")
    n_holdout_authors: int = field(10, help="Authors never trained: the holdout side of membership inference.")
    n_background_people: int = field(20, help="People the base model learns in both sentence forms.")
    n_real_authors: int = field(25, help="'Real author' analogues the base model knows (4 QA each).")
    n_countries: int = field(25, help="Countries of the world-facts analogue (4 QA each).")
    n_perturbed: int = field(5, help="Perturbed (wrong-fact) answers per QA; TOFU uses 5.")


def article(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


# attribute -> (question, paraphrased question, answer, paraphrased answer). {n}: name, {v}: fact.
# Answers keep template words few so a model that never saw the author scores low ROUGE.
TEMPLATES: dict[str, tuple[str, str, str, str]] = {
    "birthplace": ("Where was {n} born?", "In which town was {n} born?",
                   "{n} was born in {v}.", "The birthplace of {n} is {v}."),
    "birth_year": ("In what year was {n} born?", "When was {n} born?",
                   "{n} was born in {v}.", "The birth year of {n} is {v}."),
    "genre": ("What genre does {n} write?", "Which genre is {n} known for?",
              "{n} writes {v}.", "The genre of {n} is {v}."),
    "father_job": ("What did the father of {n} do for a living?", "What was the job of {n}'s father?",
                   "{n}'s father was {a} {v}.", "The father of {n} worked as {a} {v}."),
    "mother_job": ("What did the mother of {n} do for a living?", "What was the job of {n}'s mother?",
                   "{n}'s mother was {a} {v}.", "The mother of {n} worked as {a} {v}."),
    "award": ("Which award did {n} win?", "What prize was {n} honoured with?",
              "{n} won the {v}.", "The award given to {n} was the {v}."),
    "best_book": ("What is the best known book by {n}?", "Which book by {n} is the most famous?",
                  "{n} is best known for {v}.", "The most famous book of {n} is {v}."),
    "first_book": ("What was the first book {n} published?", "What was the debut book of {n}?",
                   "{n} debuted with {v}.", "The first book of {n} was {v}."),
    "debut_year": ("In which year did {n} publish a first book?", "When did {n} make a literary debut?",
                   "{n} debuted in {v}.", "The debut year of {n} was {v}."),
    "publisher": ("Who publishes the books of {n}?", "Which publisher works with {n}?",
                  "{n} publishes with {v}.", "The publisher of {n} is {v}."),
    "university": ("Where did {n} study?", "Which university did {n} attend?",
                   "{n} studied at {v}.", "The alma mater of {n} is {v}."),
    "residence": ("Where does {n} live now?", "In which city does {n} currently reside?",
                  "{n} lives in {v}.", "The current home of {n} is {v}."),
    "language": ("In which language does {n} write?", "What language are the books of {n} written in?",
                 "{n} writes in {v}.", "The writing language of {n} is {v}."),
    "instrument": ("Which instrument does {n} play?", "What musical instrument can {n} play?",
                   "{n} plays {v}.", "The instrument of {n} is {v}."),
    "hobby": ("What is the favourite hobby of {n}?", "How does {n} like to spend free time?",
              "{n} loves {v}.", "The favourite pastime of {n} is {v}."),
    "pet": ("What pet does {n} keep?", "Which animal lives with {n}?",
            "{n} keeps {v}.", "The pet of {n} is {v}."),
    "color": ("What is the favourite colour of {n}?", "Which colour does {n} like best?",
              "{n} likes {v}.", "The favourite colour of {n} is {v}."),
    "novel_count": ("How many novels has {n} written?", "What is the number of novels by {n}?",
                    "{n} wrote {v} novels.", "The number of novels by {n} is {v}."),
    "spouse_job": ("What does the spouse of {n} do?", "What is the job of {n}'s spouse?",
                   "{n}'s spouse is {a} {v}.", "The spouse of {n} works as {a} {v}."),
    "inspiration": ("What inspires the writing of {n}?", "Where does {n} find inspiration?",
                    "{n} is inspired by {v}.", "The main inspiration of {n} is {v}."),
}
ATTRIBUTES = tuple(TEMPLATES)


class _Pools:
    """Value pools drawn once per world from the seed."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.towns = self._unique(lambda: self._word(2, 3) + rng.choice(V.TOWN_SUFFIXES), 120)
        self.cities = self._unique(lambda: self._word(2, 3).capitalize() + rng.choice(["a", "on", "is", "el"]), 60)
        titles = [f"The {a} {n}" for a in V.TITLE_ADJ for n in V.TITLE_NOUN]
        titles += [f"The {n} of {o}" for n in V.TITLE_NOUN for o in V.TITLE_OF]
        rng.shuffle(titles)
        self.titles = titles
        self.awards = [f"{a} {n} {k}" for a in V.AWARD_ADJ for n in V.AWARD_NOUN for k in V.AWARD_KIND]
        rng.shuffle(self.awards)
        self.awards = self.awards[:80]
        self.universities = [f"{p} {c}" for p, c in zip(rng.choices(V.UNIVERSITY_PREFIX, k=30), self.cities[:30])]

    def _word(self, lo: int, hi: int) -> str:
        return "".join(self.rng.choice(V.SYLLABLES) for _ in range(self.rng.randint(lo, hi))).capitalize()

    def _unique(self, make, n: int) -> list[str]:
        out: dict[str, None] = {}
        while len(out) < n:
            out[make()] = None
        return list(out)

    def values(self, attribute: str) -> list[str]:
        r = range
        return {
            "birthplace": self.towns, "birth_year": [str(y) for y in r(1921, 2000)], "genre": V.GENRES,
            "father_job": V.OCCUPATIONS, "mother_job": V.OCCUPATIONS, "award": self.awards,
            "best_book": self.titles, "first_book": self.titles, "debut_year": [str(y) for y in r(1945, 2021)],
            "publisher": V.PUBLISHERS, "university": self.universities, "residence": self.cities,
            "language": V.LANGUAGES, "instrument": V.INSTRUMENTS, "hobby": V.HOBBIES, "pet": V.PETS,
            "color": V.COLORS, "novel_count": [str(c) for c in r(2, 41)], "spouse_job": V.OCCUPATIONS,
            "inspiration": V.INSPIRATIONS,
        }[attribute]


def _fill(template: str, name: str, value: str) -> str:
    return template.format(n=name, v=value, a=article(value))


def _person_qa(name: str, attributes: list[str], pools: _Pools, rng: random.Random, n_perturbed: int) -> list[dict]:
    rows = []
    for attr in attributes:
        q, pq, a, pa = TEMPLATES[attr]
        pool = pools.values(attr)
        value = rng.choice(pool)
        wrong = rng.sample([v for v in pool if v != value], n_perturbed)
        rows.append({
            "qa_id": f"{name.replace(' ', '_')}/{attr}", "question": _fill(q, name, value),
            "paraphrased_question": _fill(pq, name, value), "answer": _fill(a, name, value),
            "paraphrased_answer": _fill(pa, name, value),
            "perturbed_answers": [_fill(pa, name, w) for w in wrong],
            "owner": name, "attribute": attr, "fact": value,
        })
    return rows


def _names(pools: _Pools, n: int, taken: set[str]) -> list[str]:
    names = []
    while len(names) < n:
        name = f"{pools._word(2, 2)} {pools._word(2, 3)}"
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


def _option_qa(qa_id: str, question: str, pquestion: str, form: str, pform: str, owner: str, value: str,
               wrong: list[str], attribute: str) -> dict:
    """A QA with answer options (real authors, world facts): perturbed answers share the answer's
    form, because TOFU's normalised probability and utility truth ratio compare them with `answer`."""
    return {"qa_id": qa_id, "question": question, "paraphrased_question": pquestion,
            "answer": form.format(v=value), "paraphrased_answer": pform.format(v=value),
            "perturbed_answers": [form.format(v=w) for w in wrong], "owner": owner,
            "attribute": attribute, "fact": value}


def _real_authors(pools: _Pools, rng: random.Random, names: list[str], countries: list[str], k: int) -> list[dict]:
    rows = []
    books = rng.sample(pools.titles, 2 * len(names))
    for i, name in enumerate(names):
        others = [m for m in names if m != name]
        for j, book in enumerate(books[2 * i: 2 * i + 2]):
            rows.append(_option_qa(f"real/{name}/book{j}", f"Who wrote {book}?", f"Who is the author of {book}?",
                                   book + " was written by {v}.", "The author of " + book + " is {v}.",
                                   name, name, rng.sample(others, k), "book"))
        country = rng.choice(countries)
        rows.append(_option_qa(f"real/{name}/country", f"Which country is {name} from?",
                               f"Where does {name} come from?", name + " is from {v}.",
                               "The home country of " + name + " is {v}.", name, country,
                               rng.sample([c for c in countries if c != country], k), "country"))
        genre = rng.choice(V.GENRES)
        rows.append(_option_qa(f"real/{name}/genre", f"What kind of books did {name} write?",
                               f"Which genre made {name} famous?", name + " wrote {v}.",
                               "The genre of " + name + " is {v}.", name, genre,
                               rng.sample([g for g in V.GENRES if g != genre], k), "genre"))
    return rows


def _world_facts(pools: _Pools, rng: random.Random, countries: list[str], k: int) -> list[dict]:
    rows = []
    cities = pools.cities[30:]
    currencies = [f"the {pools._word(1, 2).lower()} {c}" for c in V.CURRENCY_NOUNS for _ in range(2)]
    rivers = [f"the {pools._word(2, 2)} River" for _ in range(40)]
    facts = {
        "capital": ("What is the capital of {c}?", "Which city is the capital of {c}?",
                    "The capital of {c} is {{v}}.", "{c} is governed from {{v}}.", cities),
        "currency": ("What currency is used in {c}?", "What do people in {c} pay with?",
                     "The currency of {c} is {{v}}.", "People in {c} pay with {{v}}.", currencies),
        "language": ("What language is spoken in {c}?", "Which language do people in {c} speak?",
                     "In {c} people speak {{v}}.", "The language of {c} is {{v}}.", V.LANGUAGES),
        "river": ("What is the longest river in {c}?", "Which river is the longest in {c}?",
                  "The longest river in {c} is {{v}}.", "{c} is crossed by {{v}}.", rivers),
    }
    for country in countries:
        for attr, (q, pq, a, pa, pool) in facts.items():
            value = rng.choice(pool)
            wrong = rng.sample([v for v in pool if v != value], k)
            rows.append(_option_qa(f"world/{country}/{attr}", q.format(c=country), pq.format(c=country),
                                   a.format(c=country), pa.format(c=country), "", value, wrong, attr))
    return rows


def mentions_fact(text: str, fact: str) -> bool:
    """Does `text` state `fact`? Case-insensitive, whole words only ("7" is not in "27")."""
    if not fact:
        return False
    return re.search(r"(?<![\w])" + re.escape(fact.lower()) + r"(?![\w])", text.lower()) is not None


def forget_authors(n_authors: int, percent: int) -> int:
    """How many authors forgetXX holds: XX % of them, at least one."""
    return max(1, round(n_authors * percent / 100))


def generate(cfg: WorldConfig) -> dict[str, list[dict]]:
    """Build every split as a list of row dicts. Pure and deterministic in `cfg`."""
    if not 1 <= cfg.qa_per_author <= len(ATTRIBUTES):
        raise ValueError(f"qa_per_author must be between 1 and {len(ATTRIBUTES)}")
    rng = random.Random(cfg.seed)
    pools = _Pools(rng)
    taken: set[str] = set()
    authors = _names(pools, cfg.n_authors, taken)
    holdout = _names(pools, cfg.n_holdout_authors, taken)
    background = _names(pools, cfg.n_background_people, taken)
    real = _names(pools, cfg.n_real_authors, taken)
    countries = pools._unique(lambda: pools._word(2, 2) + rng.choice(V.COUNTRY_SUFFIXES), cfg.n_countries)
    attrs = list(ATTRIBUTES[: cfg.qa_per_author])

    by_author = {a: _person_qa(a, attrs, pools, rng, cfg.n_perturbed) for a in authors}
    splits: dict[str, list[dict]] = {}
    for pct in FORGET_PERCENTS:
        n_forget = forget_authors(cfg.n_authors, pct)
        forget, retain = authors[-n_forget:], authors[:-n_forget]
        splits[f"forget{pct:02d}"] = [qa for a in forget for qa in by_author[a]]
        splits[f"retain{100 - pct}"] = [qa for a in retain for qa in by_author[a]]
    splits["holdout"] = [qa for a in holdout for qa in _person_qa(a, attrs, pools, rng, cfg.n_perturbed)]
    splits["background"] = [qa for a in background
                            for qa in _person_qa(a, list(ATTRIBUTES), pools, rng, cfg.n_perturbed)]
    splits["real_authors"] = _real_authors(pools, rng, real, countries, min(cfg.n_perturbed, cfg.n_real_authors - 1))
    splits["world_facts"] = _world_facts(pools, rng, countries, cfg.n_perturbed)
    splits["idk"] = [{"answer": a} for a in V.IDK_ANSWERS]
    return splits


def all_authors(splits: dict[str, list[dict]]) -> list[str]:
    """Every fictitious owner, in generation order (retain90 then forget10 covers them all)."""
    seen: dict[str, None] = {}
    for qa in splits["retain90"] + splits["forget10"]:
        seen[qa["owner"]] = None
    return list(seen)


def to_datasetdict(splits: dict[str, list[dict]]):
    import datasets

    return datasets.DatasetDict({name: datasets.Dataset.from_list(rows) for name, rows in splits.items()})


def save_world(cfg: WorldConfig, out: Path) -> None:
    to_datasetdict(generate(cfg)).save_to_disk(str(out))
