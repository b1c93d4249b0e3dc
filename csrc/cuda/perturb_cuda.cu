// CUDA kernels of the rrec ops. One group of `group` lanes (a power of two <= 32) per row,
// 16-byte vector loads when layout allows, fp32 accumulation, launched on the current stream.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdint>

#include "perturb.h"

namespace rrec {
namespace {

constexpr int kBlock = 256;
// The most vectors per lane rows_kernel holds in registers, so rows up to 32 * kCache * VEC
// elements (512 fp32, 1024 half) are read from memory once.
constexpr int kCache = 4;
constexpr unsigned kFullMask = 0xffffffffu;

template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

// VEC > 1 is only chosen when the column stride is 1 and every row start is aligned.
template <typename T, int VEC>
__device__ __forceinline__ void load(const View<const T>& v, int64_t row, int64_t vi,
                                     float (&x)[VEC]) {
  if constexpr (VEC == 1) {
    x[0] = static_cast<float>(v.ptr[row * v.rs + vi * v.cs]);
  } else {
    const Pack<T, VEC> p = *reinterpret_cast<const Pack<T, VEC>*>(v.ptr + row * v.rs + vi * VEC);
#pragma unroll
    for (int k = 0; k < VEC; ++k) x[k] = static_cast<float>(p.v[k]);
  }
}

template <typename T, int VEC>
__device__ __forceinline__ void store(const View<T>& v, int64_t row, int64_t vi,
                                      const float (&x)[VEC]) {
  if constexpr (VEC == 1) {
    v.ptr[row * v.rs + vi * v.cs] = static_cast<T>(x[0]);
  } else {
    Pack<T, VEC> p;
#pragma unroll
    for (int k = 0; k < VEC; ++k) p.v[k] = static_cast<T>(x[k]);
    *reinterpret_cast<Pack<T, VEC>*>(v.ptr + row * v.rs + vi * VEC) = p;
  }
}

template <int VEC>
__device__ __forceinline__ float squares(const float (&x)[VEC]) {
  float s = 0.f;
#pragma unroll
  for (int k = 0; k < VEC; ++k) s += x[k] * x[k];
  return s;
}

// Sum over the lanes of one row group. Every lane of the warp calls it (no lane has
// returned yet), so the full mask is valid; width = group keeps the groups apart.
__device__ __forceinline__ float group_sum(float x, int group) {
  for (int off = group >> 1; off > 0; off >>= 1) x += __shfl_xor_sync(kFullMask, x, off, group);
  return x;
}

// CACHE vectors per lane stay in registers between the norm pass and the write pass; the host
// picks the smallest CACHE that holds the row (see cache_for): a fixed CACHE of 4 cost bf16
// pgd_l2 88 registers per thread, 25% occupancy and half the bandwidth on 64-wide rows.
template <typename T, int VEC, OpKind OP, Norm NORM, int CACHE>
__global__ void __launch_bounds__(kBlock)
    rows_kernel(View<const T> a, View<const T> b, View<T> out, Radius eps, Radius alpha,
                int64_t rows, int64_t nvec, int group) {
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * kBlock + threadIdx.x) / group;
  const int lane = threadIdx.x & (group - 1);
  const bool live = row < rows;

