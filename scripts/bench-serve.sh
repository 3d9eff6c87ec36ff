#!/usr/bin/env bash
# The serving benchmark on this machine (CPU): `bwb serve` on the shared SmolLM2 GGUF, loaded
# by `bwb bench serve` at concurrency 1, 8 and 32, beside `bwb bench infer` at the same batch
# sizes; then two random LoRA adapters served beside the base, the mixed traffic (base and
# both adapters round-robin) beside one adapter alone. Prints the rows for docs/BENCHMARKS.md.
#
#   cargo build --release && scripts/bench-serve.sh
#
# Environment: BWB_BIN (default target/release/bwb), GGUF (default the shared SmolLM2 Q4_1),
# CONCURRENCY (default "1 8 32"), PROMPT_LEN (128), MAX_TOKENS (32), WAVES (requests per run
# = WAVES × concurrency, at least 4; default 2), MIXED (1: also the adapter runs; default 1),
# OUT (the raw JSON lines and logs; default a fresh folder under /tmp, printed).
#
# Ratios: the server's output tokens/s over the engine's, where the engine's is either its
# decode-only rate (`decode_tok_s`) or its whole-batch rate, B × new tokens / (prefill + decode
# seconds), which pays for the prefill as the server does.

set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

BIN=${BWB_BIN:-target/release/bwb}
GGUF=${GGUF:-../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf}
CONCURRENCY=${CONCURRENCY:-1 8 32}
PROMPT_LEN=${PROMPT_LEN:-128}
MAX_TOKENS=${MAX_TOKENS:-32}
WAVES=${WAVES:-2}
MIXED=${MIXED:-1}
OUT=${OUT:-$(mktemp -d /tmp/bench-serve.XXXXXX)}
mkdir -p "$OUT"
export BWB_CACHE_DIR=off

[[ -x $BIN ]] || { echo "no bwb binary at $BIN: cargo build --release (or set BWB_BIN)" >&2; exit 1; }
[[ -f $GGUF ]] || { echo "no model at $GGUF (see ../shared/ASSETS.md, or set GGUF)" >&2; exit 1; }

MAXC=1
for c in $CONCURRENCY; do
  if ((c > MAXC)); then MAXC=$c; fi
done
SERVER_PID=
stop_server() {
  if [[ -n $SERVER_PID ]]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  fi
}
trap stop_server EXIT

# start_server LOG ARGS...: `bwb serve` on a free port; sets URL.
start_server() {
  local log=$1
  shift
  "$BIN" serve --model "$GGUF" --served-model-name smollm2 --port 0 --max-num-seqs "$MAXC" "$@" \
    >"$OUT/$log.out" 2>"$OUT/$log.err" &
  SERVER_PID=$!
  URL=
  for _ in $(seq 600); do
    URL=$(sed -n 's/^bwb serve: listening on //p' "$OUT/$log.out" | head -1)
    [[ -n $URL ]] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.5
  done
  echo "bwb serve did not start; see $OUT/$log.err" >&2
  exit 1
}

# load C N MODEL... : one `bwb bench serve` run, its JSON line appended to serve.jsonl.
load() {
  local c=$1 n=$2
  shift 2
  local models=()
  for m in "$@"; do models+=(--model "$m"); done
  "$BIN" bench serve --url "$URL" "${models[@]}" --concurrency "$c" --requests "$n" \
    --prompt-len "$PROMPT_LEN" --max-tokens "$MAX_TOKENS" --json | tee -a "$OUT/serve.jsonl"
}

requests() { local n=$((WAVES * $1)); echo $((n < 4 ? 4 : n)); }

: >"$OUT/serve.jsonl"
start_server serve
"$BIN" bench serve --url "$URL" --model smollm2 --concurrency 1 --requests 1 --prompt-len 8 \
  --max-tokens 4 --json >/dev/null # warm-up
for c in $CONCURRENCY; do
  echo "bench serve: concurrency $c" >&2
  load "$c" "$(requests "$c")" smollm2
done
stop_server

if ((MIXED)); then
  # Two random rank-8 adapters on q_proj and v_proj (SmolLM2: 30 layers, hidden 576, 3 KV
  # heads of 64), in PEFT's layout; the figures do not depend on the values.
  python3 - "$OUT/adapters" <<'PY'
