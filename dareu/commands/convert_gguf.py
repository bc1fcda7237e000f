"""`dareu convert-gguf FILE.gguf --out DIR`: a GGUF model file (llama.cpp's format) as an ordinary HF model folder.

The model is dequantised to float32 (safetensors) and saved with its tokenizer; eos/pad are repaired where
transformers' conversion gets them wrong, and a model without a chat template is refused. DIR then works as
`--model DIR` everywhere; DIR/dareu_stamp.json records the source file, its size and sha256.
"""

from __future__ import annotations

import argparse

from dareu.errors import DareUError
from dareu.runs import claim_run_dir, read_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE.gguf", help="the GGUF model file (a chat/instruct model)")
    p.add_argument("--out", required=True, help="folder for the HF model and tokenizer (from_pretrained)")
    p.add_argument("--overwrite", action="store_true", help="replace a folder an earlier convert-gguf wrote")


def run(args: argparse.Namespace) -> int:
    from dareu.modeling import GGUF_STAMP, check_gguf_file, convert_gguf

    check_gguf_file(args.file)  # bad input is one line before the folder is touched
    out, existed = claim_run_dir(args.out, "model", overwrite=args.overwrite, reuse=True)
    if existed:
        if (out / GGUF_STAMP).is_file():
            source = read_json(out / GGUF_STAMP).get("source")
            raise DareUError(f"--out {out} already holds a model converted from {source}; pass --overwrite to "
                             "replace it, or choose another --out")
        out, _ = claim_run_dir(out, "model", overwrite=True)  # an unfinished conversion (no stamp): start again
    info = convert_gguf(args.file, out)
    fixes = "; ".join(info["fixes"]) or "none"
    print(f"wrote {out}: {info['model_type']}, {info['parameters'] / 1e6:.1f}M parameters (float32), eos "
          f"{info['eos_token']} (id {info['eos_token_id']}), pad {info['pad_token']}; fixed: {fixes}; from "
          f"{info['source']} ({info['source_size_bytes'] / 1e6:.1f} MB, sha256 {info['source_sha256'][:16]}...) "
          f"in {info['seconds']:.1f}s")
    return 0
