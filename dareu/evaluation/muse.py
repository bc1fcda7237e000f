"""MUSE (Shi et al. 2024) for benchmarks in MUSE's layout: VerbMem, KnowMem and PrivLeak.

A MUSE folder (as in swj0419/muse_bench `data/<corpus>/`) holds
`verbmem/forget.json` ([{prompt, gt}]), `knowmem/{forget,retain}_qa{,_icl}.json` ([{question, answer}])
and `privleak/{forget,holdout}.json` (lists of texts). Scores are fractions in [0, 1] (MUSE prints x100).
ROUGE-L F1 uses stemming, as open-unlearning's re-implementation does (muse_bench itself does not stem).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from dareu.errors import DareUError
from dareu.evaluation import metrics as M
from dareu.evaluation.suite import entry
from dareu.generation import SamplingConfig, generate
from dareu.rouge import rouge_l

FILES = {"verbmem_forget": "verbmem/forget.json", "knowmem_forget_qa": "knowmem/forget_qa.json",
         "knowmem_forget_qa_icl": "knowmem/forget_qa_icl.json", "knowmem_retain_qa": "knowmem/retain_qa.json",
         "knowmem_retain_qa_icl": "knowmem/retain_qa_icl.json", "privleak_forget": "privleak/forget.json",
         "privleak_holdout": "privleak/holdout.json"}
KNOWMEM_STOPS = ("\n\n", "\nQuestion", "Question:")


def is_muse(path: str | Path) -> bool:
    p = Path(path)
    return (p / "verbmem").is_dir() or (p / "knowmem").is_dir()


def load_muse(path: str | Path) -> dict[str, list]:
    """The parts of a MUSE folder that exist (Books has no KnowMem, for instance)."""
    p = Path(path)
    if not is_muse(p):
        raise DareUError(f"{p} is not in MUSE's layout (no verbmem/ or knowmem/ folder); see dareu/evaluation/muse.py")
    data = {}
    for key, rel in FILES.items():
        if (p / rel).is_file():
            data[key] = json.loads((p / rel).read_text())
    return data


def verbmem(model, tok, prompts: list[str], truths: list[str], max_new_tokens: int = 128, engine=None) -> dict:
    """VerbMem: ROUGE-L F1 of the greedy continuation of each forget-passage prompt against the true
    continuation cut to `max_new_tokens` tokens. Lower = less verbatim memorisation."""
    outs = generate(model, tok, prompts, SamplingConfig(max_new_tokens=max_new_tokens), engine=engine)
    truths = [tok.decode(tok(t, add_special_tokens=False)["input_ids"][:max_new_tokens]) for t in truths]
    values = [rouge_l(t, o, kind="f1") for t, o in zip(truths, outs)]
    return entry(np.mean(values), {str(i): {"rougeL_f1": v, "generation": o} for i, (v, o) in
                                   enumerate(zip(values, outs))})


def knowmem_prompt(question: str, icl: list[tuple[str, str]]) -> str:
    shots = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in icl)
    return f"{shots}Question: {question}\nAnswer: "


def cut(text: str, stops=KNOWMEM_STOPS) -> str:
    for s in stops:
        text = text.split(s)[0]
    return text.strip()


def knowmem(model, tok, questions: list[str], answers: list[str], icl: list[tuple[str, str]],
            max_new_tokens: int = 32, engine=None) -> dict:
    """KnowMem: few-shot QA (MUSE's `Question: ...\\nAnswer: ...` prompt), greedy answer cut at a blank line
    or the next question, ROUGE-L F1 against the answer. Forget: lower is better; retain: utility."""
    prompts = [knowmem_prompt(q, icl) for q in questions]
    outs = [cut(o) for o in generate(model, tok, prompts, SamplingConfig(max_new_tokens=max_new_tokens),
                                     engine=engine)]
    values = [rouge_l(a, o, kind="f1") for a, o in zip(answers, outs)]
    return entry(np.mean(values), {str(i): {"rougeL_f1": v, "generation": o} for i, (v, o) in
                                   enumerate(zip(values, outs))})


@torch.no_grad()
def text_logprobs(model, tok, texts: list[str], max_length: int = 2048) -> list[np.ndarray]:
    """Token log-probs of plain texts (every token after the first), one text at a time."""
    dev = next(model.parameters()).device
    out = []
    for text in texts:
        ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"][:, :max_length].to(dev)
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
        out.append(logp.gather(-1, ids[0, 1:, None]).squeeze(-1).cpu().numpy())
    return out


def evaluate_muse(model, tok, data: dict[str, list], retain_logs: dict | None = None, k: float = 0.4,
                  verbmem_tokens: int = 128, knowmem_tokens: int = 32, engine=None) -> dict:
    """verbmem_f, knowmem_f, knowmem_r, mia_min_k (forget vs holdout texts) and privleak (MUSE's token
    budgets: 128 new tokens for VerbMem, 32 for KnowMem)."""
    out = {}
    if "verbmem_forget" in data:
        rows = data["verbmem_forget"]
        out["verbmem_f"] = verbmem(model, tok, [r["prompt"] for r in rows], [r["gt"] for r in rows],
                                   verbmem_tokens, engine=engine)
    for side in ("forget", "retain"):
        qa, icl = data.get(f"knowmem_{side}_qa"), data.get(f"knowmem_{side}_qa_icl", [])
        if qa:
            out[f"knowmem_{side[0]}"] = knowmem(model, tok, [r["question"] for r in qa], [r["answer"] for r in qa],
                                                [(r["question"], r["answer"]) for r in icl], knowmem_tokens,
                                                engine=engine)
    if "privleak_forget" in data and "privleak_holdout" in data:
        scores = {s: [M.min_k(lp, k) for lp in text_logprobs(model, tok, data[f"privleak_{s}"])]
                  for s in ("forget", "holdout")}
        auc = M.mia_auc(scores["forget"], scores["holdout"])
        out["mia_min_k"] = entry(auc, {f"{s}/{i}": {"score": v, "split": s} for s in scores
                                       for i, v in enumerate(scores[s])})
        ref = (retain_logs or {}).get("mia_min_k", {}).get("agg_value")
        out["privleak"] = entry(M.privleak(auc, 0.5 if ref is None else ref), retain_auc=0.5 if ref is None else ref,
                                **({} if ref is not None else {"note": "no retain logs: retain AUC taken as 0.5"}))
    return out
