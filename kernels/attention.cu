// Fused attention over positions (causal, padding, sliding window, soft-cap, grouped KV heads)
// that never materialises the L × T score matrix: forward with an online softmax, backward
// recomputing the probabilities from the forward's per-row log-sum-exp (attn_bwd_dq, which also
// writes Δ per row, then attn_bwd_dkdv: no atomics, deterministic).
//
//   q (B, Hq, L, D), k/v (B, Hkv, T, D), positions qpos (B, L) / kpos (B, T) as int64
//   (negative = padding). Key j is visible to query i when kpos[j] >= 0, kpos[j] <= qpos[i]
//   and (window < 0 or qpos[i] − kpos[j] < window). s = scale·q·k, capped s' = c·tanh(s/c)
//   when softcap > 0. A query with no visible key gets zeros (lse = −inf).
//
// Layout of the work: the Hq/Hkv query heads sharing one KV head are adjacent in memory, so the
// query rows of KV group (b, g) are the rep·L contiguous rows r = hh·L + i. A block of NW warps
// owns NW consecutive rows of one group (forward, dQ) or NW consecutive keys (dK/dV); tiles of
// TK = 16 keys (resp. query rows) are staged in shared memory as f32 with row stride D + 2.
// Inside a warp, lane = 16·h + j: lane pair (j, h) computes the dot product with tile row j over
// the dimensions d ≡ h (mod 2) (conflict-free with the D + 2 stride), the halves are combined with
// one shuffle, and the weighted sums over the tile are accumulated with lanes splitting D
// (dimension lane + 32·r, r < 8, so D ≤ 256).
//
// Dynamic shared memory (floats): 2 tiles of TK·(D + 2) plus NW·D (forward) or 2·NW·D (backward),
// chosen by the host to stay under 48 KiB.
// The CPU reference is src/kernels/attention.rs; tests/it/kernels.rs compares the two.
#include "common.cuh"

#define ATTN_TK 16
#define ATTN_MAXR 8
#define ATTN_FULL 0xffffffffu

__device__ __forceinline__ bool attn_visible(long long qp, long long kp, long long window) {
  return kp >= 0 && kp <= qp && (window < 0 || qp - kp < window);
}

__device__ __forceinline__ float attn_cap(float s, float softcap) {
  return softcap > 0.f ? softcap * tanhf(s / softcap) : s;
}

// Smallest and largest non-padding query position among the `nw` rows (one per warp) of this
// block, for skipping key tiles no row can see. Called by one thread.
__device__ __forceinline__ void attn_qpos_range(const long long* qpos, int b, int L, int nrows,
                                                int nw, long long* lo_out, long long* hi_out) {
  long long lo = 0x7fffffffffffffffLL, hi = -1;
  for (int w = 0; w < nw; ++w) {
    const int rr = blockIdx.x * nw + w;
    if (rr < nrows) {
      const long long p = qpos[(size_t)b * L + rr % L];
      if (p >= 0) {
        lo = p < lo ? p : lo;
        hi = p > hi ? p : hi;
      }
    }
  }
  *lo_out = lo;
  *hi_out = hi;
}

// Stage rows [row0, row0 + TK) of `src` (each D long, `n` rows in all) into `dst` as f32 with
// row stride D + 2; rows past the end are zero.
template <typename T>
__device__ __forceinline__ void attn_stage(float* dst, const T* __restrict__ src, int row0, int n,
                                           int D) {
  const int DS = D + 2;
  for (int idx = threadIdx.x; idx < ATTN_TK * D; idx += blockDim.x) {
    const int j = idx / D, d = idx - j * D;
    const int row = row0 + j;
    dst[j * DS + d] = row < n ? to_f32(src[(size_t)row * D + d]) : 0.f;
  }
}

