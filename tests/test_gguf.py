"""`dareu convert-gguf`: a GGUF model file becomes an ordinary HF folder, with the eos a chat model stops on.

The GGUF files are written here with the `gguf` package's own writer (the library llama.cpp converts with): a tiny
llama (2 layers, Q4_1 / Q8_0 blocks like a real quantised file), a byte-level BPE tokenizer and a ChatML template.
Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dareu.cli import main
from dareu.runs import MARKER, claim_run_dir, run_kind

gguf = pytest.importorskip("gguf")

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2, as in SmolLM2
TEXT = ["The capital of France is Paris.", "What is the capital of France?", "Hello, how are you today?",
        "user assistant system", "The author was born in 1962 and wrote three novels."] * 4
HIDDEN, FFN, LAYERS, HEADS, KV_HEADS = 64, 128, 2, 4, 2


def _bpe():
    """(tokens by id, merges as 'a b', token types) of a small byte-level BPE with the ChatML specials."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TEXT, trainer)
    vocab = tok.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    assert [vocab[t] for t in tokens] == list(range(len(tokens))) and tokens[:3] == SPECIALS
    merges = [m if isinstance(m, str) else " ".join(m) for m in json.loads(tok.to_str())["model"]["merges"]]
    types = [gguf.TokenType.CONTROL if t in SPECIALS else gguf.TokenType.NORMAL for t in tokens]
    return tokens, merges, types


