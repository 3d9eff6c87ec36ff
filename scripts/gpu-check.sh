#!/usr/bin/env bash
# The GPU check: one command, run from the repository root on a CUDA machine with the bwb
# binary built elsewhere (scripts/build-cuda.sh) and PyTorch + transformers + PEFT installed;
# no Rust and no network needed. Every step is timed, has a hard `timeout`, and records
# FAIL/TIMEOUT/SKIP and goes on when it fails; the whole run stays inside a time budget.
#
#   scripts/gpu-check.sh                 # on the GPU machine (~9 minutes on one H100)
#   scripts/gpu-check.sh --cpu-dry-run   # here: the same logic on the CPU, tiny shapes
#
# Steps:
#   a. nvidia-smi summary (GPU name, memory, driver); picks the peak figures for MFU.
#   b. correctness: `bwb bench kernels` (every fused kernel's outputs and gradients against the
#      composed ops in f32 on the CPU, then fused vs composed timings); `bwb generate` (greedy, f32) on the tiny HF fixtures under
#      tests/fixtures/models/<arch>/ (with and without their PEFT adapter) on CUDA and on the
#      CPU, token ids compared per arch; then `bwb --smoke-test train` (smoke model, FPB
#      fixtures, 8 steps) on both devices, epoch losses and the adapter compared.
#   c. `bwb bench infer` / `bwb bench train` with --random-weights --device cuda --dtype bf16
#      for qwen3-8b, gemma3-4b and phi4-mini at 1024 tokens: prefill B=8 and decode B=1 (and
#      B=8) after a 1024-token prompt; bf16 LoRA r 16 training at B=1 and B=2 (B=4 on GPUs
#      with >= 120 GB).
#   d. the peers (scripts/bench_*_peer.py --random-config, transformers + PEFT, SDPA, bf16) on
#      the same workloads, interleaved per model; then, budget permitting, one QLoRA pair
#      (bwb q4_0 base vs bitsandbytes NF4 when importable) on GPU_CHECK_QLORA_MODEL.
#   e. serving: a random checkpoint of GPU_CHECK_SERVE_MODEL's shape written to disk
#      (scripts/make_random_model.py), served by `bwb serve` and by vLLM's OpenAI server when
#      `import vllm` works (else `transformers serve`, chat route, when that CLI exists), each
#      loaded by `bwb bench serve` at GPU_CHECK_SERVE_C concurrencies (the dry run serves the
#      smoke model when torch is missing).
#   f. `bwb bench compress` (selective, lingua; 4096-token context) on GPU_CHECK_COMPRESS_MODEL
#      (default the SmolLM2 GGUF in ../shared; skipped when absent), printed to stderr.
#   g. one table (stdout, $OUT/gpu-check.md) and the raw records ($OUT/gpu-check.jsonl).
#
# Environment: BWB_BIN (default target/cuda/release/bwb, or target/release/bwb for the dry
# run; a BWB_BIN.xz next to it is unpacked), PYTHON (for the peers; default python3),
# OUT (output folder: the table, the records and logs/; default a fresh folder under /tmp,
# printed), GPU_CHECK_BUDGET_S (default 540; 900 dry), GPU_CHECK_MODELS (default "qwen3-8b
# gemma3-4b phi4-mini"), GPU_CHECK_QLORA_MODEL (default qwen3-8b; empty skips),
# GPU_CHECK_TRAIN_B / GPU_CHECK_INFER_B (comma-separated batch sizes), GPU_PEAK_TFLOPS /
# GPU_PEAK_TBS (override the peaks picked from the GPU name), GPU_CHECK_SERVE_MODEL (default
# qwen3-8b; empty skips serving), GPU_CHECK_SERVE_C (default "1 8 32"), GPU_CHECK_SERVE_ONLY=1
# (only steps a, e and f: the serving comparison inside its own budget).

set -u -o pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1

DRY=0
case "${1:-}" in
  --cpu-dry-run) DRY=1 ;;
  "") ;;
  -h | --help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: $0 [--cpu-dry-run]" >&2; exit 2 ;;
esac

if ((DRY)); then
  DEV=cpu DTYPE=${GPU_CHECK_DTYPE:-f32} BIN=${BWB_BIN:-target/release/bwb}
  BUDGET=${GPU_CHECK_BUDGET_S:-900}
  SCALE=(--layers 1 --vocab 1024) SEQ=32 NEW=4 REPEAT=1 STEPS=1
  INFER_B=${GPU_CHECK_INFER_B:-8,1} TRAIN_B=${GPU_CHECK_TRAIN_B:-1,2}
else
  DEV=cuda DTYPE=${GPU_CHECK_DTYPE:-bf16} BIN=${BWB_BIN:-target/cuda/release/bwb}
  BUDGET=${GPU_CHECK_BUDGET_S:-540}
  SCALE=() SEQ=1024 NEW=32 REPEAT=2 STEPS=2
  INFER_B=${GPU_CHECK_INFER_B:-8,1} TRAIN_B=${GPU_CHECK_TRAIN_B:-}
fi
MODELS=${GPU_CHECK_MODELS:-qwen3-8b gemma3-4b phi4-mini}
QLORA_MODEL=${GPU_CHECK_QLORA_MODEL-qwen3-8b}
PYTHON=${PYTHON:-python3}
RESERVE=15 # seconds kept for the table
T0=$(date +%s)

