"""Tokenizer and model: building the world's tiny causal LM, loading any HF model, chat prompts."""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from dareu.config import field, require
from dareu.errors import DareUError
from dareu.runs import write_json

# transformers imports torchao (the quantization attacks' library) on every model load; on a CPU machine torchao
# logs that its GPU kernels did not load, and torch that torchao registers enums the old way. Neither matters here.
logging.getLogger("torchao").setLevel(logging.ERROR)
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)

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

    def __post_init__(self):
        for key in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "max_positions"):
            require(self, key, getattr(self, key) >= 1, "must be >= 1")
        require(self, "hidden_size", self.hidden_size % self.num_heads == 0, "must be divisible by num_heads")


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


def check_model_path(name_or_path: str, flag: str = "--model") -> None:
    """Fail fast (before any training or download) when a local path holds no model, a path-like name does
    not exist, or a hub id is neither cached nor reachable. `flag` names the input in the message."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not _is_local_model(path):
            raise DareUError(f"{flag} {name_or_path}: no model there (expected a folder with config.json, "
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
    from dareu import threads

    threads.fit(model)  # threads for this model's size and the free cores, unless the user chose (dareu/threads.py)
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


# GGUF files: a model source that needs no model hub (llama.cpp's format; many models ship as one file).

GGUF_STAMP = "dareu_stamp.json"  # provenance of a converted folder: source file, size, sha256, fixes
GGUF_MIN_VERSION = "0.17"
GGUF_INSTALL = "pip install gguf (bash scripts/install.sh installs it)"
CHATML_END = "<|im_end|>"  # the end of a turn in a ChatML template (<|im_start|>role\n...<|im_end|>)
# GGUF architecture names that transformers' GGUF loader knows under another name (load_gguf_checkpoint)
_GGUF_ARCH_ALIASES = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss", "minimax-m2": "minimax_m2"}
_GGUF_NOT_CAUSAL = {"t5", "t5encoder", "umt5"}


def _require_gguf_package() -> str:
    """The installed `gguf` version; a one-line error when it is missing or too old."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.version import Version

    try:
        import gguf  # noqa: F401 - transformers reads GGUF tensors and tokenizers with it
        installed = version("gguf")
    except (ImportError, PackageNotFoundError):
        raise DareUError(f"reading GGUF files needs the gguf package, which is not installed: {GGUF_INSTALL}") from None
    if Version(installed) < Version(GGUF_MIN_VERSION):
        raise DareUError(f"gguf {installed} is older than the {GGUF_MIN_VERSION} DareU needs: pip install -U gguf "
                         "(bash scripts/install.sh installs the right one)")
    return installed


def gguf_causal_architectures() -> list[str]:
    """The GGUF architectures (general.architecture) that transformers loads as a causal LM."""
    from transformers.integrations.gguf import GGUF_ARCHS
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    known = (set(GGUF_SUPPORTED_ARCHITECTURES) | set(GGUF_ARCHS)) - {"general", "tokenizer"} - _GGUF_NOT_CAUSAL
    return sorted(known | {a for a, name in _GGUF_ARCH_ALIASES.items() if name in known})


def check_gguf_file(path: str | Path) -> dict:
    """The metadata of a GGUF file DareU can convert, read without its tensors (milliseconds). One-line errors,
    before anything is written or loaded: a missing file, one that is not GGUF, the gguf package missing, an
    architecture transformers cannot load as a causal LM, a model without a chat template."""
    path = Path(path).expanduser()
    hint = "give the path of a .gguf model file"
    if not path.exists():
        raise DareUError(f"{path} does not exist; {hint}")
    if path.is_dir():
        raise DareUError(f"{path} is a folder; {hint}")
    if path.suffix.lower() != ".gguf":
        raise DareUError(f"{path} is not a .gguf file; {hint}")
    with path.open("rb") as f:
        head = f.read(64)
    if not head.startswith(b"GGUF"):
        what = "a Git LFS pointer, not the file" if head.startswith(b"version https://git-lfs") else \
            "it does not start with the GGUF magic bytes"
        raise DareUError(f"{path} is not a GGUF file ({what}); {hint}")
    _require_gguf_package()
    from transformers.integrations.gguf import read_gguf_metadata

    try:
        metadata, _ = read_gguf_metadata(str(path))
    except Exception as err:  # noqa: BLE001 - a truncated or corrupt file fails in many ways, all ending the same
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise DareUError(f"{path} could not be read as a GGUF file ({first}); it may be truncated") from None
    arch = str(metadata.get("general.architecture"))
    readable = gguf_causal_architectures()
    if arch not in readable:
        import transformers

        raise DareUError(f"{path}: architecture {arch!r} cannot be read as a causal LM by transformers "
                         f"{transformers.__version__}; readable: {', '.join(readable)}")
    if not metadata.get("tokenizer.chat_template"):
        raise DareUError(f"{path} has no chat template (tokenizer.chat_template); DareU prompts models through "
                         "their chat template, so it needs a chat/instruct model's GGUF")
    return metadata


