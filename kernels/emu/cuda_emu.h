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
void* dynamic_smem();
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
