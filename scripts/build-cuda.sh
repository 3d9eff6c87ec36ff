#!/usr/bin/env bash
# Build bwb with the `cuda` feature (what `./start.sh --cuda` runs).
#
# - Uses the system CUDA toolkit when `nvcc` is on PATH (RunPod images), otherwise installs
#   the CUDA 13.0 compiler and headers from PyPI wheels into .cuda/ (pinned to 13.0.x: the
#   H100 machines' driver 580 cannot load PTX from a newer nvcc).
# - CUDA_COMPUTE_CAP: 90 (H100/H200) by default; 80 (A100), 86/89 (RTX cards).
# - Without a system toolkit, candle-core is built from a copy whose cudarc feature is
#   `dynamic-loading` instead of `dynamic-linking` (the wheels have no libcuda stub to link
#   against), passed with `cargo --config patch…`; Cargo.toml/Cargo.lock are left as they are.
#   build.rs links cudart statically and bakes a RUNPATH, so the binary finds the GPU
#   machine's CUDA 13 libraries without LD_LIBRARY_PATH.
# Output: target/cuda/release/bwb (and bwb.xz beside it for the device tool's 64 MiB limit);
# a separate target dir keeps the CPU build in target/release intact.
# A cold build takes ~25 minutes on 2 cores (most of it nvcc compiling candle-kernels).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=${BWB_CUDA_WORK:-$root/.cuda}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-13000}
export CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-$(nproc)}
wheels=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cuda-crt==13.0.88
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-cccl==13.0.85
)

patch_args=()
if command -v nvcc >/dev/null 2>&1 && [[ -z "${BWB_CUDA_FROM_PYPI:-}" ]]; then
  echo "==> using the system CUDA toolkit: $(command -v nvcc)"
else
  export CUDA_HOME=$work/toolkit/nvidia/cu13
  if [[ ! -x $CUDA_HOME/bin/nvcc || ! -e $CUDA_HOME/include/nv/target ]]; then
    echo "==> installing the CUDA 13.0 compiler and headers from PyPI into $work/toolkit"
    rm -rf "$work/toolkit" "$work/wheels"
    python3 -m pip download --quiet --no-deps -d "$work/wheels" "${wheels[@]}"
    # One call: `pip install --target` silently skips an existing top-level nvidia/.
    python3 -m pip install --quiet --no-deps --no-index --target "$work/toolkit" "$work"/wheels/*.whl
  fi
  ln -sfn lib "$CUDA_HOME/lib64"
  ln -sfn libcudart.so.13 "$CUDA_HOME/lib/libcudart.so"
  export PATH=$CUDA_HOME/bin:$PATH
  version=$(cargo metadata --format-version 1 --locked | python3 -c '
import json, sys
m = json.load(sys.stdin)
print([p for p in m["packages"] if p["name"] == "candle-core" and p["source"]][0]["manifest_path"].rsplit("/", 1)[0])')
  vendor=$work/vendor/candle-core
  if [[ ! -f $vendor/.bwb-patched ]]; then
    rm -rf "$vendor"; mkdir -p "$work/vendor"
    cp -r "$version" "$vendor"
    rm -f "$vendor/.cargo-ok" "$vendor/.cargo_vcs_info.json"
    sed -i 's/^    "dynamic-linking",$/    "dynamic-loading",/' "$vendor/Cargo.toml"
    grep -q '"dynamic-loading"' "$vendor/Cargo.toml" || { echo "error: patching candle-core failed" >&2; exit 1; }
    touch "$vendor/.bwb-patched"
  fi
  patch_args=(--config "patch.crates-io.candle-core.path=\"$vendor\"")
fi
nvcc --version | tail -1

# The patch rewrites Cargo.lock's candle-core entry; keep the committed lockfile intact.
mkdir -p "$work"
cp Cargo.lock "$work/Cargo.lock.orig"
trap 'cp "$work/Cargo.lock.orig" Cargo.lock' EXIT
export CARGO_TARGET_DIR=$root/target/cuda
echo "==> cargo build --release --features cuda (CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP)"
cargo build --release --features cuda "${patch_args[@]}"
bin=$CARGO_TARGET_DIR/release/bwb
xz -6 -T0 -k -f "$bin"
ls -l "$bin" "$bin.xz"
echo "==> done: $bin (sm_$CUDA_COMPUTE_CAP); send $bin.xz to the GPU machine and 'xz -d' it there"
