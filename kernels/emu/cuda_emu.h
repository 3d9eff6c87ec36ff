// A CPU emulation of the small part of CUDA that bwb's kernels use, so that the kernel sources
// themselves (not a port) run and are checked on machines without a GPU: every CUDA thread of a
// block is an OS thread, `__syncthreads` a block barrier, warp shuffles and votes a barrier of
// the 32 lanes of the warp. Blocks run one after another, so `__shared__` variables are
// `static`. Included by common.cuh when BWB_EMU is defined; kernels/emu/runtime.cpp launches.
// Threads of a block meeting at different `__syncthreads` (or the end of the block) abort with a
// message, as does a barrier that not every thread reaches within BWB_EMU_TIMEOUT_S seconds
// (default 60): on a GPU both are undefined behaviour.
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>

#define __device__
#define __global__
#define __host__
#define __forceinline__ inline
#define __shared__ static

struct bwb_uint3 {
  unsigned x, y, z;
};

namespace bwb_emu {
extern thread_local bwb_uint3 thread_idx, block_idx, block_dim, grid_dim;
void sync_block(const char* site);
int sync_block_or(int pred, const char* site);
uint32_t warp_exchange(uint32_t bits, int src_lane, unsigned mask);
int warp_any(int pred, unsigned mask);
void sync_warp(unsigned mask);
unsigned lane();
void* dynamic_smem();
[[noreturn]] void fail(const char* what);
}  // namespace bwb_emu

#define threadIdx bwb_emu::thread_idx
#define blockIdx bwb_emu::block_idx
#define blockDim bwb_emu::block_dim
#define gridDim bwb_emu::grid_dim

// `extern __shared__ T name[]` (the launch's dynamic shared memory).
#define BWB_DYNAMIC_SMEM(T, name) T* name = (T*)bwb_emu::dynamic_smem()

// Barriers carry their source line: every thread of a block must meet at the same one.
#define BWB_EMU_STR2(x) #x
#define BWB_EMU_STR(x) BWB_EMU_STR2(x)
#define __syncthreads() bwb_emu::sync_block(__FILE__ ":" BWB_EMU_STR(__LINE__))
#define __syncthreads_or(pred) \
  bwb_emu::sync_block_or((pred) != 0, __FILE__ ":" BWB_EMU_STR(__LINE__))