// Forward. grid (ceil(rep·L / NW), Hkv, B), block 32·NW. K/V rows of one (b, head) are the
// first T of `kv_cap` (a preallocated KV cache; kv_cap = T when contiguous).
template <typename T>
__device__ void attn_fwd(const T* __restrict__ q, const T* __restrict__ k,
                         const T* __restrict__ v, const long long* __restrict__ qpos,
                         const long long* __restrict__ kpos, T* __restrict__ out,
                         float* __restrict__ lse, int hq, int hkv, int L, int T_, int kv_cap,
                         int D,
                         float scale, float softcap, long long window) {
  BWB_DYNAMIC_SMEM(float, smem);
  __shared__ long long kps[ATTN_TK];
  __shared__ long long qlo_s, qhi_s;
  const int DS = D + 2;
  const int nw = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int h = lane >> 4, jl = lane & 15;
  float* ks = smem;
  float* vs = ks + ATTN_TK * DS;
  float* qs = vs + ATTN_TK * DS + warp * D;

  const int b = blockIdx.z, g = blockIdx.y;
  const int rep = hq / hkv, nrows = rep * L;
  const int r = blockIdx.x * nw + warp;
  const bool active = r < nrows;
  const long long qp = active ? qpos[(size_t)b * L + r % L] : -1;
  const size_t row = ((size_t)b * hq + (size_t)g * rep) * L + r;  // (b, h, i) row index
  const size_t kvoff = ((size_t)b * hkv + g) * (size_t)kv_cap * D;  // rows kv_cap apart per head
  const long long* kpb = kpos + (size_t)b * T_;

  if (threadIdx.x == 0) attn_qpos_range(qpos, b, L, nrows, nw, &qlo_s, &qhi_s);
  if (active)
    for (int d = lane; d < D; d += 32) qs[d] = to_f32(q[row * D + d]) * scale;
  __syncthreads();
  const long long qlo = qlo_s, qhi = qhi_s;

  float m = -INFINITY, l = 0.f;
  float acc[ATTN_MAXR];
#pragma unroll
  for (int i = 0; i < ATTN_MAXR; ++i) acc[i] = 0.f;

  for (int t0 = 0; t0 < T_; t0 += ATTN_TK) {
    int need = 0;
    if (threadIdx.x < ATTN_TK) {
      const int j = t0 + threadIdx.x;
      const long long kp = j < T_ ? kpb[j] : -1;
      kps[threadIdx.x] = kp;
      need = qhi >= 0 && kp >= 0 && kp <= qhi && (window < 0 || qlo - kp < window);
    }
    if (!__syncthreads_or(need)) continue;  // block-uniform
    attn_stage(ks, k + kvoff, t0, T_, D);
    attn_stage(vs, v + kvoff, t0, T_, D);
    __syncthreads();
    if (active) {
      const bool vis = attn_visible(qp, kps[jl], window);
      const float* kr = ks + jl * DS;
      float s = 0.f;
      for (int d = h; d < D; d += 2) s += qs[d] * kr[d];
      s += __shfl_xor_sync(ATTN_FULL, s, 16);
      s = vis ? attn_cap(s, softcap) : -INFINITY;
      const float mt = warp_max(s);
      if (mt != -INFINITY) {  // warp-uniform
        const float mn = fmaxf(m, mt);
        const float alpha = __expf(m - mn);
        const float p = vis ? __expf(s - mn) : 0.f;
        l = l * alpha + warp_sum(h == 0 ? p : 0.f);
        m = mn;
#pragma unroll
        for (int i = 0; i < ATTN_MAXR; ++i) acc[i] *= alpha;
        for (int j = 0; j < ATTN_TK; ++j) {
          const float pj = __shfl_sync(ATTN_FULL, p, j);
          const float* vr = vs + j * DS;
#pragma unroll
          for (int i = 0; i < ATTN_MAXR; ++i) {
            const int d = lane + 32 * i;
            if (d < D) acc[i] += pj * vr[d];
          }
        }
      }
    }
    __syncthreads();
  }

  if (active) {
    const float inv = l > 0.f ? 1.f / l : 0.f;
#pragma unroll
    for (int i = 0; i < ATTN_MAXR; ++i) {
      const int d = lane + 32 * i;
      if (d < D) out[row * D + d] = from_f32<T>(acc[i] * inv);
    }
    if (lane == 0) lse[row] = l > 0.f ? m + logf(l) : -INFINITY;
  }
}

