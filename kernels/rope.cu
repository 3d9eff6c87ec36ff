// Fused rotary embedding, HF "rotate half" layout, first `rot` of `d` features rotated.
//   y[i]        = x[i]·cos_i − x[i+h]·sin_i        (i < h = rot/2)
//   y[i+h]      = x[i+h]·cos_i + x[i]·sin_i
//   y[j ≥ rot]  = x[j]
// x (B, H, L, d) contiguous; cos/sin (B, 1, L, rot) f32 (only the first rot/2 columns are
// read). `inverse` negates sin: the transpose of the rotation, i.e. the backward.
// The CPU reference is src/kernels/rope.rs; tests/it/kernels.rs compares the two.
#include "common.cuh"

template <typename T>
__device__ void rope(const T* __restrict__ x, const float* __restrict__ cos_t,
                     const float* __restrict__ sin_t, T* __restrict__ y, long long n_el, int heads,
                     int len, int d, int rot, int inverse) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= n_el) return;
  const int j = (int)(idx % d);
  const long long row = idx / d;
  if (j >= rot) {
    y[idx] = x[idx];
    return;
  }
  const int l = (int)(row % len);
  const long long b = row / len / heads;
  const int h = rot / 2;
  const int i = j < h ? j : j - h;
  const long long t = (b * len + l) * rot + i;
  const float c = cos_t[t];
  const float s = inverse ? -sin_t[t] : sin_t[t];
  const T* xr = x + row * d;
  const float v = to_f32(xr[j]);
  const float out = j < h ? v * c - to_f32(xr[j + h]) * s : v * c + to_f32(xr[j - h]) * s;
  y[idx] = from_f32<T>(out);
}

#define ROPE(T, S)                                                                           \
  extern "C" __global__ void rope_##S(const T* x, const float* cos_t, const float* sin_t, T* y, \
                                      long long n_el, int heads, int len, int d, int rot,      \
                                      int inverse) {                                         \
    rope<T>(x, cos_t, sin_t, y, n_el, heads, len, d, rot, inverse);                          \
  }
BWB_FOR_DTYPES(ROPE)
