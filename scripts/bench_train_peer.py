#!/usr/bin/env python3
"""The peer for `bwb bench train`: the same workload in HF transformers + PEFT (PyTorch):
random token ids, --batch-size rows of exactly --seq-len tokens, loss on every position
(labels = ids), LoRA rank r (alpha 2r, dropout 0) on every attention and MLP projection,
AdamW (lr 1e-4), gradient clipping at 1.0; one warm-up step, then the median of --steps.

    python scripts/bench_train_peer.py --model <HF dir | file.gguf> --batch-size 4 --seq-len 256

Needs torch, transformers, peft (and gguf for .gguf files) in a throwaway venv. The base is
f32 (transformers dequantises a GGUF), i.e. plain LoRA, not QLoRA: PyTorch on the CPU has no
4-bit matmul. Prints one JSON line with the keys of `bwb bench train --json`.
"""
import argparse
import json
import os
import resource
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.model.endswith(".gguf"):
        d, f = os.path.split(os.path.abspath(a.model))
        base = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    else:
        base = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(
        base, LoraConfig(r=a.rank, lora_alpha=2 * a.rank, lora_dropout=0.0, target_modules=targets)
    )
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (a.batch_size, a.seq_len), generator=g)
    times = []
    for step in range(a.steps + 1):
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        if step:
            times.append(time.perf_counter() - t0)
    s = statistics.median(times)
    print(json.dumps({
        "model": a.model, "device": "cpu", "dtype": "f32", "quant": "none (peer)",
        "batch_size": a.batch_size, "seq_len": a.seq_len, "rank": a.rank, "steps": a.steps,
        "trainable_params": sum(p.numel() for p in params),
        "step_s": s, "tokens_per_s": a.batch_size * a.seq_len / s,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch": torch.__version__, "threads": a.threads,
    }))


if __name__ == "__main__":
    main()
