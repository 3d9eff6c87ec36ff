// Attention on tensor cores (bf16/f16): the forward for head dims 64, 128 and 256 and the
// backward (dQ, then dK/dV) for 64 and 128, with the contract of attention.cu (positions,
// padding, sliding window, soft-cap, grouped KV heads, per-row log-sum-exp from the forward), the
// products as warp matrix multiply-accumulates (nvcuda::wmma, 16×16×16, f32 accumulation)
// instead of per-lane dot products. The backward kernels are described above their code.
//
// Forward: grid (ceil(L / 64), Hq, B), block 4 warps; warp w owns query rows 16w..16w+15 of the block.
// Per key tile of TK = 32 keys, staged in shared memory (K and V, row-major, the input dtype):
//   S = Q Kᵀ (16 × 32, f32) → shared memory; two lanes per query row mask and soft-cap it, update
//   the running max m and sum l, write P = exp(s − m) in the input dtype, and the output
//   accumulators (fragments, kept in registers across tiles) are rescaled by exp(m_old − m_new)
//   through shared memory only when some row's max moved; then O += P V.
// The fragments' element layout is never used (WMMA leaves it unspecified), so the emulation in
// kernels/emu/ runs this file as it is. The CPU reference is src/kernels/attention.rs.
// K/V rows of one (b, KV head) are the first T of `kv_cap` in the forward (a preallocated KV
// cache; kv_cap = T when contiguous), exactly T in the backward.
#include "common.cuh"
#ifndef BWB_EMU
#include <mma.h>
#endif

#define TC_TK 32
#define TC_NW 4
#define TC_FULL 0xffffffffu
// Per-warp shared memory (bytes): S (16 × TK f32), P (16 × TK, 2-byte type), m / l / alpha (16 f32
// each), padded to a multiple of 128.
#define TC_WARP_BYTES (16 * TC_TK * 4 + 16 * TC_TK * 2 + 256)
// Per-warp shared memory of the backward kernels: S and dP (16 × TK f32 each), two 16 × TK tiles
// of the 2-byte type, 128 bytes of row statistics.
#define TC_BWD_WARP_BYTES (16 * TC_TK * 8 + 16 * TC_TK * 4 + 128)

namespace wmma = nvcuda::wmma;
template <typename T>
using tc_a_frag = wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major>;
using tc_acc_frag = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

// Stage TK rows of `sa` and `sb` (each D long, `avail` rows present; zeros after) into shared
// `da`, `db`, by the whole block.
template <typename T, int D>
__device__ __forceinline__ void tc_stage2(T* da, T* db, const T* __restrict__ sa,
                                          const T* __restrict__ sb, int avail) {
  for (int idx = threadIdx.x; idx < TC_TK * D; idx += blockDim.x) {
    const int j = idx / D, d = idx - j * D;
    const bool in = j < avail;
    da[idx] = in ? sa[(size_t)j * D + d] : from_f32<T>(0.f);
    db[idx] = in ? sb[(size_t)j * D + d] : from_f32<T>(0.f);
  }
}

// 16 rows of `src` (D long, `avail` present; zeros after) into A fragments, staged through this
// warp's `st` (16 × D), by one warp.
template <typename T, int D>
__device__ __forceinline__ void tc_rows_to_frags(tc_a_frag<T> (&f)[D / 16], T* st,
                                                 const T* __restrict__ src, int avail) {
  const int lane = threadIdx.x & 31;
  for (int idx = lane; idx < 16 * D; idx += 32) {
    const int r = idx / D, d = idx - r * D;
    st[idx] = r < avail ? src[(size_t)r * D + d] : from_f32<T>(0.f);
  }
  __syncwarp();
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) wmma::load_matrix_sync(f[kk], st + kk * 16, D);
  __syncwarp();
}