WORK=$(mktemp -d /tmp/gpu-check.XXXXXX)
OUTDIR=${OUT:-$WORK/out}
LOGS=$OUTDIR/logs # every step's stdout and stderr, and the GPU memory samples
mkdir -p "$OUTDIR" "$LOGS"
JSONL=$OUTDIR/gpu-check.jsonl
: >"$JSONL"
export BWB_CACHE_DIR=off HOME=${HOME:-$WORK}
SAMPLER_PID=

SERVER_PID=
cleanup() {
  if [[ -n $SAMPLER_PID ]]; then kill "$SAMPLER_PID" 2>/dev/null; fi
  if [[ -n $SERVER_PID ]]; then kill -- "-$SERVER_PID" 2>/dev/null; fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT

say() { printf '[gpu-check %4ss] %s\n' "$(($(date +%s) - T0))" "$*" >&2; }
left() { echo $((BUDGET - ($(date +%s) - T0) - RESERVE)); }

# ---------------------------------------------------------------------------------------
# The JSON side (records, comparisons, the table): stdlib Python, written once.
cat >"$WORK/gc.py" <<'PY'
import json, math, os, struct, sys, time

def rec(path, obj):
    with open(path, "a") as f:
        f.write(json.dumps(obj) + "\n")

def cmd_step(path, name, status, secs, meta, errfile, reason=""):
    tail = reason
    if status != "ok" and errfile and os.path.exists(errfile):
        with open(errfile, errors="replace") as f:
            lines = [l.rstrip() for l in f if l.strip()]
        tail = " | ".join(lines[-3:])[-600:]
    m = json.loads(meta) if meta else {}
    rec(path, dict(type="step", name=name, status=status, secs=float(secs), err_tail=tail, **m))

def cmd_bench(path, meta, outfile):
    m = json.loads(meta)
    n = 0
    if not os.path.exists(outfile):  # skipped
        print(0)
        return
    with open(outfile, errors="replace") as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    rec(path, dict(type="bench", data=json.loads(line), **m))
                    n += 1
                except ValueError:
                    pass
    print(n)

def byte_chars():
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    out = [""] * 256
    for b in printable:
        out[b] = chr(b)
    n = 0
    for b in range(256):
        if b not in printable:
            out[b] = chr(256 + n)
            n += 1
    return out

def cmd_tokenizer(dirpath):
    """The smoke model's byte tokenizer (bwb::model::load::byte_tokenizer): one token per
    byte plus three ChatML specials, byte-level BPE without merges."""
    vocab = {c: i for i, c in enumerate(byte_chars())}
    added = []
    for i, s in enumerate(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]):
        vocab[s] = 256 + i
        added.append({"id": 256 + i, "content": s, "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": True})
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
           "normalizer": None, "pre_tokenizer": bl, "post_processor": None, "decoder": bl,
           "model": {"type": "BPE", "dropout": None, "unk_token": None,
                     "continuing_subword_prefix": None, "end_of_word_suffix": None,
                     "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                     "vocab": vocab, "merges": []}}
    with open(os.path.join(dirpath, "tokenizer.json"), "w") as f:
        json.dump(tok, f)

def read_jsonl(p):
    out = []
    if os.path.exists(p):
        with open(p, errors="replace") as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass
    return out

def cmd_compare_gen(path, name, a, b, devs):
    ra, rb = read_jsonl(a), read_jsonl(b)
    if not ra or not rb:
        status, detail = "FAIL", f"no output ({len(ra)} vs {len(rb)} rows)"
    else:
        ia = [r.get("token_ids") for r in ra]
        ib = [r.get("token_ids") for r in rb]
        same = ia == ib
        status = "match" if same else "MISMATCH"
        detail = f"{sum(len(x or []) for x in ia)} tokens" if same else f"{devs}: {ia} vs {ib}"
    rec(path, dict(type="check", name=name, status=status, detail=detail))
    print(f"{name}: {status} ({detail})")

def cmd_kernels(path, outfile, dev):
    """`bwb bench kernels --json`: one check record for all kernel checks, one record per
    timing line."""
    rows = read_jsonl(outfile)
    checks = [r for r in rows if "check" in r]
    bad = [r["check"] for r in checks if not r.get("ok")]
    if not checks:
        status, detail = "FAIL", "no check output"
    else:
        status = "match" if not bad else "MISMATCH"
        worst = max(checks, key=lambda r: (r["check"]["err"] or 0) / r["check"]["tol"])["check"]
        detail = (f"{len(checks) - len(bad)}/{len(checks)} fused-kernel outputs and gradients on {dev} "
                  f"within tolerance of the composed f32 CPU reference (worst: {worst['kernel']} "
                  f"{worst['case']} err {worst['err']:.2e}, tol {worst['tol']:.0e})")
        if bad:
            detail += "; FAILED: " + "; ".join(f"{c['kernel']} {c['case']} err {c['err']}" for c in bad[:8])
    rec(path, dict(type="check", name="kernels (bwb bench kernels)", status=status, detail=detail))
    for r in rows:
        if "op" in r:
            rec(path, dict(type="kernel_time", data=r))
    print(f"kernels: {status} ({detail})")

def safetensors_f32(p):
    with open(p, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in head.items():
        if k == "__metadata__" or v.get("dtype") != "F32":
            continue
        s, e = v["data_offsets"]
        out[k] = struct.unpack(f"<{(e - s) // 4}f", data[s:e])
    return out

def cmd_compare_train(path, name, root_a, root_b, devs):
    rel = "results/smoke/training/smoke_fpb_lora-500.json"
    try:
        ha = json.load(open(os.path.join(root_a, rel)))["history"]
        hb = json.load(open(os.path.join(root_b, rel)))["history"]
    except (OSError, ValueError, KeyError) as e:
        rec(path, dict(type="check", name=name, status="FAIL", detail=f"no training record: {e}"))
        print(f"{name}: FAIL (no training record)")
        return
    la = [(h["train_loss"], h["val"]["loss"]) for h in ha]
    lb = [(h["train_loss"], h["val"]["loss"]) for h in hb]
    rel_diff = max((abs(x - y) / max(abs(x), 1e-12) for pa, pb in zip(la, lb) for x, y in zip(pa, pb)),
                   default=float("inf"))
    ad = "checkpoints/smoke/smoke/fpb/lora-500/adapter/adapter_model.safetensors"
    try:
        wa, wb = safetensors_f32(os.path.join(root_a, ad)), safetensors_f32(os.path.join(root_b, ad))
        scale = max((abs(x) for t in wa.values() for x in t), default=0.0) or 1.0
        wdiff = max((abs(x - y) for k in wa for x, y in zip(wa[k], wb.get(k, ()))), default=float("inf"))
        wdiff = wdiff / scale if set(wa) == set(wb) else float("inf")
    except (OSError, ValueError, KeyError, struct.error):
        wdiff = float("inf")
    ok = len(la) == len(lb) and rel_diff < 1e-3 and wdiff < 1e-2
    status = "match" if ok else "MISMATCH"
    detail = (f"{devs}: losses (train, val) per epoch {la} vs {lb}; max rel diff {rel_diff:.2e}; "
              f"adapter max |diff| / max |w| {wdiff:.2e} (tolerances 1e-3, 1e-2)")
    rec(path, dict(type="check", name=name, status=status, detail=detail))
    print(f"{name}: {status} ({detail})")

# Peak dense bf16 tensor FLOP/s and HBM bytes/s from the GPU name (spec sheets).
PEAKS = [("H200 NVL", 835e12, 4.8e12), ("H200", 989e12, 4.8e12), ("H100 NVL", 835e12, 3.9e12),
         ("H100 PCIe", 756e12, 2.0e12), ("H100", 989e12, 3.35e12)]

def peaks(gpu_name, dry):
    f = os.environ.get("GPU_PEAK_TFLOPS")
    b = os.environ.get("GPU_PEAK_TBS")
    if f and b:
        return float(f) * 1e12, float(b) * 1e12, "GPU_PEAK_TFLOPS/GPU_PEAK_TBS"
    for key, fl, bw in PEAKS:
        if key in gpu_name:
            return fl, bw, f"{key}: {fl / 1e12:.0f} TFLOP/s bf16 dense, {bw / 1e12:.2f} TB/s"
    if dry:
        return 989e12, 3.35e12, "dry run: H100 SXM figures as placeholders (the ratios mean nothing on a CPU)"
    return None, None, f"unknown GPU `{gpu_name}`: set GPU_PEAK_TFLOPS and GPU_PEAK_TBS"

def mem_window(samples, t0, t1):
    vals = [m for t, m in samples if t0 - 0.3 <= t <= t1 + 0.3]
    return max(vals) if vals else None

def fmt(x, spec, unit=""):
    return "—" if x is None else format(x, spec) + unit

def pct(x):
    return "—" if x is None else f"{100 * x:.3g} %"

def cmd_table(path, md_path, memlog, gpu_name, dry, dtype):
    recs = read_jsonl(path)
    samples = []
    if os.path.exists(memlog):
        for line in open(memlog, errors="replace"):
            p = line.split()
            if len(p) == 2:
                try:
                    samples.append((float(p[0]), float(p[1])))
                except ValueError:
                    pass
    peak_f, peak_bw, peak_src = peaks(gpu_name, dry == "1")
    dsize = {"bf16": 2, "f16": 2, "f32": 4}.get(dtype, 2)
    bench = [r for r in recs if r["type"] == "bench"]
    steps = [r for r in recs if r["type"] == "step"]

    def find(engine, kind, model, variant, b):
        for r in bench:
            if (r["engine"], r["kind"], r["model"], r["variant"]) == (engine, kind, model, variant) \
                    and r["data"].get("batch_size") == b:
                return r["data"]
        return None

    def status(engine, kind, model, variant):
        for r in steps:
            if (r.get("engine"), r.get("kind"), r.get("model"), r.get("variant")) == (engine, kind, model, variant):
                return r["status"] if r["status"] != "ok" else "no row"
        return "not run"

    def mem(d):
        if d is None:
            return None, ""
        m = mem_window(samples, d.get("t_start", 0), d.get("t_end", 0)) if samples else None
        if m is not None:
            return m, "GPU"
        return d.get("peak_rss_mib"), "RSS"

    def weight_bytes(d, dims):
        if d.get("weight_bytes"):
            return d["weight_bytes"]
        return (dims["layer_params"] + dims["head_params"]) * dsize

    rows = []
    # The rows: what each bwb step was asked to run (run, failed or skipped).
    plans = [r for r in steps if r.get("engine") == "bwb" and r.get("kind") in ("infer", "train")]
    for plan in plans:
        model, kind, variant = plan["model"], plan["kind"], plan["variant"]
        sizes = plan.get("batch_sizes") or []
        if kind == "infer":
            todo = [("prefill", max(sizes))] + [("decode", b) for b in sorted(sizes)] if sizes else []
        else:
            todo = [("train", b) for b in sizes]
        peer_variant = plan.get("peer_variant") or variant
        for what, b in todo:
            x = find("bwb", kind, model, variant, b)
            y = find("peer", kind, model, peer_variant, b)
            any_row = x or y or {}
            dims = any_row.get("dims")
            cell = {}
            for eng, d, v in (("bwb", x, variant), ("peer", y, peer_variant)):
                if d is None:
                    cell[eng] = dict(tok=None, mfu=None, bw=None, mem=(None, ""), st=status(eng, kind, model, v))
                    continue
                attn_tok = 4 * dims["heads"] * dims["head_dim"] * dims["layers"]  # × context
                n = dims["layer_params"] + dims["head_params"]
                bw = None
                if what == "prefill":
                    L = d["prompt_len"]
                    tok = d["prefill_tok_s"]
                    # 2·N_layers per token, the LM head once per row, attention over the full L×L.
                    fl = b * (2 * dims["layer_params"] * L + 2 * dims["head_params"] + attn_tok * L * L)
                    mfu = fl / d["prefill_s"] / peak_f if peak_f and d["prefill_s"] > 0 else None
                elif what == "decode":
                    L, new = d["prompt_len"], d["new_tokens"]
                    tok = d["decode_tok_s"]
                    step_s = d["decode_s"] / new if new else None
                    ctx = L + new / 2
                    fl = b * (2 * n + attn_tok * ctx)
                    mfu = fl / step_s / peak_f if peak_f and step_s else None
                    kv = b * ctx * dims["layers"] * 2 * dims["kv_heads"] * dims["head_dim"] * dsize
                    bw = (weight_bytes(d, dims) + kv) / step_s / peak_bw if peak_bw and step_s else None
                else:
                    T, L = d["batch_size"] * d["seq_len"], d["seq_len"]
                    fl = 4 * n * T + 6 * d["trainable_params"] * T + 3 * attn_tok * L * T
                    tok = d["tokens_per_s"]
                    mfu = fl / d["step_s"] / peak_f if peak_f and d["step_s"] > 0 else None
                cell[eng] = dict(tok=tok, mfu=mfu, bw=bw, mem=mem(d), st="")
            L = any_row.get("prompt_len", any_row.get("seq_len", plan.get("seq_len", "?")))
            if what == "prefill":
                label = f"prefill B={b}×{L}"
            elif what == "decode":
                label = f"decode B={b} (ctx {L})"
            else:
                label = f"train {variant} B={b}×{L}"
                if peer_variant != "bf16 LoRA (peer)":
                    label += f" (peer: {peer_variant})"
            rows.append((model, label, cell))

    head = ("| model | workload | bwb tok/s | peer tok/s | bwb/peer | bwb peak MiB | peer peak MiB "
            "| bwb MFU | peer MFU | bwb HBM | peer HBM |")
    lines = [head, "|" + "---|" * 11]
    for model, label, c in rows:
        b, p = c["bwb"], c["peer"]
        ratio = b["tok"] / p["tok"] if b["tok"] and p["tok"] else None
        def tok(e):
            return fmt(e["tok"], ".1f") if e["tok"] is not None else e["st"]
        def m(e):
            v, kind = e["mem"]
            return "—" if v is None else f"{v:.0f}" + (" (RSS)" if kind == "RSS" else "")
        lines.append(f"| {model} | {label} | {tok(b)} | {tok(p)} | {fmt(ratio, '.2f', '×')} | {m(b)} | {m(p)} "
                     f"| {pct(b['mfu'])} | {pct(p['mfu'])} | {pct(b['bw'])} | {pct(p['bw'])} |")
    checks = [r for r in recs if r["type"] == "check"]
    out = []
    out.append(f"# GPU check ({'CPU dry run' if dry == '1' else gpu_name})")
    out.append("")
    out.append(f"Date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}. Peaks: {peak_src}.")
    out.append("")
    out.append("## Correctness")
    out.append("")
    for r in checks:
        out.append(f"- {r['name']}: **{r['status']}** — {r['detail']}")
    out.append("")
    out.append("## Throughput")
    out.append("")
    out.extend(lines)
    out.append("")
    out.append("Tokens are non-padding tokens (random ids, no padding). FLOPs use N = matmul weights "
               "(decoder projections; LM head separately), attention over the full L×L as both "
               "engines' counts: prefill 2·N_layers·L + 2·N_head per row (logits at the last "
               "position only) + 4·L²·heads·head_dim·layers; decode 2·(N_layers+N_head) + "
               "4·ctx·heads·head_dim·layers per token; training (frozen base, LoRA) 4·N·T "
               "(forward + input gradient, no weight gradient) + 6·N_lora·T + "
               "12·L·heads·head_dim·layers·T. MFU = FLOPs / time / peak. HBM = (weight bytes "
               "+ KV-cache bytes at the mean context) per decode step / step time / peak "
               "bandwidth. Peak memory: the GPU's memory.used (nvidia-smi, every ~0.2 s) during "
               "the row's runs, context included; RSS on the CPU. Rows from one process share "
               "its model, so a later row can show memory an earlier one left cached.")
    out.append("")
    kt = [r["data"] for r in recs if r["type"] == "kernel_time"]
    if kt:
        out.append("## Fused kernels vs the composed candle ops (same device, forward + backward)")
        out.append("")
        out.append("| op | shape | dtype | fused fwd ms | composed fwd ms | fused fwd+bwd ms | composed fwd+bwd ms | speed-up |")
        out.append("|---|---|---|---|---|---|---|---|")
        for d in kt:
            out.append(f"| {d['op']} | {d['shape']} | {d['dtype']} | {d['fused_fwd_ms']:.3f} | {d['composed_fwd_ms']:.3f} "
                       f"| {d['fused_fwd_bwd_ms']:.3f} | {d['composed_fwd_bwd_ms']:.3f} | {d['speedup']:.2f}× |")
        out.append("")
    sv = [r for r in bench if r.get("kind") == "serve"]
    if sv:
        out.append("## Serving (`bwb bench serve` against each server, same prompts)")
        out.append("")
        out.append("| server | route | concurrency | completed | out tok/s | TTFT p50 ms | TPOT p50 ms "
                   "| ITL p50 ms | E2E p99 ms | bwb / peer |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        def q(d, k, p):
            return fmt((d.get(k) or {}).get(p), ".1f")
        for r in sv:
            d, c = r["data"], r["data"].get("concurrency")
            peer = next((x["data"] for x in sv if x["engine"] != "bwb" and x["data"].get("concurrency") == c), None)
            ratio = d["output_throughput"] / peer["output_throughput"] \
                if r["engine"] == "bwb" and peer and peer["output_throughput"] else None
            out.append(f"| {r['engine']} | {d['endpoint']} | {c} | {d['completed']}/{d['requests']} "
                       f"| {d['output_throughput']:.1f} | {q(d, 'ttft_ms', 'p50')} | {q(d, 'tpot_ms', 'p50')} "
                       f"| {q(d, 'itl_ms', 'p50')} | {q(d, 'e2el_ms', 'p99')} | {fmt(ratio, '.2f', '×')} |")
        out.append("")
    out.append("## Steps")
    out.append("")
    out.append("| step | status | s | note |")
    out.append("|---|---|---|---|")
    for r in steps:
        out.append(f"| {r['name']} | {r['status']} | {r['secs']:.1f} | {r.get('err_tail', '')[:200].replace('|', '/')} |")
    text = "\n".join(out) + "\n"
    with open(md_path, "w") as f:
        f.write(text)
    print(text)

def main():
    c, a = sys.argv[1], sys.argv[2:]
    {"step": cmd_step, "bench": cmd_bench, "tokenizer": cmd_tokenizer, "compare-gen": cmd_compare_gen,
     "compare-train": cmd_compare_train, "kernels": cmd_kernels, "table": cmd_table}[c](*a)

if __name__ == "__main__":
    main()
PY
GC() { python3 "$WORK/gc.py" "$@"; }

# step NAME CAP_S META_JSON -- CMD...: run CMD under `timeout`, stdout/stderr to the logs,
# record status and seconds. Returns CMD's status (3 when skipped for lack of budget).
step() {
  local name=$1 cap=$2 meta=$3
  shift 4
  local l
  l=$(left)
  if ((l < 10)); then
    GC step "$JSONL" "$name" SKIP 0 "$meta" ""
    say "$name: SKIP (budget spent)"
    return 3
  fi
  local t=$((cap < l ? cap : l)) s e rc st
  s=$(date +%s.%N)
  timeout -k 5 "$t" "$@" >"$LOGS/$name.out" 2>"$LOGS/$name.err"
  rc=$?
  e=$(date +%s.%N)
  case $rc in
    0) st=ok ;;
    124 | 137) st=TIMEOUT ;;
    *) st=FAIL ;;
  esac
  local secs
  secs=$(python3 -c "print(round($e - $s, 1))")
  GC step "$JSONL" "$name" "$st" "$secs" "$meta" "$LOGS/$name.err"
  say "$name: $st in ${secs}s (limit ${t}s)"
  return $rc
}