def fix_gguf_special_tokens(tok, metadata: dict) -> list[str]:
    """Repair what transformers' GGUF tokenizer conversion gets wrong, in place; returns what was changed.

    - eos: transformers 5.17 names the *bos* token as eos for every llama-architecture file (GGUFLlamaConverter);
      the file's own tokenizer.ggml.eos_token_id is restored.
    - a ChatML template ends each turn with <|im_end|>: that is the eos a chat model must stop on, whatever the
      file says.
    - pad: the file's tokenizer.ggml.padding_token_id when there is none, else eos; never the token that was a
      wrong eos."""
    fixes = []
    wrong = set()

    def set_eos(token: str, why: str) -> None:
        wrong.add(tok.eos_token)
        fixes.append(f"eos {tok.eos_token} -> {token} ({why})")
        tok.eos_token = token

    size = len(tok)
    eos_id = metadata.get("tokenizer.ggml.eos_token_id")
    if isinstance(eos_id, int) and 0 <= eos_id < size and tok.eos_token_id != eos_id:
        set_eos(tok.convert_ids_to_tokens(eos_id), "the file's tokenizer.ggml.eos_token_id")
    template = tok.chat_template if isinstance(tok.chat_template, str) else ""
    if CHATML_END in template and CHATML_END in tok.get_vocab() and tok.eos_token != CHATML_END:
        set_eos(CHATML_END, "the end of a turn in the ChatML chat template")
    if tok.pad_token is None or tok.pad_token in wrong:
        pad_id = metadata.get("tokenizer.ggml.padding_token_id")
        pad = tok.convert_ids_to_tokens(pad_id) if isinstance(pad_id, int) and 0 <= pad_id < size else None
        pad = tok.eos_token if pad is None or pad in wrong else pad
        fixes.append(f"pad {tok.pad_token} -> {pad}")
        tok.pad_token = pad
    for key in ("eos_token_id", "pad_token_id"):  # saved beside the token names; keep them in agreement
        if key in tok.init_kwargs:
            tok.init_kwargs[key] = getattr(tok, key)
    return fixes


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_gguf(path: str | Path, out: str | Path) -> dict:
    """Convert a GGUF model file into an ordinary HF folder `out`: the model dequantised to float32 (safetensors)
    and its tokenizer with eos/pad repaired (fix_gguf_special_tokens), both loading with plain `from_pretrained`.
    The caller claims `out` first (dareu.runs.claim_run_dir). Writes out/dareu_stamp.json last, so a folder with
    it is complete; returns its contents (source file, size, sha256, parameters, fixes, seconds)."""
    import time

    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig


    start = time.time()
    path = Path(path).expanduser().resolve()
    metadata = check_gguf_file(path)
    folder, name = str(path.parent), path.name
    try:
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
        fixes = fix_gguf_special_tokens(tok, metadata)
        if not tok.chat_template:
            raise DareUError(f"{path}: the converted tokenizer has no chat template; DareU prompts models through "
                             "their chat template")
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, local_files_only=True,
                                                     dtype=torch.float32,
                                                     quantization_config=GgufConfig(dequantize=True))
    except (ValueError, NotImplementedError, KeyError, OSError) as err:
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise DareUError(f"transformers {transformers.__version__} could not read {path}: {first}") from None
    if fixes:  # the model's own ids follow the tokenizer, so generate() stops where the tokenizer ends a turn
        for cfg in (model.config, model.generation_config):
            cfg.eos_token_id = tok.eos_token_id
            cfg.pad_token_id = tok.pad_token_id
    elif model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    tok.init_kwargs.pop("local_files_only", None)  # how this load ran, not a property of the tokenizer
    # transformers ignores this clean-up for BPE tokenizers (it would eat spaces before punctuation) and warns on
    # every load while it is set; the GGUF conversion sets it
    tok.clean_up_tokenization_spaces = tok.init_kwargs["clean_up_tokenization_spaces"] = False
    out = Path(out)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    sha = _sha256(path)
    info = {
        "key": sha[:16],
        "source": str(path),
        "source_size_bytes": path.stat().st_size,
        "source_sha256": sha,
        "architecture": metadata["general.architecture"],
        "name": metadata.get("general.name"),
        "file_type": metadata.get("general.file_type"),
        "model_type": model.config.model_type,
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": "float32",
        "eos_token": tok.eos_token,
        "eos_token_id": tok.eos_token_id,
        "pad_token": tok.pad_token,
        "fixes": fixes,
        "transformers": transformers.__version__,
        "gguf": _require_gguf_package(),
        "seconds": round(time.time() - start, 2),
    }
    write_json(out / GGUF_STAMP, info)
    return info