import json, os, random, struct, sys
root = sys.argv[1]
layers, hidden, kv, r = 30, 576, 192, 8
for name, seed in (("a1", 1), ("a2", 2)):
    d = os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    rng = random.Random(seed)
    tensors = {}
    for i in range(layers):
        for mod, out in (("q_proj", hidden), ("v_proj", kv)):
            key = f"base_model.model.model.layers.{i}.self_attn.{mod}"
            tensors[f"{key}.lora_A.weight"] = ([r, hidden], [rng.gauss(0, 0.02) for _ in range(r * hidden)])
            tensors[f"{key}.lora_B.weight"] = ([out, r], [rng.gauss(0, 0.02) for _ in range(out * r)])
    head, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for k in sorted(tensors):
        shape, vals = tensors[k]
        b = struct.pack(f"<{len(vals)}f", *vals)
        head[k] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(head).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(os.path.join(d, "adapter_model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    cfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": 2 * r,
           "lora_dropout": 0.0, "bias": "none", "use_rslora": False,
           "target_modules": ["q_proj", "v_proj"], "base_model_name_or_path": "smollm2"}
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump(cfg, f)
PY
  start_server serve-lora --lora-modules "a1=$OUT/adapters/a1" "a2=$OUT/adapters/a2"
  "$BIN" bench serve --url "$URL" --model a1 --concurrency 1 --requests 1 --prompt-len 8 \
    --max-tokens 4 --json >/dev/null # warm-up
  echo "bench serve: one adapter and mixed traffic at concurrency $MAXC" >&2
  load "$MAXC" "$(requests "$MAXC")" a1
  load "$MAXC" "$(requests "$MAXC")" smollm2 a1 a2
  stop_server
fi

# The engine alone, same prompt length and new tokens, one batch per concurrency.
BATCHES=$(echo "$CONCURRENCY" | tr -s ' ' ',')
echo "bench infer: batch sizes $BATCHES" >&2
"$BIN" bench infer --model "$GGUF" --batch-size "$BATCHES" --prompt-len "$PROMPT_LEN" \
  --new-tokens "$MAX_TOKENS" --repeat 1 --json | tee "$OUT/infer.jsonl"

python3 - "$OUT/serve.jsonl" "$OUT/infer.jsonl" <<'PY'
import json, sys
serve = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
infer = {r["batch_size"]: r for r in (json.loads(l) for l in open(sys.argv[2]) if l.startswith("{"))}
print()
print("| concurrency / B | requests | server out tok/s | TTFT p50 ms | TPOT p50 ms | ITL p50 ms | E2E p50 ms | "
      "engine decode tok/s | engine batch tok/s | server / decode | server / batch |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in serve:
    models = ",".join(r["models"])
    c = r["concurrency"]
    e = infer.get(c) if models == "smollm2" else None
    dec = e["decode_tok_s"] if e else None
    batch = e["batch_size"] * e["new_tokens"] / (e["prefill_s"] + e["decode_s"]) if e else None
    out = r["output_throughput"]
    p50 = lambda k: f"{r[k]['p50']:.0f}" if r.get(k) else "—"
    ratio = lambda x: f"{out / x:.2f}×" if x else "—"
    label = f"{c}" if models == "smollm2" else f"{c} ({models})"
    fmt = lambda x: f"{x:.1f}" if x else "—"
    print(f"| {label} | {r['completed']}/{r['requests']} | {out:.1f} | {p50('ttft_ms')} | {p50('tpot_ms')} | "
          f"{p50('itl_ms')} | {p50('e2el_ms')} | {fmt(dec)} | {fmt(batch)} | {ratio(dec)} | {ratio(batch)} |")
mixed = [r for r in serve if len(r["models"]) > 1]
for m in mixed:
    one = next((r for r in serve if r["models"] == ["a1"] and r["concurrency"] == m["concurrency"]), None)
    if one:
        print(f"\nmixed ({','.join(m['models'])}) / one adapter (a1) at concurrency {m['concurrency']}: "
              f"{m['output_throughput'] / one['output_throughput']:.2f}×")
PY
echo "raw records: $OUT" >&2