# meta ENGINE KIND MODEL VARIANT BATCHES: what a bench step runs, as JSON (PEER_VARIANT: the
# peer rows a bwb training step is compared with).
meta() {
  printf '{"engine":"%s","kind":"%s","model":"%s","variant":"%s","batch_sizes":[%s],"seq_len":%s,"peer_variant":"%s"}' \
    "$1" "$2" "$3" "$4" "$5" "$SEQ" "${PEER_VARIANT:-$4}"
}

# bench ENGINE KIND MODEL VARIANT BATCHES CAP -- CMD...: a bench step whose JSON lines become
# records.
bench() {
  local m name n
  m=$(meta "$1" "$2" "$3" "$4" "$5")
  name="$1-$2-$3-${4// /_}"
  name=${name//[()]/}
  shift 5
  local cap=$1
  shift 2
  step "$name" "$cap" "$m" -- "$@"
  n=$(GC bench "$JSONL" "$m" "$LOGS/$name.out")
  say "$name: $n result line(s)"
}

# skip ENGINE KIND MODEL VARIANT BATCHES REASON: record a bench step that cannot run here.
skip() {
  GC step "$JSONL" "$1-$2-$3" SKIP 0 "$(meta "$1" "$2" "$3" "$4" "$5")" "" "$6"
}

# ---------------------------------------------------------------------------------------
# a. The device.
if [[ ! -x $BIN && -f $BIN.xz ]]; then
  say "unpacking $BIN.xz"
  xz -dk "$BIN.xz" && chmod +x "$BIN"
fi
if [[ ! -x $BIN ]]; then
  say "no bwb binary at $BIN (set BWB_BIN)"
  GC step "$JSONL" "binary" FAIL 0 "" ""
fi
GPU_NAME="cpu (dry run)" GPU_MEM=0
if ((DRY)); then
  step smi 10 "" -- bash -c 'nproc; free -m | head -2; "$0" --version' "$BIN"
else
  step smi 30 "" -- bash -c 'nvidia-smi; nvidia-smi --query-gpu=name,memory.total,driver_version,power.limit,clocks.max.sm --format=csv; "$0" --version' "$BIN"
  cat "$LOGS/smi.out" >&2
  GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader -i 0 2>/dev/null | head -1)
  GPU_MEM=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits -i 0 2>/dev/null | head -1)
  GPU_MEM=${GPU_MEM//[^0-9]/}
  # GPU memory used, every ~0.2 s, with a timestamp, for the per-row peaks.
  (while :; do
    m=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 2>/dev/null | head -1)
    echo "$(date +%s.%N) $m"
    sleep 0.2
  done) >"$LOGS/gpumem.log" 2>/dev/null &
  SAMPLER_PID=$!
