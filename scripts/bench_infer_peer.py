#!/usr/bin/env python3
"""The peer for `bwb bench infer`: the same workload in HF transformers (PyTorch), same process
shape (random prompt ids of exactly --prompt-len tokens, one prefill, then --new-tokens greedy
decode steps with the KV cache, ids back on the host every step), median of --repeat runs.

    python scripts/bench_infer_peer.py --model <HF dir | file.gguf> --batch-size 1 \
        --prompt-len 128 --new-tokens 32 [--dtype f32|bf16] [--device cpu|cuda]
    python scripts/bench_infer_peer.py --random-config qwen3-8b --device cuda --dtype bf16 \
        --batch-size 8,1 --prompt-len 1024 --new-tokens 32

--random-config ID builds the `shape:` of configs/models/ID.yaml (the checkpoint's config.json
fields) with transformers' random init and SDPA attention, as `bwb bench infer --model ID
--random-weights` does; --layers and --vocab scale it down as bwb's flags of the same names do.
In that mode the prefill keeps only the last position's logits (`logits_to_keep=1`), as bwb
does. --batch-size takes a comma-separated list, run on the one model; one JSON line per size
with the keys of `bwb bench infer --json` (plus the GPU allocator's peaks on CUDA).

Needs torch, transformers (and gguf for .gguf files; pyyaml for --random-config, which
transformers installs) in a throwaway venv.
"""
import argparse
import inspect
import json
import os
import resource
import statistics
import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sizes(text):
    """`8,1` -> [8, 1]."""
    out = [int(x) for x in text.split(",") if x.strip()]
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError("batch sizes must be at least 1")
    return out


def shape_config(config_id, layers=None, vocab=None, root=ROOT):
    """The transformers config of configs/models/<id>.yaml's `shape:`, scaled down like bwb's
    --layers / --vocab."""
    import yaml

    path = os.path.join(root, "configs", "models", f"{config_id}.yaml")
    with open(path) as f:
        shape = dict((yaml.safe_load(f) or {}).get("shape") or {})
    if not shape:
        raise SystemExit(f"{path} has no `shape:` block")
    model_type = shape.pop("model_type")
    if layers:
        shape["num_hidden_layers"] = layers
        if isinstance(shape.get("layer_types"), list):
            shape["layer_types"] = shape["layer_types"][:layers]
    if vocab:
        shape["vocab_size"] = vocab
        # Special-token ids of the real vocabulary would fall outside a scaled-down one.
        for k in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if k in shape:
                shape[k] = 0
    return AutoConfig.for_model(model_type, **shape)


def random_model(config_id, layers, vocab, dtype, device):
    """A random-weight model of the config's shape, initialised directly on `device`."""
    cfg = shape_config(config_id, layers, vocab)
    torch.manual_seed(0)
    with torch.device(device):
        try:
            model = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation="sdpa")
        except TypeError:  # transformers before `dtype` replaced `torch_dtype`
            model = AutoModelForCausalLM.from_config(cfg, torch_dtype=dtype, attn_implementation="sdpa")
    return model


def dims_of(cfg):
    """The matmul shape, as `dims` in bwb's JSON: q, o H x heads*D; k, v H x kv*D; gate, up,
    down H x I per layer; the LM head V x H (tied or not)."""
    heads = cfg.num_attention_heads
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    h, i, n = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    return {
        "layers": n, "hidden": h, "intermediate": i, "heads": heads, "kv_heads": kv,
        "head_dim": hd, "vocab": cfg.vocab_size,
        "layer_params": n * (2 * h * heads * hd + 2 * h * kv * hd + 3 * h * i),
        "head_params": cfg.vocab_size * h,
    }


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_peaks(device):
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def gpu_peaks(device):
    """The CUDA caching allocator's peaks (MiB) since the last reset."""
    if not device.startswith("cuda"):
        return {}
    return {
        "torch_max_allocated_mib": torch.cuda.max_memory_allocated() / 2**20,
        "torch_max_reserved_mib": torch.cuda.max_memory_reserved() / 2**20,
    }


def main():
    ap = argparse.ArgumentParser()
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="HF model directory or .gguf file")
    src.add_argument("--random-config", metavar="ID",
                     help="config id whose `shape:` to build with random weights")
    ap.add_argument("--layers", type=int, help="with --random-config: decoder layers")
    ap.add_argument("--vocab", type=int, help="with --random-config: vocabulary size")
    ap.add_argument("--batch-size", type=sizes, default=[1])
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dtype", default="f32", choices=list(DTYPES))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dtype = DTYPES[a.dtype]
    if a.random_config:
        model = random_model(a.random_config, a.layers, a.vocab, dtype, a.device)
    elif a.model.endswith(".gguf"):
        d, f = os.path.split(os.path.abspath(a.model))
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype, attn_implementation="sdpa")
    model = model.to(a.device).eval()
    vocab = model.config.vocab_size
    # Only the last position's logits, as bwb computes (and generation needs).
    last_only = bool(a.random_config) and "logits_to_keep" in inspect.signature(model.forward).parameters
    prefill_kw = {"logits_to_keep": 1} if last_only else {}

    for batch in a.batch_size:
        t_start = time.time()
        reset_peaks(a.device)
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(0, vocab, (batch, a.prompt_len), generator=g).to(a.device)

        @torch.inference_mode()
        def run(new):
            sync(a.device)
            t0 = time.perf_counter()
            out = model(input_ids=ids, use_cache=True, **prefill_kw)
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
        row = {
            "model": a.random_config or a.model, "random_weights": bool(a.random_config),
            "device": a.device, "dtype": a.dtype, "quant": "none (peer)",
            "batch_size": batch, "prompt_len": a.prompt_len, "new_tokens": a.new_tokens,
            "prefill_s": p, "decode_s": d,
            "prefill_tok_s": batch * a.prompt_len / p,
            "decode_tok_s": batch * a.new_tokens / d if d > 0 else 0.0,
            "decode_ms_per_step": 1000 * d / a.new_tokens if a.new_tokens else 0.0,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "dims": dims_of(model.config),
            "prefill_logits": "last" if last_only else "all",
            "t_start": t_start, "t_end": time.time(),
            "torch": torch.__version__,
        }
        row.update(gpu_peaks(a.device))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