// X = A1 · B1ᵀ and Y = A2 · B2ᵀ (16 × TK each, f32) into `xs`, `ys` (row stride TK): A in
// fragments (16 × D), B row-major TK × D tiles in shared memory (i.e. Bᵀ column-major).
template <typename T, int D>
__device__ __forceinline__ void tc_products2(const tc_a_frag<T> (&a1)[D / 16],
                                             const tc_a_frag<T> (&a2)[D / 16], const T* b1,
                                             const T* b2, float* xs, float* ys) {
#pragma unroll
  for (int nt = 0; nt < TC_TK / 16; ++nt) {
    tc_acc_frag xf, yf;
    wmma::fill_fragment(xf, 0.f);
    wmma::fill_fragment(yf, 0.f);
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> bf;
      wmma::load_matrix_sync(bf, b1 + nt * 16 * D + kk * 16, D);
      wmma::mma_sync(xf, a1[kk], bf, xf);
      wmma::load_matrix_sync(bf, b2 + nt * 16 * D + kk * 16, D);
      wmma::mma_sync(yf, a2[kk], bf, yf);
    }
    wmma::store_matrix_sync(xs + nt * 16, xf, TC_TK, wmma::mem_row_major);
    wmma::store_matrix_sync(ys + nt * 16, yf, TC_TK, wmma::mem_row_major);
  }
  __syncwarp();
}

// acc (16 × D, fragments) += A · B: A a 16 × TK tile in shared memory (row stride TK), B a
// TK × D row-major tile in shared memory.
template <typename T, int D>
__device__ __forceinline__ void tc_accumulate(tc_acc_frag (&acc)[D / 16], const T* a,
                                              const T* b) {
#pragma unroll
  for (int kt = 0; kt < TC_TK / 16; ++kt) {
    tc_a_frag<T> af;
    wmma::load_matrix_sync(af, a + kt * 16, TC_TK);
#pragma unroll
    for (int nt = 0; nt < D / 16; ++nt) {
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> bf;
      wmma::load_matrix_sync(bf, b + kt * 16 * D + nt * 16, D);
      wmma::mma_sync(acc[nt], af, bf, acc[nt]);
    }
  }
}

// Smallest and largest non-negative position among `pos[first .. min(first + 64, n))` (a
// block's 4 × 16 rows), for skipping tiles none of them can see. Called by one thread.
__device__ __forceinline__ void tc_pos_range(const long long* pos, int first, int n,
                                             long long* lo_out, long long* hi_out) {
  long long lo = 0x7fffffffffffffffLL, hi = -1;
  for (int i = first; i < first + 16 * TC_NW && i < n; ++i) {
    const long long p = pos[i];
    if (p >= 0) {
      lo = p < lo ? p : lo;
      hi = p > hi ? p : hi;
    }
  }
  *lo_out = lo;
  *hi_out = hi;
}

__device__ __forceinline__ bool tc_visible(long long qp, long long kp, long long window) {
  return kp >= 0 && kp <= qp && (window < 0 || qp - kp < window);
}

__device__ __forceinline__ float tc_cap(float s, float softcap) {
  return softcap > 0.f ? softcap * tanhf(s / softcap) : s;
}