fi
if [[ -z $TRAIN_B ]]; then
  if ((${GPU_MEM:-0} >= 120000)); then TRAIN_B=1,4; else TRAIN_B=1,2; fi
fi
say "device $DEV ($GPU_NAME), dtype $DTYPE, budget ${BUDGET}s, models: $MODELS; infer B=$INFER_B, train B=$TRAIN_B, L=$SEQ"

PEERS=0 BNB=0
if "$PYTHON" -c "import torch, transformers, peft, yaml" 2>/dev/null; then
  if ((DRY)) || "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    PEERS=1
    if ! ((DRY)) && "$PYTHON" -c "import bitsandbytes" 2>/dev/null; then BNB=1; fi
  fi
fi
((PEERS)) || say "peers skipped: $PYTHON cannot import torch, transformers, peft and yaml (with CUDA)"

SERVE_ONLY=${GPU_CHECK_SERVE_ONLY:-0}
# Steps b to d, unless only the serving comparison was asked for (not re-indented).
if ((!SERVE_ONLY)); then
# ---------------------------------------------------------------------------------------
# b. Correctness: every fused kernel against the composed ops (the CUDA test run: values and
# gradients, then fused vs composed timings at Qwen3-8B widths), the same greedy tokens and
# the same training on both devices.
KTOK=1024
((DRY)) && KTOK=16
step kernels 120 "" -- "$BIN" bench kernels --device "$DEV" --dtype "$DTYPE" --tokens "$KTOK" --json
GC kernels "$JSONL" "$LOGS/kernels.out" "$DEV" >&2
OTHER=$DEV
((DRY)) && OTHER=cpu
P1="The quick brown fox jumps over the lazy dog, again and again." # > 32 bytes: phi3 longrope switches
P2="abc"
for arch in qwen3 llama gemma3 gemma3-mm-prefix phi3; do
  fx=$WORK/fixtures/$arch
  mkdir -p "$fx"
  cp -r "tests/fixtures/models/$arch/." "$fx/" && GC tokenizer "$fx"
  for adapter in none adapter; do
    [[ $adapter == adapter && ! -d $fx/adapter ]] && continue
    extra=()
    [[ $adapter == adapter ]] && extra=(--adapter "$fx/adapter")
    for side in a b; do
      d=cpu
      [[ $side == b ]] && d=$OTHER
      step "gen-$arch-$adapter-$side-$d" 60 "" -- "$BIN" generate --model "$fx" --raw --json \
        --max-new-tokens 16 --dtype f32 --device "$d" ${extra[@]+"${extra[@]}"} --prompt "$P1" --prompt "$P2"
    done
    GC compare-gen "$JSONL" "generate $arch$([[ $adapter == adapter ]] && echo ' + LoRA')" \
      "$LOGS/gen-$arch-$adapter-a-cpu.out" "$LOGS/gen-$arch-$adapter-b-$OTHER.out" "cpu vs $OTHER" >&2
  done
