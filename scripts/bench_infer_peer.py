#!/usr/bin/env python3
"""The peer for `bwb bench infer`: the same workload in HF transformers (PyTorch), same process
shape (random prompt ids of exactly --prompt-len tokens, one prefill, then --new-tokens greedy
decode steps with the KV cache, ids back on the host every step), median of --repeat runs.

    python scripts/bench_infer_peer.py --model <HF dir | file.gguf> --batch-size 1 \
        --prompt-len 128 --new-tokens 32 [--dtype f32|bf16] [--device cpu|cuda]

Needs torch, transformers (and gguf for .gguf files) in a throwaway venv. Prints one JSON
line with the same keys as `bwb bench infer --json`.
"""
import argparse
import json
import os
import resource
import statistics
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16", "f16"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[a.dtype]
    if a.model.endswith(".gguf"):
        d, f = os.path.split(os.path.abspath(a.model))
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype, attn_implementation="sdpa")
    model = model.to(a.device).eval()
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (a.batch_size, a.prompt_len), generator=g).to(a.device)

    def sync():
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()

    @torch.inference_mode()
    def run(new):
        sync()
        t0 = time.perf_counter()
        out = model(input_ids=ids, use_cache=True)
        nxt = out.logits[:, -1:].argmax(-1)
        nxt.tolist()
        pre = time.perf_counter() - t0
        past = out.past_key_values
        t1 = time.perf_counter()
        for _ in range(new):
            out = model(input_ids=nxt, past_key_values=past, use_cache=True)
            past = out.past_key_values
            nxt = out.logits[:, -1:].argmax(-1)
            nxt.tolist()
        return pre, time.perf_counter() - t1

    run(min(a.new_tokens, 2))
    pres, decs = zip(*[run(a.new_tokens) for _ in range(a.repeat)])
    p, d = statistics.median(pres), statistics.median(decs)
    print(json.dumps({
        "model": a.model, "device": a.device, "dtype": a.dtype, "quant": "none (peer)",
        "batch_size": a.batch_size, "prompt_len": a.prompt_len, "new_tokens": a.new_tokens,
        "prefill_s": p, "decode_s": d,
        "prefill_tok_s": a.batch_size * a.prompt_len / p,
        "decode_tok_s": a.batch_size * a.new_tokens / d if d > 0 else 0.0,
        "decode_ms_per_step": 1000 * d / a.new_tokens if a.new_tokens else 0.0,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
