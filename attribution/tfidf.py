"""TF-IDF + logistic regression baseline, saved without pickle.

Prompt and response get separate vocabularies (a name in the question is a different feature from
the same name in the answer). The folder holds `tfidf.safetensors` (idf vectors, coefficients,
intercepts) and `tfidf.json` (vocabularies and vectorizer parameters); loading rebuilds the exact
transform from those arrays, so no code is ever unpickled from a shared folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from attribution.attributor import Attributor, read_info
from attribution.config import TfidfConfig
from attribution.data import Example
from dareu.errors import DareUError

FILES = ("tfidf.safetensors", "tfidf.json")
# one token pattern for training and loading: words and numbers, apostrophes kept ("X's")
TOKEN_PATTERN = r"(?u)\b\w[\w']*\b"


class _Tfidf:
    """A fitted TF-IDF transform reduced to data: vocabulary, idf and parameters."""

    def __init__(self, vocabulary: dict[str, int], idf: np.ndarray, ngram_max: int, sublinear_tf: bool):
        from sklearn.feature_extraction.text import CountVectorizer

        self.vocabulary, self.idf = vocabulary, idf.astype(np.float64)
        self.ngram_max, self.sublinear_tf = ngram_max, sublinear_tf
        self.counter = CountVectorizer(vocabulary=vocabulary, ngram_range=(1, ngram_max), lowercase=True,
                                       token_pattern=TOKEN_PATTERN, dtype=np.float64)

    @classmethod
    def fit(cls, texts: list[str], cfg: TfidfConfig) -> _Tfidf:
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(ngram_range=(1, cfg.ngram_max), min_df=cfg.min_df, sublinear_tf=cfg.sublinear_tf,
                              lowercase=True, token_pattern=TOKEN_PATTERN, dtype=np.float64)
        try:
            vec.fit(texts)
        except ValueError:  # every text empty (e.g. response-only prompts)
            return cls({}, np.zeros(0), cfg.ngram_max, cfg.sublinear_tf)
        vocab = {t: int(i) for t, i in vec.vocabulary_.items()}
        return cls(vocab, vec.idf_, cfg.ngram_max, cfg.sublinear_tf)

    def transform(self, texts: list[str]):
        """Same result as sklearn's TfidfVectorizer.transform (tf -> 1+log tf -> * idf -> l2 rows)."""
        import scipy.sparse as sp
        from sklearn.preprocessing import normalize

        if not self.vocabulary:
            return sp.csr_matrix((len(texts), 0))
        x = self.counter.transform(texts).tocsr()
        if self.sublinear_tf:
            np.log(x.data, x.data)
            x.data += 1.0
        x = x @ sp.diags(self.idf)
        return normalize(x, norm="l2", copy=False).tocsr()


class TfidfAttributor(Attributor):
    kind = "tfidf"

    def __init__(self, owners, prompt_tfidf: _Tfidf, response_tfidf: _Tfidf, coef: np.ndarray,
                 intercept: np.ndarray, **kw):
        super().__init__(owners, **kw)
        self.prompt_tfidf, self.response_tfidf = prompt_tfidf, response_tfidf
        self.coef, self.intercept = coef.astype(np.float32), intercept.astype(np.float32)

    def features(self, prompts: list[str], responses: list[str]):
        import scipy.sparse as sp

        return sp.hstack([self.prompt_tfidf.transform(prompts), self.response_tfidf.transform(responses)]).tocsr()

    def logits(self, prompts, responses) -> np.ndarray:
        return np.asarray(self.features(prompts, responses) @ self.coef.T) + self.intercept

    # -- folder
    def save(self, path: str | Path) -> None:
        from safetensors.numpy import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({"coef": self.coef, "intercept": self.intercept,
                   "idf_prompt": self.prompt_tfidf.idf.astype(np.float64),
                   "idf_response": self.response_tfidf.idf.astype(np.float64)}, str(path / FILES[0]))
        params = {"ngram_max": self.response_tfidf.ngram_max, "sublinear_tf": self.response_tfidf.sublinear_tf,
                  "token_pattern": TOKEN_PATTERN, "prompt_vocabulary": self.prompt_tfidf.vocabulary,
                  "response_vocabulary": self.response_tfidf.vocabulary}
        (path / FILES[1]).write_text(json.dumps(params))
        self.write_info(path)

    @classmethod
    def load(cls, path: str | Path) -> TfidfAttributor:
        from safetensors.numpy import load_file

        path = Path(path)
        info = read_info(path, cls.kind)
        missing = [f for f in FILES if not (path / f).is_file()]
        if missing:
            raise DareUError(f"{path} lacks {', '.join(missing)}; the tfidf attributor is incomplete, retrain it")
        arrays = load_file(str(path / FILES[0]))
        params = json.loads((path / FILES[1]).read_text())
        if params.get("token_pattern") != TOKEN_PATTERN:
            raise DareUError(f"{path} was saved with another token pattern; retrain it with this DareU")
        prompt = _Tfidf(params["prompt_vocabulary"], arrays["idf_prompt"], params["ngram_max"], params["sublinear_tf"])
        response = _Tfidf(params["response_vocabulary"], arrays["idf_response"], params["ngram_max"],
                          params["sublinear_tf"])
        if arrays["coef"].shape != (len(info["owners"]), len(prompt.vocabulary) + len(response.vocabulary)):
            raise DareUError(f"{path}: coefficient shape does not match its owners and vocabularies; retrain it")
        return cls(info["owners"], prompt, response, arrays["coef"], arrays["intercept"],
                   temperature=info["temperature"], response_only=info["response_only"],
                   benchmark=info.get("benchmark"), extra=_extra(info))


def _extra(info: dict) -> dict:
    return {k: v for k, v in info.items()
            if k not in ("format", "kind", "owners", "temperature", "response_only", "benchmark", "saved_at")}


def train_tfidf(owners: list[str], train: list[Example], cfg: TfidfConfig, response_only: bool,
                benchmark: dict) -> tuple[TfidfAttributor, dict]:
    """Fit the vectorizers and a multinomial logistic regression; returns the attributor and a train log."""
    import time
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    start = time.time()
    prompts = ["" if response_only else e.prompt for e in train]
    responses = [e.response for e in train]
    prompt_tfidf = _Tfidf.fit(prompts, cfg)
    response_tfidf = _Tfidf.fit(responses, cfg)
    index = {o: i for i, o in enumerate(owners)}
    y = np.array([index[e.label] for e in train])
    att = TfidfAttributor(owners, prompt_tfidf, response_tfidf, np.zeros((len(owners), 0)), np.zeros(len(owners)),
                          response_only=response_only, benchmark=benchmark, extra={"tfidf": vars(cfg).copy()})
    x = att.features(prompts, responses)
    clf = LogisticRegression(C=cfg.C, max_iter=cfg.max_iter)
    with warnings.catch_warnings(record=True) as caught:  # reported in the train log, not as a warning
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(x, y)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    # classes never seen in training (cannot happen after build_data's check) would shift columns
    coef = np.zeros((len(owners), x.shape[1]), dtype=np.float32)
    intercept = np.full(len(owners), -1e4, dtype=np.float32)
    coef[clf.classes_] = clf.coef_
    intercept[clf.classes_] = clf.intercept_
    att.coef, att.intercept = coef, intercept
    return att, {"seconds": time.time() - start, "features": int(x.shape[1]), "iterations": int(np.max(clf.n_iter_)),
                 "converged": converged}