// dQ per query row, in two passes over the keys: the first computes Δ = Σ_j p_j dO·v_j (what
// dO·O is before O's rounding to the input dtype) and stores it for attn_bwd_dkdv, the second
// dQ = scale · Σ_j p_j (dO·v_j − Δ) c'_j k_j (c' the soft-cap derivative).
// grid (ceil(rep·L / NW), Hkv, B), block 32·NW.
template <typename T>
__device__ void attn_bwd_dq(const T* __restrict__ q, const T* __restrict__ k,
                            const T* __restrict__ v, const T* __restrict__ dout,
                            const float* __restrict__ lse, float* __restrict__ delta,
                            const long long* __restrict__ qpos,
                            const long long* __restrict__ kpos, T* __restrict__ dq, int hq,
                            int hkv, int L, int T_, int D, float scale, float softcap,
                            long long window) {
  BWB_DYNAMIC_SMEM(float, smem);
  __shared__ long long kps[ATTN_TK];
  __shared__ long long qlo_s, qhi_s;
  const int DS = D + 2;
  const int nw = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int h = lane >> 4, jl = lane & 15;
  float* ks = smem;
  float* vs = ks + ATTN_TK * DS;
  float* qs = vs + ATTN_TK * DS + warp * D;
  float* dos = vs + ATTN_TK * DS + (nw + warp) * D;

  const int b = blockIdx.z, g = blockIdx.y;
  const int rep = hq / hkv, nrows = rep * L;
  const int r = blockIdx.x * nw + warp;
  const bool active = r < nrows;
  const long long qp = active ? qpos[(size_t)b * L + r % L] : -1;
  const size_t row = ((size_t)b * hq + (size_t)g * rep) * L + r;
  const size_t kvoff = ((size_t)b * hkv + g) * (size_t)T_ * D;
  const long long* kpb = kpos + (size_t)b * T_;
  const float lse_r = active ? lse[row] : 0.f;

  if (threadIdx.x == 0) attn_qpos_range(qpos, b, L, nrows, nw, &qlo_s, &qhi_s);
  if (active)
    for (int d = lane; d < D; d += 32) {
      qs[d] = to_f32(q[row * D + d]) * scale;
      dos[d] = to_f32(dout[row * D + d]);
    }
  __syncthreads();
  const long long qlo = qlo_s, qhi = qhi_s;

  float acc[ATTN_MAXR];
#pragma unroll
  for (int i = 0; i < ATTN_MAXR; ++i) acc[i] = 0.f;
  float del_r = 0.f, dpart = 0.f;

  for (int pass = 0; pass < 2; ++pass) {
    for (int t0 = 0; t0 < T_; t0 += ATTN_TK) {
      int need = 0;
      if (threadIdx.x < ATTN_TK) {
        const int j = t0 + threadIdx.x;
        const long long kp = j < T_ ? kpb[j] : -1;
        kps[threadIdx.x] = kp;
        need = qhi >= 0 && kp >= 0 && kp <= qhi && (window < 0 || qlo - kp < window);
      }
      if (!__syncthreads_or(need)) continue;  // block-uniform
      attn_stage(ks, k + kvoff, t0, T_, D);
      attn_stage(vs, v + kvoff, t0, T_, D);
      __syncthreads();
      if (active) {
        const bool vis = attn_visible(qp, kps[jl], window);
        if (__any_sync(ATTN_FULL, vis)) {
          const float* kr = ks + jl * DS;
          const float* vr = vs + jl * DS;
          float s = 0.f, dp = 0.f;
          for (int d = h; d < D; d += 2) {
            s += qs[d] * kr[d];
            dp += dos[d] * vr[d];
          }
          s += __shfl_xor_sync(ATTN_FULL, s, 16);
          dp += __shfl_xor_sync(ATTN_FULL, dp, 16);
          if (pass == 0) {
            if (vis && h == 0) dpart += __expf(attn_cap(s, softcap) - lse_r) * dp;
          } else {
            float ds = 0.f;
            if (vis) {
              const float sc = attn_cap(s, softcap);
              const float p = __expf(sc - lse_r);
              ds = p * (dp - del_r);
              if (softcap > 0.f) {
                const float t = sc / softcap;
                ds *= 1.f - t * t;
              }
            }
            for (int j = 0; j < ATTN_TK; ++j) {
              const float dsj = __shfl_sync(ATTN_FULL, ds, j);
              const float* kj = ks + j * DS;
#pragma unroll
              for (int i = 0; i < ATTN_MAXR; ++i) {
                const int d = lane + 32 * i;
                if (d < D) acc[i] += dsj * kj[d];
              }
            }
          }
        }
      }
      __syncthreads();
    }
    if (pass == 0 && active) {  // warp-uniform
      del_r = warp_sum(dpart);
      if (lane == 0) delta[row] = del_r;
    }
  }

  if (active) {
#pragma unroll
    for (int i = 0; i < ATTN_MAXR; ++i) {
      const int d = lane + 32 * i;
      if (d < D) dq[row * D + d] = from_f32<T>(acc[i] * scale);
    }
  }
}