done
for side in a b; do
  d=cpu
  [[ $side == b ]] && d=$OTHER
  r=$WORK/smoke-$side
  mkdir -p "$r/tests/fixtures"
  cp -r configs prompts "$r/" && cp -r tests/fixtures/hub "$r/tests/fixtures/"
  step "smoke-train-$side-$d" 120 "" -- bash -c '
    b=$0 r=$1 d=$2
    "$b" --root "$r" --smoke-test download --task fpb &&
      "$b" --root "$r" --smoke-test prepare --task fpb &&
      "$b" --root "$r" --smoke-test train --model smoke --task fpb --condition lora-500 --device "$d"
  ' "$BIN" "$r" "$d"
done
GC compare-train "$JSONL" "smoke train (8 steps, q4k base)" "$WORK/smoke-a" "$WORK/smoke-b" "cpu vs $OTHER" >&2

# ---------------------------------------------------------------------------------------
# c, d. Throughput: bwb and the peer per model, interleaved, so a spent budget still leaves
# complete rows for the first models.
NOPEER="$PYTHON cannot import torch, transformers, peft and yaml (with CUDA)"
for model in $MODELS; do
  PEER_VARIANT=
  bench bwb infer "$model" bf16 "$INFER_B" 300 -- "$BIN" bench infer --model "$model" --random-weights \
    ${SCALE[@]+"${SCALE[@]}"} --device "$DEV" --dtype "$DTYPE" --batch-size "$INFER_B" \
    --prompt-len "$SEQ" --new-tokens "$NEW" --repeat "$REPEAT" --json
  if ((PEERS)); then
    bench peer infer "$model" bf16 "$INFER_B" 240 -- "$PYTHON" scripts/bench_infer_peer.py \
      --random-config "$model" ${SCALE[@]+"${SCALE[@]}"} --device "$DEV" --dtype "$DTYPE" \
      --batch-size "$INFER_B" --prompt-len "$SEQ" --new-tokens "$NEW" --repeat "$REPEAT"
  else
    skip peer infer "$model" bf16 "$INFER_B" "$NOPEER"
  fi
  PEER_VARIANT="bf16 LoRA (peer)"
  bench bwb train "$model" "bf16 LoRA" "$TRAIN_B" 300 -- "$BIN" bench train --model "$model" \
    --random-weights ${SCALE[@]+"${SCALE[@]}"} --device "$DEV" --dtype "$DTYPE" --quant none \
    --batch-size "$TRAIN_B" --seq-len "$SEQ" --steps "$STEPS" --json
  if ((PEERS)); then
    bench peer train "$model" "$PEER_VARIANT" "$TRAIN_B" 240 -- "$PYTHON" scripts/bench_train_peer.py \
      --random-config "$model" ${SCALE[@]+"${SCALE[@]}"} --device "$DEV" --dtype "$DTYPE" \
      --batch-size "$TRAIN_B" --seq-len "$SEQ" --steps "$STEPS"
  else
    skip peer train "$model" "$PEER_VARIANT" "$TRAIN_B" "$NOPEER"
  fi
  # The table so far, in case the machine is taken away before the end.
  GC table "$JSONL" "$OUTDIR/gpu-check.md" "$LOGS/gpumem.log" "$GPU_NAME" "$DRY" "$DTYPE" >/dev/null
