// Chunked cross-entropy, per-row step (one block per row of logits):
//   z_c    = c · tanh(z / c)               (softcap c > 0; z_c = z without one)
//   loss   = logsumexp(z_c) − z_c[t]
//   grad_z = (softmax(z_c) − onehot(t)) · (1 − (z_c / c)²)   (the factor only with a softcap)
// The logits row is read in the matmul dtype T (converting bf16/f16 to f32 is exact, so this
// equals converting the chunk to f32 first, without the f32 copy); statistics in f32, an online
// max/sum so the row is read twice (statistics, gradient). `grad` (a separate buffer) may be
// null: no gradient wanted. A target outside [0, v) gives a NaN loss.
// The CPU reference is src/kernels/cross_entropy.rs.
#include "common.cuh"

__device__ __forceinline__ float ce_cap(float x, float cap) {
  return cap > 0.f ? cap * tanhf(x / cap) : x;
}

template <typename T>
__device__ void ce_rows(const T* __restrict__ z, const uint32_t* __restrict__ targets,
                        T* __restrict__ grad,
                        float* __restrict__ loss, int v, float cap) {
  const size_t row = blockIdx.x;
  const T* zr = z + row * (size_t)v;
  const uint32_t t = targets[row];
  const bool valid = t < (uint32_t)v;
  const float zt = valid ? ce_cap(to_f32(zr[t]), cap) : 0.f;
  float m = -INFINITY, s = 0.f;
  for (int i = threadIdx.x; i < v; i += blockDim.x) {
    const float x = ce_cap(to_f32(zr[i]), cap);
    if (x == -INFINITY) continue;  // contributes exp(-inf) = 0; avoids exp(-inf - -inf)
    if (x > m) {
      s = s * expf(m - x) + 1.f;
      m = x;
    } else {
      s += expf(x - m);
    }
  }
  const float bm = block_max(m);
  s = m == -INFINITY ? 0.f : s * expf(m - bm);
  s = block_sum(s);
  if (threadIdx.x == 0) loss[row] = valid ? bm + logf(s) - zt : NAN;
  if (grad == nullptr) return;
  T* gr = grad + row * (size_t)v;
  const float inv = 1.f / s;
  for (int i = threadIdx.x; i < v; i += blockDim.x) {
    const float x = ce_cap(to_f32(zr[i]), cap);
    float g = expf(x - bm) * inv - ((uint32_t)i == t ? 1.f : 0.f);
    if (cap > 0.f) {
      const float u = x / cap;
      g *= 1.f - u * u;
    }
    gr[i] = from_f32<T>(g);
  }
}

#define CE_ROWS(T, S)                                                                    \
  extern "C" __global__ void ce_rows_##S(const T* z, const uint32_t* targets, T* grad,   \
                                         float* loss, int v, float cap) {                \
    ce_rows<T>(z, targets, grad, loss, v, cap);                                          \
  }
BWB_FOR_DTYPES(CE_ROWS)
