// ggml 4-bit blocks straight to a dense f32/bf16/f16 weight (no f32 temporary for 16-bit
// outputs). One thread per byte of packed nibbles, writing its two values. Blocks are only
// 2-byte aligned (Q4_0 is 18 bytes), so the f16 scales are read bytewise. The arithmetic is
// done with explicit round-to-nearest intrinsics (no FMA contraction), so the f32 values equal
// ggml's / candle's CPU decoding bit for bit. The CPU reference is src/kernels/dequant.rs.
//   Q4_0: {f16 d; u8 qs[16]} per 32:  y[j] = ((qs[j] & 15) − 8)·d, y[j+16] = ((qs[j] >> 4) − 8)·d
//   Q4_1: {f16 d; f16 m; u8 qs[16]}:  y = q·d + m
//   Q4_K: {f16 d; f16 dmin; u8 scales[12]; u8 qs[128]} per 256: 4 groups of 64, group g uses
//         qs[32g..32g+32], low nibbles with (sc, mn) #2g, high nibbles with #2g+1:
//         y = (d·sc)·q − dmin·mn
#include "common.cuh"

__device__ __forceinline__ float f16_at(const uint8_t* p) {
  __half_raw r;
  r.x = (unsigned short)(p[0] | (p[1] << 8));
  return __half2float(__half(r));
}

template <typename T>
__device__ void dequant_q4_0(const uint8_t* __restrict__ q, T* __restrict__ out,
                             unsigned long long n_blocks) {
  const unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n_blocks * 16ull) return;
  const unsigned long long b = i >> 4;
  const int j = (int)(i & 15);
  const uint8_t* blk = q + b * 18ull;
  const float d = f16_at(blk);
  const uint8_t x = blk[2 + j];
  T* y = out + b * 32ull;
  y[j] = from_f32<T>(__fmul_rn((float)((int)(x & 15) - 8), d));
  y[j + 16] = from_f32<T>(__fmul_rn((float)((int)(x >> 4) - 8), d));
}

template <typename T>
__device__ void dequant_q4_1(const uint8_t* __restrict__ q, T* __restrict__ out,
                             unsigned long long n_blocks) {
  const unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n_blocks * 16ull) return;
  const unsigned long long b = i >> 4;
  const int j = (int)(i & 15);
  const uint8_t* blk = q + b * 20ull;
  const float d = f16_at(blk);
  const float m = f16_at(blk + 2);
  const uint8_t x = blk[4 + j];
  T* y = out + b * 32ull;
  y[j] = from_f32<T>(__fadd_rn(__fmul_rn((float)(x & 15), d), m));
  y[j + 16] = from_f32<T>(__fadd_rn(__fmul_rn((float)(x >> 4), d), m));
}

// ggml's get_scale_min_k4: the 6-bit (scale, min) pair #j of a Q4_K block.
__device__ __forceinline__ void scale_min_k4(int j, const uint8_t* s, int* sc, int* mn) {
  if (j < 4) {
    *sc = s[j] & 63;
    *mn = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

template <typename T>
__device__ void dequant_q4k(const uint8_t* __restrict__ q, T* __restrict__ out,
                            unsigned long long n_blocks) {
  const unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n_blocks * 128ull) return;
  const unsigned long long b = i >> 7;
  const int k = (int)(i & 127);
  const int g = k >> 5, l = k & 31;
  const uint8_t* blk = q + b * 144ull;
  const float d = f16_at(blk);
  const float dmin = f16_at(blk + 2);
  const uint8_t* scales = blk + 4;
  int sc1, m1, sc2, m2;
  scale_min_k4(2 * g, scales, &sc1, &m1);
  scale_min_k4(2 * g + 1, scales, &sc2, &m2);
  const float d1 = __fmul_rn(d, (float)sc1), mm1 = __fmul_rn(dmin, (float)m1);
  const float d2 = __fmul_rn(d, (float)sc2), mm2 = __fmul_rn(dmin, (float)m2);
  const uint8_t x = blk[16 + k];
  T* y = out + b * 256ull + g * 64;
  y[l] = from_f32<T>(__fsub_rn(__fmul_rn(d1, (float)(x & 15)), mm1));
  y[l + 32] = from_f32<T>(__fsub_rn(__fmul_rn(d2, (float)(x >> 4)), mm2));
}

#define DEQUANT(T, S)                                                                    \
  extern "C" __global__ void dequant_q4_0_##S(const uint8_t* q, T* out,                  \
                                              unsigned long long n_blocks) {             \
    dequant_q4_0<T>(q, out, n_blocks);                                                   \
  }                                                                                      \
  extern "C" __global__ void dequant_q4_1_##S(const uint8_t* q, T* out,                  \
                                              unsigned long long n_blocks) {             \
    dequant_q4_1<T>(q, out, n_blocks);                                                   \
  }                                                                                      \
  extern "C" __global__ void dequant_q4k_##S(const uint8_t* q, T* out,                   \
                                             unsigned long long n_blocks) {              \
    dequant_q4k<T>(q, out, n_blocks);                                                    \
  }
BWB_FOR_DTYPES(DEQUANT)