done
# QLoRA: bwb's 4-bit base (q4_0: candle quantises on the CPU even for a CUDA tensor, and q4k
# takes minutes for 8B weights) against bitsandbytes NF4 (PyTorch has no 4-bit matmul
# without it), at the largest training batch.
if [[ -n $QLORA_MODEL ]]; then
  QB=${TRAIN_B##*,}
  PEER_VARIANT="nf4 QLoRA (peer)"
  bench bwb train "$QLORA_MODEL" "q4_0 QLoRA" "$QB" 300 -- "$BIN" bench train --model "$QLORA_MODEL" \
    --random-weights ${SCALE[@]+"${SCALE[@]}"} --device "$DEV" --dtype "$DTYPE" --quant q4_0 \
    --batch-size "$QB" --seq-len "$SEQ" --steps "$STEPS" --json
  if ((BNB)); then
    bench peer train "$QLORA_MODEL" "$PEER_VARIANT" "$QB" 240 -- "$PYTHON" scripts/bench_train_peer.py \
      --random-config "$QLORA_MODEL" ${SCALE[@]+"${SCALE[@]}"} --device "$DEV" --dtype "$DTYPE" \
      --quant nf4 --batch-size "$QB" --seq-len "$SEQ" --steps "$STEPS"
  else
    skip peer train "$QLORA_MODEL" "$PEER_VARIANT" "$QB" "bitsandbytes not importable (or no CUDA)"
  fi
fi

fi # steps b to d

# ---------------------------------------------------------------------------------------
# e. Serving: the same client (`bwb bench serve`) against `bwb serve` and the peer server on
# one random checkpoint on disk; prompts of SERVE_L tokens, SERVE_NEW tokens out, ignore_eos.
SERVE_MODEL=${GPU_CHECK_SERVE_MODEL-qwen3-8b}
if ((DRY)); then
  SERVE_C=${GPU_CHECK_SERVE_C:-1 4} SERVE_L=32 SERVE_NEW=8
else
  SERVE_C=${GPU_CHECK_SERVE_C:-1 8 32} SERVE_L=512 SERVE_NEW=64
fi
SERVE_MAXC=1
for c in $SERVE_C; do
  if ((c > SERVE_MAXC)); then SERVE_MAXC=$c; fi
done

# wait_ready URL PID SECONDS: until URL/v1/models answers 200 (0), the server exits or time
# runs out (1).
wait_ready() {
  python3 - "$1" "$2" "$3" <<'PY'
import os, sys, time, urllib.request
url, pid, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
end = time.time() + secs
while time.time() < end:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(1)
    try:
        with urllib.request.urlopen(url + "/v1/models", timeout=5) as r:
            if r.status == 200:
                sys.exit(0)
    except Exception:
        pass
    time.sleep(1)
sys.exit(1)
PY
}

# serve_run ENGINE ENDPOINT MODEL_NAME START_CAP -- SERVER_CMD... ({PORT} is replaced): start
# the server in its own process group, wait for it, run `bwb bench serve` at each
# concurrency (one bench record per run), stop it.
serve_run() {
  local eng=$1 endpoint=$2 mname=$3 cap=$4
  shift 5
  local port l t0 secs
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  l=$(left)
  if ((l < 60)); then
    GC step "$JSONL" "serve-$eng-start" SKIP 0 "" "" "budget spent"
    say "serve-$eng: SKIP (budget spent)"
    return
  fi
  t0=$(date +%s)
  setsid "${@//\{PORT\}/$port}" >"$LOGS/serve-$eng-server.out" 2>"$LOGS/serve-$eng-server.err" &
  SERVER_PID=$!
  if wait_ready "http://127.0.0.1:$port" "$SERVER_PID" "$((cap < l ? cap : l))"; then
    secs=$(($(date +%s) - t0))
    GC step "$JSONL" "serve-$eng-start" ok "$secs" "" ""
    say "serve-$eng: up in ${secs}s"
    "$BIN" bench serve --url "http://127.0.0.1:$port" --model "$mname" --concurrency 1 \
      --requests 2 --prompt-len 16 --max-tokens 4 --endpoint "$endpoint" --json \
      >"$LOGS/serve-$eng-warmup.out" 2>&1 || true
    for c in $SERVE_C; do
      bench "$eng" serve "$SERVE_MODEL" "$endpoint c$c" "$c" 150 -- "$BIN" bench serve \
        --url "http://127.0.0.1:$port" --model "$mname" --concurrency "$c" \
        --requests "$((c < 4 ? 8 : 2 * c))" --prompt-len "$SERVE_L" --max-tokens "$SERVE_NEW" \
        --endpoint "$endpoint" --json
    done
  else
    GC step "$JSONL" "serve-$eng-start" FAIL "$(($(date +%s) - t0))" "" "$LOGS/serve-$eng-server.err"
    say "serve-$eng: did not come up (see $LOGS/serve-$eng-server.err)"
  fi
  kill -- "-$SERVER_PID" 2>/dev/null
  wait "$SERVER_PID" 2>/dev/null
  SERVER_PID=
}

if [[ -n $SERVE_MODEL ]]; then
  SDIR=$WORK/serve-model
  SMOKE=()
  if ((PEERS)) || "$PYTHON" -c "import torch, transformers, yaml" 2>/dev/null; then
    step serve-model 300 "" -- "$PYTHON" scripts/make_random_model.py --random-config "$SERVE_MODEL" \
      ${SCALE[@]+"${SCALE[@]}"} --dtype "$DTYPE" --device "$DEV" --out "$SDIR"
  elif ((DRY)); then
    SDIR=smoke SMOKE=(--smoke-test) SERVE_MODEL=smoke
    say "serve: torch missing, the dry run serves the smoke model"
  fi
  if [[ $SDIR == smoke || -f $SDIR/config.json ]]; then
    PEER=none SEP=completions
    if "$PYTHON" -c "import vllm" 2>/dev/null; then
      PEER=vllm
    elif command -v transformers >/dev/null && transformers serve --help >/dev/null 2>&1; then
      PEER=transformers SEP=chat # `transformers serve` answers chat completions
    fi
    serve_run bwb "$SEP" m 300 -- "$BIN" ${SMOKE[@]+"${SMOKE[@]}"} serve --model "$SDIR" \
      --served-model-name m --port "{PORT}" --device "$DEV" --dtype "$DTYPE" \
      --max-num-seqs "$SERVE_MAXC" --max-model-len 2048
    case $PEER in
      vllm)
        serve_run vllm completions m 420 -- "$PYTHON" -m vllm.entrypoints.openai.api_server \
          --model "$SDIR" --served-model-name m --host 127.0.0.1 --port "{PORT}" \
          --dtype bfloat16 --max-model-len 2048 --max-num-seqs "$SERVE_MAXC" --enforce-eager \
          --gpu-memory-utilization 0.85
        ;;
      transformers)
        # It loads the model the request names (the directory) on first use.
        serve_run transformers chat "$SDIR" 300 -- transformers serve --host 127.0.0.1 \
          --port "{PORT}" --continuous-batching
        ;;
      *)
        GC step "$JSONL" "serve-peer" SKIP 0 "" "" "neither vllm nor \`transformers serve\` here"
        say "serve: no peer server (vllm not importable, no \`transformers serve\`)"
        ;;
    esac
  fi