// dK and dV per key, looping over the rep·L query rows of its KV group in tiles of TK rows
// (after attn_bwd_dq, which writes Δ). grid (ceil(T / NW), Hkv, B), block 32·NW.
template <typename T>
__device__ void attn_bwd_dkdv(const T* __restrict__ q, const T* __restrict__ k,
                              const T* __restrict__ v, const T* __restrict__ dout,
                              const float* __restrict__ lse, const float* __restrict__ delta,
                              const long long* __restrict__ qpos,
                              const long long* __restrict__ kpos, T* __restrict__ dk,
                              T* __restrict__ dv, int hq, int hkv, int L, int T_, int D,
                              float scale, float softcap, long long window) {
  BWB_DYNAMIC_SMEM(float, smem);
  __shared__ long long qps[ATTN_TK];
  __shared__ float lses[ATTN_TK], dels[ATTN_TK];
  __shared__ long long klo_s, khi_s;
  const int DS = D + 2;
  const int nw = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int h = lane >> 4, il = lane & 15;
  float* qt = smem;                   // query tile (unscaled)
  float* dot = qt + ATTN_TK * DS;     // dO tile
  float* kw = dot + ATTN_TK * DS + warp * D;         // this warp's key, scaled
  float* vw = dot + ATTN_TK * DS + (nw + warp) * D;  // this warp's value

  const int b = blockIdx.z, g = blockIdx.y;
  const int rep = hq / hkv, nrows = rep * L;
  const int j = blockIdx.x * nw + warp;
  const bool active = j < T_;
  const long long kp = active ? kpos[(size_t)b * T_ + j] : -1;
  const size_t kvrow = ((size_t)b * hkv + g) * (size_t)T_ + j;
  const size_t row0 = ((size_t)b * hq + (size_t)g * rep) * L;  // first (b, h, i) row of the group
  const T* qg = q + row0 * D;
  const T* dog = dout + row0 * D;

  if (threadIdx.x == 0) {
    long long lo = 0x7fffffffffffffffLL, hi = -1;
    for (int w = 0; w < nw; ++w) {
      const int jj = blockIdx.x * nw + w;
      if (jj < T_) {
        const long long p = kpos[(size_t)b * T_ + jj];
        if (p >= 0) {
          lo = p < lo ? p : lo;
          hi = p > hi ? p : hi;
        }
      }
    }
    klo_s = lo;
    khi_s = hi;
  }
  if (active)
    for (int d = lane; d < D; d += 32) {
      kw[d] = to_f32(k[kvrow * D + d]) * scale;
      vw[d] = to_f32(v[kvrow * D + d]);
    }
  __syncthreads();
  const long long klo = klo_s, khi = khi_s;

  float dka[ATTN_MAXR], dva[ATTN_MAXR];
#pragma unroll
  for (int i = 0; i < ATTN_MAXR; ++i) dka[i] = dva[i] = 0.f;

  for (int r0 = 0; r0 < nrows; r0 += ATTN_TK) {
    int need = 0;
    if (threadIdx.x < ATTN_TK) {
      const int rr = r0 + threadIdx.x;
      const long long qp = rr < nrows ? qpos[(size_t)b * L + rr % L] : -1;
      qps[threadIdx.x] = qp;
      lses[threadIdx.x] = rr < nrows ? lse[row0 + rr] : 0.f;
      dels[threadIdx.x] = rr < nrows ? delta[row0 + rr] : 0.f;
      need = khi >= 0 && qp >= 0 && qp >= klo && (window < 0 || qp - khi < window);
    }
    if (!__syncthreads_or(need)) continue;  // block-uniform
    attn_stage(qt, qg, r0, nrows, D);
    attn_stage(dot, dog, r0, nrows, D);
    __syncthreads();
    if (active) {
      const bool vis = attn_visible(qps[il], kp, window);
      if (__any_sync(ATTN_FULL, vis)) {
        const float* qr = qt + il * DS;
        const float* dr = dot + il * DS;
        float s = 0.f, dp = 0.f;
        for (int d = h; d < D; d += 2) {
          s += qr[d] * kw[d];
          dp += dr[d] * vw[d];
        }
        s += __shfl_xor_sync(ATTN_FULL, s, 16);
        dp += __shfl_xor_sync(ATTN_FULL, dp, 16);
        float p = 0.f, ds = 0.f;
        if (vis) {
          const float sc = attn_cap(s, softcap);
          p = __expf(sc - lses[il]);
          ds = p * (dp - dels[il]);
          if (softcap > 0.f) {
            const float t = sc / softcap;
            ds *= 1.f - t * t;
          }
        }
        for (int i2 = 0; i2 < ATTN_TK; ++i2) {
          const float p_i = __shfl_sync(ATTN_FULL, p, i2);
          const float dsi = __shfl_sync(ATTN_FULL, ds, i2);
          const float* qi = qt + i2 * DS;
          const float* di = dot + i2 * DS;
#pragma unroll
          for (int i = 0; i < ATTN_MAXR; ++i) {
            const int d = lane + 32 * i;
            if (d < D) {
              dva[i] += p_i * di[d];
              dka[i] += dsi * qi[d];
            }
          }
        }
      }
    }
    __syncthreads();
  }

  if (active) {
#pragma unroll
    for (int i = 0; i < ATTN_MAXR; ++i) {
      const int d = lane + 32 * i;
      if (d < D) {
        dk[kvrow * D + d] = from_f32<T>(dka[i] * scale);
        dv[kvrow * D + d] = from_f32<T>(dva[i]);
      }
    }
  }
}

