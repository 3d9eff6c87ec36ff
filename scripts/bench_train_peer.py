#!/usr/bin/env python3
"""The peer for `bwb bench train`: the same workload in HF transformers + PEFT (PyTorch):
random token ids, --batch-size rows of exactly --seq-len tokens, loss on every position
(labels = ids), LoRA rank r (alpha 2r, dropout 0) on every attention and MLP projection,
AdamW (lr 1e-4), gradient clipping at 1.0; one warm-up step, then the median of --steps.

    python scripts/bench_train_peer.py --model <HF dir | file.gguf> --batch-size 4 --seq-len 256
    python scripts/bench_train_peer.py --random-config qwen3-8b --device cuda --dtype bf16 \
        --batch-size 1,4 --seq-len 1024 [--quant nf4]

--random-config ID builds the `shape:` of configs/models/ID.yaml with transformers' random init
and SDPA attention, as `bwb bench train --model ID --random-weights` does (--layers / --vocab
scale it down likewise). The base is --dtype (plain LoRA) unless --quant nf4, which puts every
projection into bitsandbytes 4-bit NF4 layers (QLoRA, CUDA only, no gradient checkpointing);
it needs bitsandbytes. On the CPU the base is plain LoRA: PyTorch has no CPU 4-bit matmul.
--batch-size takes a comma-separated list, run on the one model; one JSON line per size with
the keys of `bwb bench train --json` (plus the GPU allocator's peaks on CUDA).

Needs torch, transformers, peft (and gguf for .gguf files) in a throwaway venv.
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

from bench_infer_peer import DTYPES, dims_of, gpu_peaks, random_model, reset_peaks, sizes, sync

# LoRA targets, as bwb's bench: Phi-3 fuses q/k/v and gate/up.
PHI3_TARGETS = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def to_nf4(model, targets, compute_dtype, device):
    """Swap every targeted nn.Linear for a bitsandbytes NF4 layer holding the same weight
    (quantised on its move to the GPU), as `load_in_4bit` would for a checkpoint."""
    import bitsandbytes as bnb

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if name in targets and isinstance(child, torch.nn.Linear):
                q = bnb.nn.Linear4bit(child.in_features, child.out_features,
                                      bias=child.bias is not None, compute_dtype=compute_dtype,
                                      quant_type="nf4", device="meta")
                q.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False,
                                             quant_type="nf4")
                if child.bias is not None:
                    q.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
                setattr(parent, name, q.to(device))
                del child
    # PEFT wraps bitsandbytes layers only when the model says it was loaded in 4 bits.
    model.is_loaded_in_4bit = True
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return model


def main():
    ap = argparse.ArgumentParser()
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="HF model directory or .gguf file")
    src.add_argument("--random-config", metavar="ID",
                     help="config id whose `shape:` to build with random weights")
    ap.add_argument("--layers", type=int, help="with --random-config: decoder layers")
    ap.add_argument("--vocab", type=int, help="with --random-config: vocabulary size")
    ap.add_argument("--batch-size", type=sizes, default=[4])
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--dtype", default="f32", choices=list(DTYPES))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quant", default="none", choices=["none", "nf4"],
                    help="nf4: bitsandbytes 4-bit base (QLoRA; CUDA)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dtype = DTYPES[a.dtype]
    if a.random_config:
        base = random_model(a.random_config, a.layers, a.vocab, dtype, a.device)
    elif a.model.endswith(".gguf"):
        d, f = os.path.split(os.path.abspath(a.model))
        base = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=dtype)
    else:
        base = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype)
    base = base.to(a.device)
    targets = PHI3_TARGETS if base.config.model_type == "phi3" else TARGETS
    if a.quant == "nf4":
        base = to_nf4(base, targets, dtype, a.device)
    model = get_peft_model(
        base, LoraConfig(r=a.rank, lora_alpha=2 * a.rank, lora_dropout=0.0, target_modules=targets)
    )
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    for batch in a.batch_size:
        t_start = time.time()
        reset_peaks(a.device)
        opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(0, base.config.vocab_size, (batch, a.seq_len), generator=g)
        ids = ids.to(a.device)
        times = []
        for step in range(a.steps + 1):
            sync(a.device)
            t0 = time.perf_counter()
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            loss.item()  # synchronises the device
            if step:
                times.append(time.perf_counter() - t0)
        s = statistics.median(times)
        row = {
            "model": a.random_config or a.model, "random_weights": bool(a.random_config),
            "device": a.device, "dtype": a.dtype,
            "quant": "nf4 (peer, bitsandbytes)" if a.quant == "nf4" else "none (peer)",
            "batch_size": batch, "seq_len": a.seq_len, "rank": a.rank, "steps": a.steps,
            "trainable_params": sum(p.numel() for p in params),
            "step_s": s, "tokens_per_s": batch * a.seq_len / s,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "dims": dims_of(base.config),
            "t_start": t_start, "t_end": time.time(),
            "torch": torch.__version__, "threads": a.threads,
        }
        row.update(gpu_peaks(a.device))
        print(json.dumps(row), flush=True)
        del opt


if __name__ == "__main__":
    main()
