// Fused RMSNorm forward and input-gradient backward (one block per row, statistics in f32).
//   y  = x · r · w,  r = 1 / √(mean(x²) + eps)
//   dx = r · w ∘ g − x · r³ / n · Σ(g ∘ w ∘ x)
// The CPU reference is src/kernels/rmsnorm.rs; tests/it/kernels.rs compares the two.
#include "common.cuh"

template <typename T>
__device__ void rmsnorm_fwd(const T* __restrict__ x, const float* __restrict__ w,
                            T* __restrict__ y, int n, float eps) {
  const size_t row = blockIdx.x;
  const T* xr = x + row * n;
  T* yr = y + row * n;
  float s = 0.f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = to_f32(xr[i]);
    s += v * v;
  }
  s = block_sum(s);
  const float r = rsqrtf(s / n + eps);
  for (int i = threadIdx.x; i < n; i += blockDim.x) yr[i] = from_f32<T>(to_f32(xr[i]) * r * w[i]);
}

template <typename T>
__device__ void rmsnorm_bwd(const T* __restrict__ x, const float* __restrict__ w,
                            const T* __restrict__ g, T* __restrict__ dx, int n, float eps) {
  const size_t row = blockIdx.x;
  const T* xr = x + row * n;
  const T* gr = g + row * n;
  T* dr = dx + row * n;
  float s = 0.f, dot = 0.f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = to_f32(xr[i]);
    s += v * v;
    dot += to_f32(gr[i]) * w[i] * v;
  }
  s = block_sum(s);
  dot = block_sum(dot);
  const float r = rsqrtf(s / n + eps);
  const float c = dot * r * r * r / n;
  for (int i = threadIdx.x; i < n; i += blockDim.x)
    dr[i] = from_f32<T>(r * w[i] * to_f32(gr[i]) - to_f32(xr[i]) * c);
}

#define RMSNORM(T, S)                                                                      \
  extern "C" __global__ void rmsnorm_fwd_##S(const T* x, const float* w, T* y, int n,      \
                                             float eps) {                                  \
    rmsnorm_fwd<T>(x, w, y, n, eps);                                                       \
  }                                                                                        \
  extern "C" __global__ void rmsnorm_bwd_##S(const T* x, const float* w, const T* g, T* dx, \
                                             int n, float eps) {                           \
    rmsnorm_bwd<T>(x, w, g, dx, n, eps);                                                   \
  }
BWB_FOR_DTYPES(RMSNORM)
