#!/usr/bin/env python3
"""Write a random-weight checkpoint in HF layout for serving benchmarks: the `shape:` of
configs/models/ID.yaml (as `bwb bench … --random-weights` and scripts/bench_infer_peer.py
build it), transformers' random init, saved as safetensors with a synthetic byte-level
tokenizer that covers the whole vocabulary (ids 0–255 are bytes, the rest decode to short
ASCII strings), so `bwb serve`, vLLM and `transformers serve` all load the same directory.

    python scripts/make_random_model.py --random-config qwen3-8b --dtype bf16 --device cuda --out DIR
    python scripts/make_random_model.py --random-config qwen3-8b --layers 1 --vocab 1024 --out DIR

Needs torch and transformers (pyyaml comes with transformers).
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_infer_peer import DTYPES, random_model  # noqa: E402


def byte_chars():
    """GPT-2's byte-to-character table: printable bytes map to themselves."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    out = [""] * 256
    n = 0
    for b in range(256):
        if b in printable:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return out


def tokenizer(vocab_size):
    """Byte-level BPE without merges: one token per byte when encoding; every other id decodes
    to `t<id>` so any generated id has text. The last id is the end-of-text token."""
    vocab = {c: i for i, c in enumerate(byte_chars())}
    for i in range(256, vocab_size - 1):
        vocab[f"t{i:x}"] = i
    eos = "<|endoftext|>"
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0", "truncation": None, "padding": None, "normalizer": None,
        "added_tokens": [{"id": vocab_size - 1, "content": eos, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}],
        "pre_tokenizer": bl, "post_processor": None, "decoder": bl,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False, "vocab": {**vocab, eos: vocab_size - 1}, "merges": []},
    }, eos


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--random-config", metavar="ID", required=True)
    ap.add_argument("--layers", type=int)
    ap.add_argument("--vocab", type=int)
    ap.add_argument("--dtype", default="bf16", choices=list(DTYPES))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    model = random_model(a.random_config, a.layers, a.vocab, DTYPES[a.dtype], a.device)
    v = model.config.vocab_size
    model.config.eos_token_id = v - 1
    model.config.bos_token_id = v - 1
    model.save_pretrained(a.out, safe_serialization=True)
    tok, eos = tokenizer(v)
    with open(os.path.join(a.out, "tokenizer.json"), "w") as f:
        json.dump(tok, f)
    with open(os.path.join(a.out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": eos,
                   "model_max_length": 8192,
                   "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}"}, f)
    print(json.dumps({"out": a.out, "vocab": v, "layers": model.config.num_hidden_layers,
                      "params": sum(p.numel() for p in model.parameters())}))
    del model
    if a.device.startswith("cuda"):
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