inline int __any_sync(unsigned mask, int pred) { return bwb_emu::warp_any(pred != 0, mask); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { bwb_emu::sync_warp(mask); }

template <typename V>
inline V bwb_emu_shfl(V v, int src, unsigned mask) {
  static_assert(sizeof(V) == 4, "4-byte shuffles only");
  uint32_t bits;
  memcpy(&bits, &v, 4);
  bits = bwb_emu::warp_exchange(bits, src, mask);
  memcpy(&v, &bits, 4);
  return v;
}
template <typename V>
inline V __shfl_sync(unsigned mask, V v, int src) {
  return bwb_emu_shfl(v, src & 31, mask);
}
template <typename V>
inline V __shfl_xor_sync(unsigned mask, V v, int lane_mask) {
  const unsigned lin = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  return bwb_emu_shfl(v, (int)((lin & 31) ^ (unsigned)lane_mask) & 31, mask);
}

// Round-to-nearest intrinsics: plain IEEE operations (the emulator is built with
// -ffp-contract=off, so nothing is fused into an FMA).
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __expf(float x) { return expf(x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }

// bf16 / f16 storage types with CUDA's conversion functions (round to nearest even).
struct __nv_bfloat16 {
  uint16_t x;
};
inline float __bfloat162float(__nv_bfloat16 h) {
  const uint32_t u = (uint32_t)h.x << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
inline __nv_bfloat16 __float2bfloat16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  __nv_bfloat16 h;
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    h.x = (uint16_t)((u >> 16) | 0x40);  // quiet NaN
  } else {
    h.x = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
  return h;
}

struct __half_raw {
  unsigned short x;
};
struct __half {
  unsigned short x;
  __half() = default;
  __half(__half_raw r) : x(r.x) {}
};
inline float __half2float(__half h) {
  _Float16 f;
  memcpy(&f, &h.x, 2);
  return (float)f;
}
inline __half __float2half(float v) {
  const _Float16 f = (_Float16)v;
  __half h;
  memcpy(&h.x, &f, 2);
  return h;
}

inline float bwb_emu_to_f32(float x) { return x; }
inline float bwb_emu_to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
inline float bwb_emu_to_f32(__half x) { return __half2float(x); }

// nvcuda::wmma (warp matrix multiply-accumulate). The element-to-lane mapping of a real fragment
// is unspecified, so code that only loads, stores, fills and multiplies fragments cannot depend
// on it: here every lane holds the whole tile (row-major), `mma_sync` computes it in f32 (the
// products of bf16/f16 inputs are exact, as on tensor cores), and a store is done by lane 0 only,
// so reading a stored tile from another lane without `__syncwarp()` shows up as a race. Loads and
// stores check the documented requirements: 256-bit aligned pointers, `ldm` a multiple of
// 16 bytes.
namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K>
struct tile_dims;
template <int M, int N, int K>
struct tile_dims<matrix_a, M, N, K> {
  static const int R = M, C = K;
};
template <int M, int N, int K>
struct tile_dims<matrix_b, M, N, K> {
  static const int R = K, C = N;
};
template <int M, int N, int K>
struct tile_dims<accumulator, M, N, K> {
  static const int R = M, C = N;
};

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static const int R = tile_dims<Use, M, N, K>::R, C = tile_dims<Use, M, N, K>::C;
  enum { num_elements = R * C };
  T x[R * C];
};

inline void check_mem(const void* p, unsigned ldm, unsigned elem_bytes) {
  if ((uintptr_t)p % 32 != 0) bwb_emu::fail("wmma load/store: pointer not 256-bit aligned");
  if ((ldm * elem_bytes) % 16 != 0) bwb_emu::fail("wmma load/store: ldm not a multiple of 16 bytes");
}

template <class Use, int M, int N, int K, class T, class V>
inline void fill_fragment(fragment<Use, M, N, K, T, void>& f, V v) {
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = (T)v;
}

template <class Use, int M, int N, int K, class T, class L>
inline void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, const T* p, unsigned ldm) {
  check_mem(p, ldm, sizeof(T));
  const bool row = std::is_same<L, row_major>::value;
  for (int i = 0; i < f.R; ++i)
    for (int j = 0; j < f.C; ++j) f.x[i * f.C + j] = row ? p[i * ldm + j] : p[j * ldm + i];
}

template <int M, int N, int K>
inline void load_matrix_sync(fragment<accumulator, M, N, K, float, void>& f, const float* p,
                             unsigned ldm, layout_t l) {
  check_mem(p, ldm, 4);
  for (int i = 0; i < f.R; ++i)
    for (int j = 0; j < f.C; ++j)
      f.x[i * f.C + j] = l == mem_row_major ? p[i * ldm + j] : p[j * ldm + i];
}

template <int M, int N, int K>
inline void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float, void>& f,
                              unsigned ldm, layout_t l) {
  check_mem(p, ldm, 4);
  if (bwb_emu::lane() != 0) return;
  for (int i = 0; i < f.R; ++i)
    for (int j = 0; j < f.C; ++j)
      (l == mem_row_major ? p[i * ldm + j] : p[j * ldm + i]) = f.x[i * f.C + j];
}

template <int M, int N, int K, class T, class LA, class LB>
inline void mma_sync(fragment<accumulator, M, N, K, float, void>& d,
                     const fragment<matrix_a, M, N, K, T, LA>& a,
                     const fragment<matrix_b, M, N, K, T, LB>& b,
                     const fragment<accumulator, M, N, K, float, void>& c) {
  float out[M * N];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float s = c.x[i * N + j];
      for (int k = 0; k < K; ++k) s += bwb_emu_to_f32(a.x[i * K + k]) * bwb_emu_to_f32(b.x[k * N + j]);
      out[i * N + j] = s;
    }
  for (int i = 0; i < M * N; ++i) d.x[i] = out[i];
}
}  // namespace wmma
}  // namespace nvcuda

#define __launch_bounds__(...)
inline void __trap() { bwb_emu::fail("__trap()"); }