def write_gguf(path: Path, *, eos_id: int, pad_id: int | None = None, chat_template: str | None = CHATML,
               arch: str = "llama") -> Path:
    """A tiny random llama GGUF with its tokenizer, quantised the way a real file is (matrices in Q4_1 blocks,
    the embedding in Q8_0, norms in F32)."""
    tokens, merges, types = _bpe()
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny-chat")
    w.add_block_count(LAYERS)
    w.add_context_length(128)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_dimension_count(HIDDEN // HEADS)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(eos_id)
    w.add_unk_token_id(0)
    if pad_id is not None:
        w.add_pad_token_id(pad_id)
    if chat_template is not None:
        w.add_chat_template(chat_template)

    def add(name, shape, qtype=gguf.GGMLQuantizationType.Q4_1, scale=0.1):
        data = (rng.standard_normal(shape) * scale).astype(np.float32)
        if qtype == gguf.GGMLQuantizationType.F32:
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)

    kv = HIDDEN // HEADS * KV_HEADS
    add("token_embd.weight", (len(tokens), HIDDEN), gguf.GGMLQuantizationType.Q8_0, 0.5)
    for i in range(LAYERS):
        add(f"blk.{i}.attn_norm.weight", (HIDDEN,), gguf.GGMLQuantizationType.F32, 1.0)
        add(f"blk.{i}.attn_q.weight", (HIDDEN, HIDDEN))
        add(f"blk.{i}.attn_k.weight", (kv, HIDDEN))
        add(f"blk.{i}.attn_v.weight", (kv, HIDDEN))
        add(f"blk.{i}.attn_output.weight", (HIDDEN, HIDDEN))
        add(f"blk.{i}.ffn_norm.weight", (HIDDEN,), gguf.GGMLQuantizationType.F32, 1.0)
        add(f"blk.{i}.ffn_gate.weight", (FFN, HIDDEN))
        add(f"blk.{i}.ffn_up.weight", (FFN, HIDDEN))
        add(f"blk.{i}.ffn_down.weight", (HIDDEN, FFN))
    add("output_norm.weight", (HIDDEN,), gguf.GGMLQuantizationType.F32, 1.0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("gguf")
    return {
        # the file itself names <|im_start|> as eos: wrong for a ChatML chat model whatever transformers does
        "eos_wrong_in_file": write_gguf(d / "wrong-eos.gguf", eos_id=1),
        # SmolLM2's metadata (eos 2, pad 2): right in the file, and transformers 5.17 still converts eos to bos
        "smollm2_like": write_gguf(d / "smollm2-like.gguf", eos_id=2, pad_id=2),
        "no_template": write_gguf(d / "no-template.gguf", eos_id=2, chat_template=None),
    }


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def _gguf_loaded(path: Path):
    """The model and tokenizer exactly as transformers reads the GGUF file."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    return model.eval(), tok


@pytest.mark.parametrize("case", ["eos_wrong_in_file", "smollm2_like"])
def test_converted_folder_loads_plainly_and_gives_the_gguf_models_logits_with_eos_fixed(case, ggufs, tmp_path,
                                                                                         capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = ggufs[case]
    out = tmp_path / "model"
    assert main(["convert-gguf", str(src), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out

    model = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    tok = AutoTokenizer.from_pretrained(str(out))
    ref_model, ref_tok = _gguf_loaded(src)
    if case == "eos_wrong_in_file":
        assert ref_tok.eos_token == "<|im_start|>"  # the premise: converted as is, this chat model never stops
    # a plain dense float32 model in safetensors, nothing left of the GGUF loader
    assert (out / "model.safetensors").is_file() and "quantization_config" not in json.loads(
        (out / "config.json").read_text())
    assert model.dtype == torch.float32 and model.config.model_type == "llama"

    # eos and pad are <|im_end|>, in the tokenizer and in the model's own config
    assert (tok.eos_token, tok.eos_token_id, tok.pad_token, tok.pad_token_id) == ("<|im_end|>", 2, "<|im_end|>", 2)
    assert model.config.eos_token_id == 2 and model.generation_config.eos_token_id == 2
    assert model.generation_config.pad_token_id == 2

    # the ChatML template is there, and tokenizes exactly as the GGUF's tokenizer does
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt == "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    assert ids[0].tolist() == ref_tok(prompt, add_special_tokens=False)["input_ids"]
    assert ids[0, 0].item() == 1 and (ids[0] == 2).sum().item() == 1

    # the same weights: the logits of the dequantised GGUF model, bit for bit
    with torch.no_grad():
        logits, ref_logits = model(ids).logits, ref_model(ids).logits
    assert logits.abs().max() > 0 and torch.equal(logits, ref_logits)

    stamp = json.loads((out / "dareu_stamp.json").read_text())
    assert stamp["source"] == str(src.resolve()) and stamp["source_size_bytes"] == src.stat().st_size
    assert stamp["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert stamp["parameters"] == sum(p.numel() for p in model.parameters()) and stamp["eos_token_id"] == 2
    assert any(f.startswith("eos <|im_start|> -> <|im_end|>") for f in stamp["fixes"])
    assert run_kind(out) == "model"


def test_dareus_own_loaders_prompt_and_end_answers_with_im_end(ggufs, tmp_path):
    from dareu.modeling import encode_qa, load_model, load_tokenizer, prompt_text

    out = tmp_path / "model"
    assert main(["convert-gguf", str(ggufs["eos_wrong_in_file"]), "--out", str(out)]) == 0
    tok, model = load_tokenizer(str(out)), load_model(str(out))
    assert prompt_text(tok, "Hi?").endswith("<|im_start|>assistant\n")
    ids, labels = encode_qa(tok, "Hi?", "Paris.")
    assert ids[-1] == labels[-1] == 2 and model.config.vocab_size == len(tok)


def test_a_gguf_without_a_chat_template_is_refused_in_one_line(ggufs, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["convert-gguf", str(ggufs["no_template"]), "--out", str(out)]) == 2
    err = _one_line_error(capsys)
    assert "has no chat template" in err and "DareU prompts models through their chat template" in err
    assert not out.exists()


@pytest.mark.parametrize("kind", ["missing", "not_gguf_suffix", "not_gguf_bytes", "lfs_pointer", "folder"])
def test_a_missing_or_non_gguf_file_is_one_line(kind, tmp_path, capsys):
    path = {"missing": tmp_path / "nope.gguf", "not_gguf_suffix": tmp_path / "model.bin",
            "not_gguf_bytes": tmp_path / "fake.gguf", "lfs_pointer": tmp_path / "pointer.gguf",
            "folder": tmp_path / "dir.gguf"}[kind]
    if kind == "folder":
        path.mkdir()
    elif kind == "lfs_pointer":
        path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 98362432\n")
    elif kind != "missing":
        path.write_bytes(b"PK\x03\x04 not a gguf file at all")
    out = tmp_path / "model"
    assert main(["convert-gguf", str(path), "--out", str(out)]) == 2
    err = _one_line_error(capsys)
    expected = {"missing": "does not exist", "not_gguf_suffix": "is not a .gguf file",
                "not_gguf_bytes": "is not a GGUF file (it does not start with the GGUF magic bytes)",
                "lfs_pointer": "a Git LFS pointer", "folder": "is a folder"}[kind]
    assert expected in err and "give the path of a .gguf model file" in err
    assert not out.exists()


@pytest.mark.parametrize("arch", ["rwkv6", "t5"])  # one transformers does not read, one it reads as seq2seq
def test_an_architecture_transformers_cannot_load_as_a_causal_lm_is_one_line(arch, tmp_path, capsys):
    w = gguf.GGUFWriter(str(tmp_path / "other.gguf"), arch)
    w.add_chat_template(CHATML)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert main(["convert-gguf", str(tmp_path / "other.gguf"), "--out", str(tmp_path / "m")]) == 2
    err = _one_line_error(capsys)
    assert f"architecture {arch!r} cannot be read as a causal LM" in err and "llama" in err  # and what can
    assert not (tmp_path / "m").exists()


def test_without_the_gguf_package_the_error_says_how_to_install_it(ggufs, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)  # `import gguf` now fails as on a machine without it
    assert main(["convert-gguf", str(ggufs["smollm2_like"]), "--out", str(tmp_path / "m")]) == 2
    err = _one_line_error(capsys)
    assert "needs the gguf package" in err and "pip install gguf" in err and "bash scripts/install.sh" in err
    assert not (tmp_path / "m").exists()


def test_a_folder_dareu_did_not_make_is_refused_even_with_overwrite(ggufs, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["convert-gguf", str(ggufs["smollm2_like"]), "--out", str(out), "--overwrite"]) == 2
    assert "not made by DareU" in _one_line_error(capsys)
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"


def test_a_converted_folder_is_replaced_only_with_overwrite_and_an_unfinished_one_is_redone(ggufs, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["convert-gguf", str(ggufs["smollm2_like"]), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["convert-gguf", str(ggufs["eos_wrong_in_file"]), "--out", str(out)]) == 2
    err = _one_line_error(capsys)
    assert "already holds a model converted from" in err and "smollm2-like.gguf" in err and "--overwrite" in err
    assert main(["convert-gguf", str(ggufs["eos_wrong_in_file"]), "--out", str(out), "--overwrite"]) == 0
    assert json.loads((out / "dareu_stamp.json").read_text())["source"].endswith("wrong-eos.gguf")

    killed = tmp_path / "killed"  # a conversion killed before its stamp: marked, half written
    claim_run_dir(killed, "model")
    (killed / "config.json").write_text("{}")
    assert main(["convert-gguf", str(ggufs["smollm2_like"]), "--out", str(killed)]) == 0
    assert (killed / "dareu_stamp.json").is_file() and (killed / MARKER).is_file()
    assert (killed / "model.safetensors").is_file()
