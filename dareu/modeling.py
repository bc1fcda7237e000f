"""Tokenizer and model: building the world's tiny causal LM, loading any HF model, chat prompts."""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from dareu.config import field
from dareu.errors import DareUError

SPECIAL_TOKENS = ["<|pad|>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>"]
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@dataclass
class ModelConfig:
    family: Literal["qwen2", "llama"] = field("qwen2", help="Architecture family of the tiny causal LM.")
    vocab_size: int = field(2048, help="Target size of the byte-level BPE vocabulary trained on the world.")
    hidden_size: int = field(128, help="Width of the transformer.")
    intermediate_size: int = field(512, help="Width of the MLP.")
    num_layers: int = field(3, help="Transformer blocks.")
    num_heads: int = field(4, help="Attention heads (key/value heads too).")
    max_positions: int = field(128, help="Longest sequence the model handles (prompt + answer).")


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer with pad/eos and a chat template, trained on `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|end|>",
                                 additional_special_tokens=SPECIAL_TOKENS[2:])
    hf.chat_template = CHAT_TEMPLATE
    hf.padding_side = "right"
    return hf


def save_tokenizer(tok, path: Path) -> None:
    tok.save_pretrained(str(path))
    # Pin the class: otherwise a Qwen2 config next to it makes AutoTokenizer pick Qwen2's tokenizer,
    # whose pre-tokenizer splits digits and yields ids the model was never trained on.
    cfg_path = Path(path) / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2))


def build_model(cfg: ModelConfig, tok, seed: int = 0):
    """A randomly initialised causal LM sized by `cfg`, its vocabulary matching `tok`."""
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    torch.manual_seed(seed)
    config_cls = {"qwen2": Qwen2Config, "llama": LlamaConfig}[cfg.family]
    config = config_cls(vocab_size=len(tok), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
                        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                        num_key_value_heads=cfg.num_heads, max_position_embeddings=cfg.max_positions,
                        tie_word_embeddings=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                        bos_token_id=tok.eos_token_id)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    return model


def _is_local_model(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


# An HF hub id: owner/name, exactly one slash (repo names allow letters, digits, "_", "-", ".").
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
MODEL_HINT = "pass a model folder, a run folder or an HF id (owner/name)"


def looks_like_path(name: str) -> bool:
    """Whether `name` means a local folder rather than a hub id: ./x, /x, ~/x, a/b/c, runs/x where runs/
    exists here, or anything that is not owner/name. A missing folder is then an error, not a download."""
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or name.count(os.sep) > 1:
        return True
    first = name.replace(os.sep, "/").split("/")[0]
    return Path(first).is_dir() or not _HUB_ID.fullmatch(name)


def _expand(name: str) -> str:
    """~/x as the folder it names (from_pretrained does not expand it)."""
    return str(Path(name).expanduser()) if name.startswith("~") else name


def _missing_folder(name: str) -> DareUError:
    return DareUError(f"model folder {name} does not exist; {MODEL_HINT}")


def check_model_path(name_or_path: str) -> None:
    """Fail fast (before any training or download) when a local path holds no model, a path-like name does
    not exist, or a hub id is neither cached nor reachable."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not _is_local_model(path):
            raise DareUError(f"--model {name_or_path}: no model there (expected a folder with config.json, "
                             f"as save_pretrained writes); {MODEL_HINT}")
        return
    if looks_like_path(name_or_path):
        raise _missing_folder(name_or_path)
    check_hub_model(name_or_path)


@functools.cache  # one request per id, however many checks
def check_hub_model(repo_id: str) -> None:
    """A hub id must be in the local HF cache, or the hub must answer for it: one quick request, not the
    retry loop from_pretrained runs against an unreachable hub (~1 min)."""
    from huggingface_hub import HfApi, constants, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError

    try:
        if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
            return
    except HFValidationError:
        raise _missing_folder(repo_id) from None  # not a valid hub id ("a--b/c"): it meant a folder
    failed = f"could not load {repo_id!r} from the Hugging Face hub"
    local = f"download it where there is network (`hf download {repo_id} --local-dir DIR`) and pass DIR instead"
    if constants.HF_HUB_OFFLINE:
        raise DareUError(f"{failed}: it is not in the local cache and HF_HUB_OFFLINE=1 forbids downloading; {local}")
    try:
        HfApi().model_info(repo_id)
    except RepositoryNotFoundError:
        raise DareUError(f"{failed}: no such model (or it is private: log in with `hf auth login`); "
                         f"{MODEL_HINT}") from None
    except Exception as err:  # noqa: BLE001 - any failure to reach the hub ends the same way
        raise DareUError(f"{failed}: the hub is unreachable ({type(err).__name__}) and the model is not in the "
                         f"local cache; {local}") from None


def _hub_error(name: str, err: Exception) -> DareUError:
    return DareUError(f"could not load {name!r} from the Hugging Face hub ({type(err).__name__}); "
                      "with no network, download it elsewhere and pass the local folder instead")


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    check_model_path(name_or_path)
    name_or_path = _expand(name_or_path)
    path = Path(name_or_path)
    if path.is_dir() and not (path / "tokenizer_config.json").is_file() and not (path / "tokenizer.json").is_file():
        raise DareUError(f"{name_or_path} holds a model but no tokenizer; save one beside it with "
                         "tokenizer.save_pretrained(...)")
    try:
        tok = AutoTokenizer.from_pretrained(name_or_path)
    except OSError as err:
        if path.is_dir():
            raise DareUError(f"tokenizer in {name_or_path} could not be read: {str(err).splitlines()[0]}") from None
        raise _hub_error(name_or_path, err) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if tok.chat_template is None:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def load_model(name_or_path: str, dtype: torch.dtype | None = None, kind: str = "causal"):
    """Load a causal LM (or a sequence classifier with kind="classifier") from a folder or an HF id."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    check_model_path(name_or_path)
    name_or_path = _expand(name_or_path)
    cls = AutoModelForCausalLM if kind == "causal" else AutoModelForSequenceClassification
    if dtype is None:
        dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    try:
        model = cls.from_pretrained(name_or_path, dtype=dtype)
    except OSError as err:
        if Path(name_or_path).is_dir():
            raise DareUError(f"model in {name_or_path} could not be read: {str(err).splitlines()[0]}") from None
        raise _hub_error(name_or_path, err) from None
    return model


def resolve_model_dir(path: str) -> str:
    """A run folder keeps its model in `model/`; a model folder is itself. HF ids pass through; a path-like
    name that does not exist is an error here, before anything takes it for a hub id."""
    p = Path(path).expanduser()
    if not p.exists() and looks_like_path(path):
        raise _missing_folder(path)
    if p.is_dir() and not (p / "config.json").exists() and (p / "model" / "config.json").exists():
        return str(p / "model")
    return _expand(path)


def prompt_text(tok, question: str) -> str:
    """The question in the tokenizer's chat format, ending where the answer starts."""
    return tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                   tokenize=False)


def encode_qa(tok, question: str, answer: str, max_length: int | None = None) -> tuple[list[int], list[int]]:
    """input_ids and labels for prompt + answer + eos, with the prompt masked (-100): answer-only loss."""
    prompt = tok(prompt_text(tok, question), add_special_tokens=False)["input_ids"]
    target = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = prompt + target
    labels = [-100] * len(prompt) + target
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    return ids, labels


def set_threads() -> None:
    """Use the cores we were given (Ray sets OMP_NUM_THREADS for actors)."""
    n = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    if n > 0:
        torch.set_num_threads(n)