  if constexpr (NORM == Norm::Linf) {  // element-wise: no reduction, no shuffles
    if (!live) return;
    const float e = radius_at(eps, row);
    const float al = OP == OpKind::Pgd ? radius_at(alpha, row) : 0.f;
    for (int64_t vi = lane; vi < nvec; vi += group) {
      float x[VEC], y[VEC] = {};
      load(a, row, vi, x);
      if constexpr (OP == OpKind::Pgd) load(b, row, vi, y);
#pragma unroll
      for (int k = 0; k < VEC; ++k) x[k] = linf_value<OP>(x[k], y[k], e, al);
      store(out, row, vi, x);
    }
    return;
  } else {
    const int64_t tail = lane + static_cast<int64_t>(CACHE) * group;  // first uncached vector
    float ca[CACHE][VEC];  // a (then t = d + step * g for pgd)
    float cb[CACHE][VEC];  // b (pgd only)
#pragma unroll
    for (int k = 0; k < CACHE; ++k) {
      const int64_t vi = lane + static_cast<int64_t>(k) * group;
      if (live && vi < nvec) {
        load(a, row, vi, ca[k]);
        if constexpr (OP == OpKind::Pgd) load(b, row, vi, cb[k]);
      }
    }

    float step = 0.f;  // pgd: alpha_r / ||g_r||
    if constexpr (OP == OpKind::Pgd) {
      float ss = 0.f;
#pragma unroll
      for (int k = 0; k < CACHE; ++k)
        if (live && lane + k * group < nvec) ss += squares(cb[k]);
      for (int64_t vi = tail; live && vi < nvec; vi += group) {
        float y[VEC];
        load(b, row, vi, y);
        ss += squares(y);
      }
      ss = group_sum(ss, group);
      step = live ? l2_fgsm_scale(ss, radius_at(alpha, row)) : 0.f;
#pragma unroll
      for (int k = 0; k < CACHE; ++k)
#pragma unroll
        for (int j = 0; j < VEC; ++j) ca[k][j] += step * cb[k][j];
    }

    // The value being scaled: a itself, or t = a + step * b for pgd (recomputed past the cache).
    const auto value = [&](int64_t vi, float (&x)[VEC]) {
      load(a, row, vi, x);
      if constexpr (OP == OpKind::Pgd) {
        float y[VEC];
        load(b, row, vi, y);
#pragma unroll
        for (int j = 0; j < VEC; ++j) x[j] += step * y[j];
      }
    };

    float ss = 0.f;
#pragma unroll
    for (int k = 0; k < CACHE; ++k)
      if (live && lane + k * group < nvec) ss += squares(ca[k]);
    for (int64_t vi = tail; live && vi < nvec; vi += group) {
      float x[VEC];
      value(vi, x);
      ss += squares(x);
    }
    ss = group_sum(ss, group);
    if (!live) return;
    const float e = radius_at(eps, row);
    const float s = OP == OpKind::Fgsm ? l2_fgsm_scale(ss, e) : l2_project_scale(ss, e);
    // All reads of this row are done (the shuffle above joined the group), so out may alias a.
#pragma unroll
    for (int k = 0; k < CACHE; ++k) {
      const int64_t vi = lane + static_cast<int64_t>(k) * group;
      if (vi < nvec) {
#pragma unroll
        for (int j = 0; j < VEC; ++j) ca[k][j] *= s;
        store(out, row, vi, ca[k]);
      }
    }
    for (int64_t vi = tail; vi < nvec; vi += group) {
      float x[VEC];
      value(vi, x);
#pragma unroll
      for (int j = 0; j < VEC; ++j) x[j] *= s;
      store(out, row, vi, x);
    }
  }
}

// Widest vector (elements) such that every operand's rows start 16/8/4-byte aligned.
int pick_vec(const at::Tensor& first, std::initializer_list<const at::Tensor*> operands) {
  const int64_t dim = first.size(1);
  const int elem = static_cast<int>(first.element_size());
  for (int vec = 16 / elem; vec > 1; vec /= 2) {
    bool ok = dim % vec == 0;
    for (const at::Tensor* t : operands) {
      ok = ok && t->stride(1) == 1 &&
           reinterpret_cast<std::uintptr_t>(t->data_ptr()) % (vec * elem) == 0 &&
           (t->size(0) <= 1 || t->stride(0) % vec == 0);
    }
    if (ok) return vec;
  }
  return 1;
}

// Lanes per row: enough to cover the row's vectors once, at most a warp.
int group_for(int64_t nvec) {
  int g = 1;
  while (g < 32 && g < nvec) g <<= 1;
  return g;
}

// Smallest power of two of cached vectors per lane that holds a whole row, at most kCache.
int cache_for(int64_t nvec, int group) {
  int c = 1;
  while (c < kCache && c * static_cast<int64_t>(group) < nvec) c <<= 1;
  return c;
}

unsigned blocks_for(int64_t rows, int group) {
  return static_cast<unsigned>((rows * group + kBlock - 1) / kBlock);
}

template <typename T, typename F>
void dispatch_vec(int vec, F&& f) {
  // Only widths up to 16 bytes are instantiated for T.
  switch (vec) {
    case 8:
      if constexpr (sizeof(T) * 8 <= 16) { f(std::integral_constant<int, 8>{}); return; }
      break;
    case 4: f(std::integral_constant<int, 4>{}); return;
    case 2: f(std::integral_constant<int, 2>{}); return;
    default: f(std::integral_constant<int, 1>{}); return;
  }
  TORCH_CHECK(false, "rrec: bad vector width ", vec);
}

void launch_rows_cuda(OpKind kind, Norm norm, const at::Tensor& a, const at::Tensor& b,
                      const at::Tensor& out, Radius eps, Radius alpha) {
  const c10::cuda::CUDAGuard guard(a.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int vec = pick_vec(a, {&a, &b, &out});
  const int64_t nvec = a.size(1) / vec;
  const int group = group_for(nvec);
  const unsigned blocks = blocks_for(a.size(0), group);
  dispatch_dtype(a.scalar_type(), [&](auto t) {
    using T = decltype(t);
    dispatch_vec<T>(vec, [&](auto v) {
      dispatch_op(kind, norm, [&](auto k, auto n) {
        constexpr int V = decltype(v)::value;
        const auto launch = [&](auto c) {
          rows_kernel<T, V, decltype(k)::value, decltype(n)::value, decltype(c)::value>
              <<<blocks, kBlock, 0, stream>>>(view_of<const T>(a), view_of<const T>(b),
                                              view_of<T>(out), eps, alpha, a.size(0), nvec, group);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        };
        // linf keeps nothing between passes; narrow vectors (odd widths, strided input) are
        // cheap in registers either way, so only 8/16-byte vectors get a cache per row width
        if constexpr (decltype(n)::value == Norm::Linf || V <= 2) {
          launch(std::integral_constant<int, decltype(n)::value == Norm::Linf ? 1 : kCache>{});
        } else {
          switch (cache_for(nvec, group)) {
            case 1: launch(std::integral_constant<int, 1>{}); break;
            case 2: launch(std::integral_constant<int, 2>{}); break;
            default: launch(std::integral_constant<int, kCache>{}); break;
          }
        }
      });
    });
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(rrec, CUDA, m) {
  m.impl("fgsm", &fgsm_op<launch_rows_cuda>);
  m.impl("project", &project_op<launch_rows_cuda>);
  m.impl("project_", &project_inplace_op<launch_rows_cuda>);
  m.impl("pgd_step", &pgd_step_op<launch_rows_cuda>);
  m.impl("pgd_step_", &pgd_step_inplace_op<launch_rows_cuda>);
}

}  // namespace rrec