fi

# ---------------------------------------------------------------------------------------
# f. Local context compressors (`bwb bench compress`: context tokens/s) on the SmolLM2 GGUF.
CMODEL=${GPU_CHECK_COMPRESS_MODEL:-../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf}
CTOK=4096
((DRY)) && CTOK=256
if [[ -f $CMODEL ]]; then
  for method in selective lingua; do
    step "compress-$method" 120 "" -- "$BIN" bench compress --method "$method" --model "$CMODEL" \
      --device "$DEV" --context-tokens "$CTOK" --batch 8 --repeat 1
    cat "$LOGS/compress-$method.out" >&2
  done
else
  say "compress: SKIP ($CMODEL absent; set GPU_CHECK_COMPRESS_MODEL)"
fi

# ---------------------------------------------------------------------------------------
# g. The table.
cleanup
SAMPLER_PID=
GC table "$JSONL" "$OUTDIR/gpu-check.md" "$LOGS/gpumem.log" "$GPU_NAME" "$DRY" "$DTYPE"
say "done in $(($(date +%s) - T0))s; table $OUTDIR/gpu-check.md, records $JSONL, logs $LOGS"
# Fixtures and smoke roots are scratch; the outputs stay.
if [[ -n ${OUT:-} ]]; then rm -rf "$WORK"; fi