template <typename T, int D>
__device__ void attn_fwd_tc(const T* __restrict__ q, const T* __restrict__ k,
                            const T* __restrict__ v, const long long* __restrict__ qpos,
                            const long long* __restrict__ kpos, T* __restrict__ out,
                            float* __restrict__ lse, int hq, int hkv, int L, int T_, int kv_cap,
                            float scale, float softcap, long long window) {
  constexpr int KD = D / 16;  // 16-wide slices of the head dimension
  BWB_DYNAMIC_SMEM(unsigned char, smem);
  __shared__ long long kps[TC_TK];
  __shared__ long long qlo_s, qhi_s;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int b = blockIdx.z, h = blockIdx.y, g = h / (hq / hkv);
  const int qblock = blockIdx.x * 16 * TC_NW;
  const int q0 = qblock + warp * 16;
  const size_t qrow0 = ((size_t)b * hq + h) * L;    // (b, h, 0) row
  const size_t kvrow0 = ((size_t)b * hkv + g) * kv_cap;  // (b, g, 0) row; rows kv_cap apart
  T* ks = (T*)smem;
  T* vs = ks + TC_TK * D;
  unsigned char* wbase = smem + 2 * TC_TK * D * sizeof(T) + warp * TC_WARP_BYTES;
  float* ss = (float*)wbase;                       // 16 × TK scores, later 16 × 16 scratch
  T* ps = (T*)(wbase + 16 * TC_TK * 4);            // 16 × TK probabilities
  float* ms = (float*)(wbase + 16 * TC_TK * 6);    // running max per row
  float* ls = ms + 16;                             // running sum per row
  float* als = ls + 16;                            // this tile's rescale factor per row

  if (threadIdx.x == 0) tc_pos_range(qpos + (size_t)b * L, qblock, L, &qlo_s, &qhi_s);
  // This warp's 16 query rows (zeros past L) into fragments, staged in the K/V area.
  if (lane < 16) {
    ms[lane] = -INFINITY;
    ls[lane] = 0.f;
  }
  tc_a_frag<T> qf[KD];
  tc_rows_to_frags<T, D>(qf, ks + warp * 16 * D, q + (qrow0 + q0) * D, L - q0);
  tc_acc_frag of[KD];
#pragma unroll
  for (int nt = 0; nt < KD; ++nt) wmma::fill_fragment(of[nt], 0.f);
  __syncthreads();  // Q is in registers everywhere before K/V tiles overwrite its staging
  const long long qlo = qlo_s, qhi = qhi_s;

  // Lane pair (2r, 2r + 1) handles query row r, columns 16·(lane & 1) .. +15 of each tile.
  const int r = lane >> 1, c0 = (lane & 1) * 16;
  const long long qp = q0 + r < L ? qpos[(size_t)b * L + q0 + r] : -1;

  for (int t0 = 0; t0 < T_; t0 += TC_TK) {
    int need = 0;
    if (threadIdx.x < TC_TK) {
      const int j = t0 + threadIdx.x;
      const long long kp = j < T_ ? kpos[(size_t)b * T_ + j] : -1;
      kps[threadIdx.x] = kp;
      need = qhi >= 0 && kp >= 0 && kp <= qhi && (window < 0 || qlo - kp < window);
    }
    if (!__syncthreads_or(need)) continue;  // block-uniform
    tc_stage2<T, D>(ks, vs, k + (kvrow0 + t0) * D, v + (kvrow0 + t0) * D, T_ - t0);
    __syncthreads();

    // S = Q Kᵀ: K row-major (key, d) is Kᵀ column-major.
#pragma unroll
    for (int nt = 0; nt < TC_TK / 16; ++nt) {
      tc_acc_frag sf;
      wmma::fill_fragment(sf, 0.f);
#pragma unroll
      for (int kk = 0; kk < KD; ++kk) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> kf;
        wmma::load_matrix_sync(kf, ks + nt * 16 * D + kk * 16, D);
        wmma::mma_sync(sf, qf[kk], kf, sf);
      }
      wmma::store_matrix_sync(ss + nt * 16, sf, TC_TK, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax for row r over this tile's columns c0..c0+15.
    float sv[16];
    float mx = -INFINITY;
#pragma unroll
    for (int c = 0; c < 16; ++c) {
      const int j = c0 + c;
      const float s = tc_visible(qp, kps[j], window) ? tc_cap(ss[r * TC_TK + j] * scale, softcap)
                                                     : -INFINITY;
      sv[c] = s;
      mx = fmaxf(mx, s);
    }
    mx = fmaxf(mx, __shfl_xor_sync(TC_FULL, mx, 1));
    const float mo = ms[r];
    const float mn = fmaxf(mo, mx);
    const float alpha = mn == -INFINITY ? 1.f : __expf(mo - mn);
    float sum = 0.f;
#pragma unroll
    for (int c = 0; c < 16; ++c) {
      const T p = from_f32<T>(sv[c] == -INFINITY ? 0.f : __expf(sv[c] - mn));
      ps[r * TC_TK + c0 + c] = p;
      sum += to_f32(p);  // the rounded value, as the matmul sees it
    }
    sum += __shfl_xor_sync(TC_FULL, sum, 1);
    const int rescale = __any_sync(TC_FULL, alpha != 1.f);
    if ((lane & 1) == 0) {
      ms[r] = mn;
      ls[r] = ls[r] * alpha + sum;
      als[r] = alpha;
    }
    __syncwarp();
    if (rescale) {  // warp-uniform
#pragma unroll
      for (int nt = 0; nt < KD; ++nt) {
        wmma::store_matrix_sync(ss, of[nt], 16, wmma::mem_row_major);
        __syncwarp();
        for (int idx = lane; idx < 256; idx += 32) ss[idx] *= als[idx >> 4];
        __syncwarp();
        wmma::load_matrix_sync(of[nt], ss, 16, wmma::mem_row_major);
        __syncwarp();
      }
    }

    // O += P V.
    tc_accumulate<T, D>(of, ps, vs);
    __syncthreads();  // the tile (and kps) is read everywhere before the next one is staged
  }

  // O / l, rows past L dropped; rows with no visible key (l = 0) give zeros and lse −∞.
#pragma unroll
  for (int nt = 0; nt < KD; ++nt) {
    wmma::store_matrix_sync(ss, of[nt], 16, wmma::mem_row_major);
    __syncwarp();
    for (int idx = lane; idx < 256; idx += 32) {
      const int rr = idx >> 4, cc = idx & 15;
      const float l = ls[rr];
      if (q0 + rr < L) out[(qrow0 + q0 + rr) * D + nt * 16 + cc] = from_f32<T>(l > 0.f ? ss[idx] / l : 0.f);
    }
    __syncwarp();
  }
  if (lane < 16 && q0 + lane < L)
    lse[qrow0 + q0 + lane] = ls[lane] > 0.f ? ms[lane] + logf(ls[lane]) : -INFINITY;
}

// dQ on tensor cores, with Δ_i = dO_i · O_i (O the forward's output, as FlashAttention-2 does; the
// CUDA-core attn_bwd_dq recomputes Δ before O's rounding instead) written for attn_bwd_dkdv_tc.
// Per key tile: S = Q Kᵀ and dP = dO Vᵀ (16 × TK per warp), dS = P ∘ (dP − Δ) (× the soft-cap
// derivative) in the input dtype, dQ += dS K; dQ · scale at the end.
// grid (ceil(L / 64), Hq, B), block 4 warps of 16 query rows.
template <typename T, int D>
__device__ void attn_bwd_dq_tc(const T* __restrict__ q, const T* __restrict__ k,
                               const T* __restrict__ v, const T* __restrict__ o,
                               const T* __restrict__ dout, const float* __restrict__ lse,
                               float* __restrict__ delta, const long long* __restrict__ qpos,
                               const long long* __restrict__ kpos, T* __restrict__ dq, int hq,
                               int hkv, int L, int T_, float scale, float softcap,
                               long long window) {
  constexpr int KD = D / 16;
  BWB_DYNAMIC_SMEM(unsigned char, smem);
  __shared__ long long kps[TC_TK];
  __shared__ long long qlo_s, qhi_s;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int b = blockIdx.z, h = blockIdx.y, g = h / (hq / hkv);
  const int qblock = blockIdx.x * 16 * TC_NW;
  const int q0 = qblock + warp * 16;
  const size_t qrow0 = ((size_t)b * hq + h) * L;
  const size_t kvrow0 = ((size_t)b * hkv + g) * T_;
  T* ks = (T*)smem;
  T* vs = ks + TC_TK * D;
  unsigned char* wbase = smem + 2 * TC_TK * D * sizeof(T) + warp * TC_BWD_WARP_BYTES;
  float* ss = (float*)wbase;                        // 16 × TK scores, later 16 × 16 scratch
  float* dps = ss + 16 * TC_TK;                     // 16 × TK dP
  T* dss = (T*)(dps + 16 * TC_TK);                  // 16 × TK dS
  float* lss = (float*)(wbase + 16 * TC_TK * 10);   // lse per row
  float* dls = lss + 16;                            // Δ per row

  if (threadIdx.x == 0) tc_pos_range(qpos + (size_t)b * L, qblock, L, &qlo_s, &qhi_s);
  // Lane pair (2r, 2r + 1) owns query row r: Δ over its half of D, lse.
  const int r = lane >> 1, c0 = (lane & 1) * 16;
  const bool row_in = q0 + r < L;
  {
    float dot = 0.f;
    if (row_in)
      for (int d = (lane & 1) * (D / 2); d < (lane & 1) * (D / 2) + D / 2; ++d)
        dot += to_f32(dout[(qrow0 + q0 + r) * D + d]) * to_f32(o[(qrow0 + q0 + r) * D + d]);
    dot += __shfl_xor_sync(TC_FULL, dot, 1);
    if ((lane & 1) == 0) {
      dls[r] = dot;
      lss[r] = row_in ? lse[qrow0 + q0 + r] : -INFINITY;
      if (row_in) delta[qrow0 + q0 + r] = dot;
    }
  }
  // Q, then dO, through this warp's part of the K/V area into fragments.
  tc_a_frag<T> qf[KD], df[KD];
  tc_rows_to_frags<T, D>(qf, ks + warp * 16 * D, q + (qrow0 + q0) * D, L - q0);
  tc_rows_to_frags<T, D>(df, ks + warp * 16 * D, dout + (qrow0 + q0) * D, L - q0);
  tc_acc_frag acc[KD];
#pragma unroll
  for (int nt = 0; nt < KD; ++nt) wmma::fill_fragment(acc[nt], 0.f);
  __syncthreads();
  const long long qlo = qlo_s, qhi = qhi_s;
  const long long qp = row_in ? qpos[(size_t)b * L + q0 + r] : -1;
  const float lse_r = lss[r], del_r = dls[r];

  for (int t0 = 0; t0 < T_; t0 += TC_TK) {
    int need = 0;
    if (threadIdx.x < TC_TK) {
      const int j = t0 + threadIdx.x;
      const long long kp = j < T_ ? kpos[(size_t)b * T_ + j] : -1;
      kps[threadIdx.x] = kp;
      need = qhi >= 0 && kp >= 0 && kp <= qhi && (window < 0 || qlo - kp < window);
    }
    if (!__syncthreads_or(need)) continue;  // block-uniform
    tc_stage2<T, D>(ks, vs, k + (kvrow0 + t0) * D, v + (kvrow0 + t0) * D, T_ - t0);
    __syncthreads();
    // S = Q Kᵀ and dP = dO Vᵀ.
    tc_products2<T, D>(qf, df, ks, vs, ss, dps);
#pragma unroll
    for (int c = 0; c < 16; ++c) {
      const int j = c0 + c;
      float ds = 0.f;
      if (tc_visible(qp, kps[j], window)) {
        const float sc = tc_cap(ss[r * TC_TK + j] * scale, softcap);
        ds = __expf(sc - lse_r) * (dps[r * TC_TK + j] - del_r);
        if (softcap > 0.f) {
          const float u = sc / softcap;
          ds *= 1.f - u * u;
        }
      }
      dss[r * TC_TK + j] = from_f32<T>(ds);
    }
    __syncwarp();
    // dQ += dS K.
    tc_accumulate<T, D>(acc, dss, ks);
    __syncthreads();
  }

#pragma unroll
  for (int nt = 0; nt < KD; ++nt) {
    wmma::store_matrix_sync(ss, acc[nt], 16, wmma::mem_row_major);
    __syncwarp();
    for (int idx = lane; idx < 256; idx += 32) {
      const int rr = idx >> 4, cc = idx & 15;
      if (q0 + rr < L) dq[(qrow0 + q0 + rr) * D + nt * 16 + cc] = from_f32<T>(ss[idx] * scale);
    }
    __syncwarp();
  }
}

// dK and dV on tensor cores, per key, over the rep·L query rows of its KV group (contiguous in
// memory) in tiles of TK, after attn_bwd_dq_tc (which writes Δ). Keys are the rows here:
// Sᵀ = K Qᵀ and dPᵀ = V dOᵀ (16 × TK per warp), Pᵀ and dSᵀ in the input dtype, dV += Pᵀ dO,
// dK += dSᵀ Q; dK · scale at the end.
// grid (ceil(T / 64), Hkv, B), block 4 warps of 16 keys.
template <typename T, int D>
__device__ void attn_bwd_dkdv_tc(const T* __restrict__ q, const T* __restrict__ k,
                                 const T* __restrict__ v, const T* __restrict__ dout,
                                 const float* __restrict__ lse, const float* __restrict__ delta,
                                 const long long* __restrict__ qpos,
                                 const long long* __restrict__ kpos, T* __restrict__ dk,
                                 T* __restrict__ dv, int hq, int hkv, int L, int T_, float scale,
                                 float softcap, long long window) {
  constexpr int KD = D / 16;
  BWB_DYNAMIC_SMEM(unsigned char, smem);
  __shared__ long long qps[TC_TK];
  __shared__ float lses[TC_TK], dels[TC_TK];
  __shared__ long long klo_s, khi_s;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int b = blockIdx.z, g = blockIdx.y;
  const int rep = hq / hkv, nrows = rep * L;
  const int kblock = blockIdx.x * 16 * TC_NW;
  const int k0 = kblock + warp * 16;
  const size_t kvrow0 = ((size_t)b * hkv + g) * T_;
  const size_t row0 = ((size_t)b * hq + (size_t)g * rep) * L;  // first (b, h, i) row of the group
  T* qt = (T*)smem;            // TK × D query tile
  T* dot = qt + TC_TK * D;     // TK × D dO tile
  unsigned char* wbase = smem + 2 * TC_TK * D * sizeof(T) + warp * TC_BWD_WARP_BYTES;
  float* ss = (float*)wbase;                  // 16 × TK Sᵀ, later 16 × 16 scratch
  float* dps = ss + 16 * TC_TK;               // 16 × TK dPᵀ
  T* pts = (T*)(dps + 16 * TC_TK);            // 16 × TK Pᵀ
  T* dss = pts + 16 * TC_TK;                  // 16 × TK dSᵀ

  if (threadIdx.x == 0) tc_pos_range(kpos + (size_t)b * T_, kblock, T_, &klo_s, &khi_s);
  // This warp's 16 keys and values (zeros past T) into fragments, staged in the tile area
  // (4 warps × 16 rows × D fill exactly the two TK × D tiles).
  tc_a_frag<T> kf[KD], vf[KD];
  tc_rows_to_frags<T, D>(kf, qt + warp * 16 * D, k + (kvrow0 + k0) * D, T_ - k0);
  tc_rows_to_frags<T, D>(vf, qt + warp * 16 * D, v + (kvrow0 + k0) * D, T_ - k0);
  tc_acc_frag dka[KD], dva[KD];
#pragma unroll
  for (int nt = 0; nt < KD; ++nt) {
    wmma::fill_fragment(dka[nt], 0.f);
    wmma::fill_fragment(dva[nt], 0.f);
  }
  __syncthreads();
  const long long klo = klo_s, khi = khi_s;
  // Lane pair (2r, 2r + 1) owns key row r, query columns 16·(lane & 1) .. +15 of each tile.
  const int r = lane >> 1, c0 = (lane & 1) * 16;
  const long long kp = k0 + r < T_ ? kpos[(size_t)b * T_ + k0 + r] : -1;

  for (int r0 = 0; r0 < nrows; r0 += TC_TK) {
    int need = 0;
    if (threadIdx.x < TC_TK) {
      const int rr = r0 + threadIdx.x;
      const long long qp = rr < nrows ? qpos[(size_t)b * L + rr % L] : -1;
      qps[threadIdx.x] = qp;
      lses[threadIdx.x] = rr < nrows ? lse[row0 + rr] : 0.f;
      dels[threadIdx.x] = rr < nrows ? delta[row0 + rr] : 0.f;
      need = khi >= 0 && qp >= 0 && qp >= klo && (window < 0 || qp - khi < window);
    }
    if (!__syncthreads_or(need)) continue;  // block-uniform
    tc_stage2<T, D>(qt, dot, q + (row0 + r0) * D, dout + (row0 + r0) * D, nrows - r0);
    __syncthreads();
    // Sᵀ = K Qᵀ and dPᵀ = V dOᵀ.
    tc_products2<T, D>(kf, vf, qt, dot, ss, dps);
#pragma unroll
    for (int c = 0; c < 16; ++c) {
      const int i = c0 + c;
      float p = 0.f, ds = 0.f;
      if (tc_visible(qps[i], kp, window)) {
        const float sc = tc_cap(ss[r * TC_TK + i] * scale, softcap);
        p = __expf(sc - lses[i]);
        ds = p * (dps[r * TC_TK + i] - dels[i]);
        if (softcap > 0.f) {
          const float u = sc / softcap;
          ds *= 1.f - u * u;
        }
      }
      pts[r * TC_TK + i] = from_f32<T>(p);
      dss[r * TC_TK + i] = from_f32<T>(ds);
    }
    __syncwarp();
    // dV += Pᵀ dO, dK += dSᵀ Q.
    tc_accumulate<T, D>(dva, pts, dot);
    tc_accumulate<T, D>(dka, dss, qt);
    __syncthreads();
  }

#pragma unroll
  for (int nt = 0; nt < KD; ++nt) {
    for (int which = 0; which < 2; ++which) {
      wmma::store_matrix_sync(ss, which == 0 ? dka[nt] : dva[nt], 16, wmma::mem_row_major);
      __syncwarp();
      T* dst = which == 0 ? dk : dv;
      const float f = which == 0 ? scale : 1.f;
      for (int idx = lane; idx < 256; idx += 32) {
        const int rr = idx >> 4, cc = idx & 15;
        if (k0 + rr < T_) dst[(kvrow0 + k0 + rr) * D + nt * 16 + cc] = from_f32<T>(ss[idx] * f);
      }
      __syncwarp();
    }
  }
}

// 16-bit tensor-core MMA needs sm_80 (bf16) / sm_70 (f16); older targets get a trapping stub
// (the host only launches these at compute capability 8.0 or newer).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#define TC_CALL(call) __trap();
#else
#define TC_CALL(call) call;
#endif

#define TC_ARGS_TAIL int hq, int hkv, int L, int T_, float scale, float softcap, long long window
#define ATTN_TC_FWD(T, S, D)                                                                   \
  extern "C" __global__ void __launch_bounds__(32 * TC_NW) attn_fwd_tc_d##D##_##S(             \
      const T* q, const T* k, const T* v, const long long* qpos, const long long* kpos, T* out, \
      float* lse, int hq, int hkv, int L, int T_, int kv_cap, float scale, float softcap,     \
      long long window) {                                                                      \
    TC_CALL((attn_fwd_tc<T, D>(q, k, v, qpos, kpos, out, lse, hq, hkv, L, T_, kv_cap, scale,   \
                               softcap, window)))                                              \
  }