#define ATTENTION(T, S)                                                                          \
  extern "C" __global__ void attn_fwd_##S(                                                       \
      const T* q, const T* k, const T* v, const long long* qpos, const long long* kpos, T* out,  \
      float* lse, int hq, int hkv, int L, int T_, int kv_cap, int D, float scale, float softcap, \
      long long window) {                                                                        \
    attn_fwd<T>(q, k, v, qpos, kpos, out, lse, hq, hkv, L, T_, kv_cap, D, scale, softcap,       \
                window);                                                                         \
  }                                                                                              \
  extern "C" __global__ void attn_bwd_dq_##S(                                                    \
      const T* q, const T* k, const T* v, const T* dout, const float* lse, float* delta,        \
      const long long* qpos, const long long* kpos, T* dq, int hq, int hkv, int L, int T_,      \
      int D, float scale, float softcap, long long window) {                                     \
    attn_bwd_dq<T>(q, k, v, dout, lse, delta, qpos, kpos, dq, hq, hkv, L, T_, D, scale,         \
                   softcap, window);                                                             \
  }                                                                                              \
  extern "C" __global__ void attn_bwd_dkdv_##S(                                                  \
      const T* q, const T* k, const T* v, const T* dout, const float* lse, const float* delta,  \
      const long long* qpos, const long long* kpos, T* dk, T* dv, int hq, int hkv, int L,       \
      int T_, int D, float scale, float softcap, long long window) {                             \
    attn_bwd_dkdv<T>(q, k, v, dout, lse, delta, qpos, kpos, dk, dv, hq, hkv, L, T_, D, scale,   \
                     softcap, window);                                                           \
  }
BWB_FOR_DTYPES(ATTENTION)
