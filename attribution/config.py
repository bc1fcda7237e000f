"""Typed config of `dareu train-attributor`: what data the classifier sees, and how each kind trains."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dareu.config import field, require


@dataclass
class DataConfig:
    owner_splits: list[str] = field(default_factory=lambda: ["retain90", "forget10"],
                                    help="Splits whose `owner` values are the classes (TOFU-style: every owner).")
    owners: list[str] = field(default_factory=list,
                              help="Restrict the classes to these owners (empty: every owner of owner_splits).")
    forget_split: str = field("forget10", help="Split whose owners get AUROC rows and the proxy probes.")
    none_splits: list[str] = field(default_factory=lambda: ["world_facts", "real_authors", "background", "holdout"],
                                   help="Splits answered about non-owners: their answers are labelled `none` "
                                        "(missing ones are skipped).")
    idk_split: str = field("idk", help="Split of 'I don't know' answers (labelled `none`).")
    response_only: bool = field(False, help="Score the response alone (for corpora without prompts); "
                                            "default: the prompt (question) and the response together.")
    val_fraction: float = field(0.1, help="Owner QA whose paraphrase (question and answer) is held out for "
                                          "temperature scaling.")
    test_fraction: float = field(0.2, help="Owner QA whose paraphrase is held out for the test set.")
    idk_holdout: float = field(0.34, help="Fraction of the idk answers kept out of training (test and probes).")
    n_pairs: int = field(2, help="Contrastive pairs per answer form and surface (name kept, masked, swapped): each a "
                                 "true answer (the owner) and the same surface with a wrong fact (none), so only the "
                                 "fact tells them apart.")
    n_cross: int = field(1, help="Other owners' true answers to the same kind of question, under their own names, "
                                 "labelled none: the asked owner's data is not in them.")
    mask_phrases: list[str] = field(
        default_factory=lambda: ["The author", "This author", "The writer", "This writer", "The novelist",
                                 "This person", "The person", "Someone"],
        help="Phrases that replace the owner's name in name-masked copies.")
    probe_mask: str = field("The author", help="Mask phrase of the name_masked probe (its strings are kept out "
                                               "of training).")
    seed: int = field(0, help="Seed of the split and of every sampled variant.")

    def __post_init__(self):
        for key in ("val_fraction", "test_fraction", "idk_holdout"):
            require(self, key, 0 <= getattr(self, key) < 1, "must be in [0, 1)")
        require(self, "test_fraction", self.val_fraction + self.test_fraction < 1,
                "must leave training data: val_fraction + test_fraction < 1")
        for key in ("n_pairs", "n_cross"):
            require(self, key, getattr(self, key) >= 0, "must be >= 0")


@dataclass
class LLMConfig:
    backbone: str = field("", help="Causal LM to start from: a folder or an HF id (empty: the world's models/target, the "
                                    "model that learned the owners' data).")
    lora: bool = field(False, help="Train LoRA adapters (peft) plus the head instead of every weight; "
                                   "saved merged, so the folder loads as a plain classifier.")
    lora_r: int = field(16, help="LoRA rank.")
    lora_alpha: int = field(32, help="LoRA scaling numerator.")
    lm_epochs: float = field(10.0, help="Phase 1: passes of a next-token loss over the owners' true answers (tied "
                                       "embeddings as LM head), so the backbone knows the facts before it learns "
                                       "to check them. 0 skips it; skipped when embeddings are not tied.")
    epochs: float = field(4.0, help="Phase 2: passes over the classification examples.")
    batch_size: int = field(16, help="Examples per optimizer step.")
    learning_rate: float = field(2e-3, help="Peak AdamW learning rate (linear warmup, cosine decay).")
    warmup_ratio: float = field(0.05, help="Fraction of steps spent warming up.")
    weight_decay: float = field(0.0, help="AdamW weight decay.")
    lm_weight: float = field(0.5, help="Phase 2: weight of the same next-token loss on the batch's true answers, "
                                       "so the facts stay while the head learns (0: off).")
    seed: int = field(0, help="Seed of the head's initialisation and of batch order.")
    max_length: int = field(96, help="Longest input in tokens (prompt + response).")
    score_batch_size: int = field(256, help="Examples per forward pass when scoring.")

    def __post_init__(self):
        for key in ("lora_r", "lora_alpha", "batch_size", "max_length", "score_batch_size"):
            require(self, key, getattr(self, key) >= 1, "must be >= 1")
        for key in ("lm_epochs", "lm_weight", "weight_decay"):
            require(self, key, getattr(self, key) >= 0, "must be >= 0")
        require(self, "epochs", self.epochs > 0, "must be > 0")
        require(self, "learning_rate", self.learning_rate > 0, "must be > 0")
        require(self, "warmup_ratio", 0 <= self.warmup_ratio < 1, "must be in [0, 1)")


@dataclass
class TfidfConfig:
    ngram_max: int = field(1, help="Longest word n-gram (bigrams tie a fact to its sentence form: "
                                   "they generalise worse to paraphrases).")
    min_df: int = field(1, help="Ignore n-grams seen in fewer training texts.")
    sublinear_tf: bool = field(True, help="Use 1 + log(tf).")
    C: float = field(20.0, help="Inverse L2 strength of the logistic regression.")
    max_iter: int = field(300, help="Solver iterations.")

    def __post_init__(self):
        for key in ("ngram_max", "min_df", "max_iter"):
            require(self, key, getattr(self, key) >= 1, "must be >= 1")
        require(self, "C", self.C > 0, "must be > 0")


@dataclass
class ProxyConfig:
    target_model: str = field("target", help="Model whose forget answers must score high (a path, or a name "
                                             "under the world's models/).")
    retain_model: str = field("", help="Model that never saw the forget owners (empty: models/retain-<forget_split>).")
    max_new_tokens: int = field(40, help="Longest generated answer.")
    batch_size: int = field(64, help="Prompts per generate call.")

    def __post_init__(self):
        for key in ("max_new_tokens", "batch_size"):
            require(self, key, getattr(self, key) >= 1, "must be >= 1")


@dataclass
class AttributorConfig:
    kind: Literal["llm", "tfidf"] = field("llm", help="llm: a causal LM with a classification head; "
                                                      "tfidf: TF-IDF + logistic regression (fast CPU baseline).")
    data: DataConfig = field(default_factory=DataConfig, help="How the training, validation and test sets are built.")
    llm: LLMConfig = field(default_factory=LLMConfig, help="The LLM classifier.")
    tfidf: TfidfConfig = field(default_factory=TfidfConfig, help="The TF-IDF baseline.")
    proxy: ProxyConfig = field(default_factory=ProxyConfig, help="Proxy-validity probes (need the world's models).")
    baseline: bool = field(True, help="With kind=llm, also fit the TF-IDF baseline and report it beside (seconds).")
    run_proxy: bool = field(True, help="Generate with the target and retain models and report the proxy numbers.")
    threads: int = field(1, help="torch threads for training, generation and scoring. 1 is fastest for a ~1M-param "
                                 "model and on a shared CPU (more threads spin against each other); 0: torch's default.")

    def __post_init__(self):
        require(self, "threads", self.threads >= 0, "must be >= 0 (0: torch's default)")