#define ATTN_TC_BWD(T, S, D)                                                                    \
  extern "C" __global__ void __launch_bounds__(32 * TC_NW) attn_bwd_dq_tc_d##D##_##S(           \
      const T* q, const T* k, const T* v, const T* o, const T* dout, const float* lse,          \
      float* delta, const long long* qpos, const long long* kpos, T* dq, TC_ARGS_TAIL) {        \
    TC_CALL((attn_bwd_dq_tc<T, D>(q, k, v, o, dout, lse, delta, qpos, kpos, dq, hq, hkv, L, T_, \
                                  scale, softcap, window)))                                     \
  }                                                                                             \
  extern "C" __global__ void __launch_bounds__(32 * TC_NW) attn_bwd_dkdv_tc_d##D##_##S(         \
      const T* q, const T* k, const T* v, const T* dout, const float* lse, const float* delta,  \
      const long long* qpos, const long long* kpos, T* dk, T* dv, TC_ARGS_TAIL) {               \
    TC_CALL((attn_bwd_dkdv_tc<T, D>(q, k, v, dout, lse, delta, qpos, kpos, dk, dv, hq, hkv, L,  \
                                    T_, scale, softcap, window)))                               \
  }
// Forward for head dims 64, 128 and 256; backward for 64 and 128 (at 256 its register tiles
// would spill; the CUDA-core backward runs there).
#define ATTN_TC_ALL(T, S) \
  ATTN_TC_FWD(T, S, 64) ATTN_TC_FWD(T, S, 128) ATTN_TC_FWD(T, S, 256) ATTN_TC_BWD(T, S, 64) ATTN_TC_BWD(T, S, 128)
ATTN_TC_ALL(__nv_bfloat16, bf16)
ATTN_TC_ALL(__half, f16)
