"""Attribution models of data owners: the reward of de-attribution.

    from attribution import load_attributor
    a = load_attributor("A")                   # any kind, from a folder written by `dareu train-attributor`
    a.score(prompts, responses)                # (n, len(a.owners)) calibrated probabilities; a.owners[-1] == "none"
    a.owner_probability(prompts, responses, owners)  # (n,) probability of each row's owner

Kinds: "llm" (a causal LM with a classification head, attribution/llm.py) and "tfidf" (TF-IDF +
logistic regression, attribution/tfidf.py). `AttributorServer` wraps one for a Ray actor.
"""

from attribution.attributor import Attributor, load_attributor, owners_signature
from attribution.data import NONE
from attribution.server import AttributorServer

__all__ = ["NONE", "Attributor", "AttributorServer", "load_attributor", "owners_signature"]
