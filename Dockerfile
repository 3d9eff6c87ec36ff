# syntax=docker/dockerfile:1
# The bwb container image, for sweeps (SkyPilot, Slurm with containers, RunPod pods).
#
#   docker build --target cuda -t bwb:cuda .                          # GPU cells (default sm_90)
#   docker build --target cuda --build-arg CUDA_COMPUTE_CAP=80 -t bwb:cuda-sm80 .   # A100
#   docker build --target cpu  -t bwb:cpu .                           # API-only cells
#
# The final stages hold only the binary (/usr/local/bin/bwb), configs/, prompts/, the smoke
# fixtures and Python 3 for the MBPP sandbox; BWB_ROOT=/opt/bwb. Secrets (HF_TOKEN, API keys)
# never enter the image: pass them at run time (`docker run -e HF_TOKEN`, SkyPilot `--secret`,
# RunPod secrets). .dockerignore keeps .env, outputs and build folders out of the context.

ARG CUDA_VERSION=13.0.1
ARG UBUNTU=ubuntu24.04
ARG RUST_VERSION=1.95.0

# --- CUDA build: the project's own build path (scripts/build-cuda.sh, system nvcc) ---------
FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU} AS build-cuda
ARG RUST_VERSION
ARG CUDA_COMPUTE_CAP=90
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates curl build-essential pkg-config python3 xz-utils \
 && rm -rf /var/lib/apt/lists/*
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain "${RUST_VERSION}"
ENV PATH=/root/.cargo/bin:${PATH}
WORKDIR /src
COPY . .
RUN CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP} scripts/build-cuda.sh

# --- CUDA runtime: what GPU cells run in ----------------------------------------------------
FROM nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU} AS cuda
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates python3 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build-cuda /src/target/cuda/release/bwb /usr/local/bin/bwb
COPY configs /opt/bwb/configs
COPY prompts /opt/bwb/prompts
COPY tests/fixtures/hub /opt/bwb/tests/fixtures/hub
ENV BWB_ROOT=/opt/bwb
WORKDIR /opt/bwb
CMD ["bwb", "--help"]

# --- CPU build and runtime: API-only cells (and smoke tests) --------------------------------
FROM rust:${RUST_VERSION}-bookworm AS build-cpu
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim AS cpu
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates python3 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build-cpu /src/target/release/bwb /usr/local/bin/bwb
COPY configs /opt/bwb/configs
COPY prompts /opt/bwb/prompts
COPY tests/fixtures/hub /opt/bwb/tests/fixtures/hub
ENV BWB_ROOT=/opt/bwb
WORKDIR /opt/bwb
CMD ["bwb", "--help"]
