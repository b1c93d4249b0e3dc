// CUDA kernels of the rrec ops. One group of `group` lanes (a power of two <= 32) per row,
// 16-byte vector loads when layout allows, fp32 accumulation, launched on the current stream.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdint>
#include <cub/device/device_radix_sort.cuh>

#include "perturb.h"

namespace rrec {
namespace {

constexpr int kBlock = 256;
// Vectors per lane held in registers by sparse_kernel (and the most rows_kernel caches), so
// rows up to 32 * kCache * VEC elements (512 fp32, 1024 half) are read from memory once.
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

// Sum of the gradient rows perm[lo..hi) (one segment of equal indices) at vector vi.
template <typename T, int VEC>
__device__ __forceinline__ void segment_sum(const View<const T>& grad, const int32_t* perm,
                                            int64_t lo, int64_t hi, int64_t vi, float (&sum)[VEC]) {
#pragma unroll
  for (int j = 0; j < VEC; ++j) sum[j] = 0.f;
  for (int64_t m = lo; m < hi; ++m) {
    float g[VEC];
    load(grad, perm[m], vi, g);
#pragma unroll
    for (int j = 0; j < VEC; ++j) sum[j] += g[j];
  }
}

// One row group per position of the stably sorted indices; the group at the head of a run
// of equal indices sums the run's gradient rows and writes every occurrence's output row.
template <typename T, int VEC, Norm NORM>
__global__ void __launch_bounds__(kBlock)
    sparse_kernel(View<const T> table, const int32_t* sorted, const int32_t* perm,
                  View<const T> grad, View<T> out, Radius eps, int64_t n, int64_t table_rows,
                  int64_t nvec, int group) {
  const int64_t pos = (static_cast<int64_t>(blockIdx.x) * kBlock + threadIdx.x) / group;
  const int lane = threadIdx.x & (group - 1);
  const bool head = pos < n && (pos == 0 || sorted[pos] != sorted[pos - 1]);
  const int64_t key = head ? sorted[pos] : 0;
  CUDA_KERNEL_ASSERT(!head || (key >= 0 && key < table_rows));
  int64_t end = pos;
  if (head)
    for (end = pos + 1; end < n && sorted[end] == key;) ++end;

  const int64_t tail = lane + static_cast<int64_t>(kCache) * group;
  float cs[kCache][VEC];
  float ss = 0.f;
#pragma unroll
  for (int k = 0; k < kCache; ++k) {
    const int64_t vi = lane + static_cast<int64_t>(k) * group;
    if (head && vi < nvec) {
      segment_sum(grad, perm, pos, end, vi, cs[k]);
      ss += squares(cs[k]);
    }
  }
  if constexpr (NORM == Norm::L2) {
    for (int64_t vi = tail; head && vi < nvec; vi += group) {
      float x[VEC];
      segment_sum(grad, perm, pos, end, vi, x);
      ss += squares(x);
    }
    ss = group_sum(ss, group);
  }
  if (!head) return;

  // Vector-major so the table row and the summed gradient are loaded once per vector.
  const auto write = [&](int64_t vi, const float (&sum)[VEC]) {
    float t[VEC];
    load(table, key, vi, t);
    for (int64_t m = pos; m < end; ++m) {
      const int64_t j = perm[m];
      const float e = radius_at(eps, j);  // each occurrence keeps its own radius
      const float s = NORM == Norm::L2 ? l2_fgsm_scale(ss, e) : 0.f;
      float o[VEC];
#pragma unroll
      for (int q = 0; q < VEC; ++q)
        o[q] = t[q] + (NORM == Norm::L2 ? s * sum[q] : e * sign_of(sum[q]));
      store(out, j, vi, o);
    }
  };
#pragma unroll
  for (int k = 0; k < kCache; ++k) {
    const int64_t vi = lane + static_cast<int64_t>(k) * group;
    if (vi < nvec) write(vi, cs[k]);
  }
  for (int64_t vi = tail; vi < nvec; vi += group) {
    float x[VEC];
    segment_sum(grad, perm, pos, end, vi, x);
    write(vi, x);
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

// keys = idx (checked against the table), values = positions: the input of the sort below.
__global__ void sort_input_kernel(const int64_t* idx, int32_t* keys, int32_t* pos, int64_t n,
                                  int64_t table_rows) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int64_t k = idx[i];
  CUDA_KERNEL_ASSERT(k >= 0 && k < table_rows);
  keys[i] = static_cast<int32_t>(k);
  pos[i] = static_cast<int32_t>(i);
}

void launch_sparse_cuda(Norm norm, const at::Tensor& table, const at::Tensor& idx,
                        const at::Tensor& grad, const at::Tensor& out, Radius eps) {
  const c10::cuda::CUDAGuard guard(table.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t n = idx.size(0);
  const int64_t table_rows = table.size(0);
  TORCH_CHECK(table_rows <= INT32_MAX && n <= INT32_MAX,
              "rrec: perturb_rows on CUDA takes tables and batches of at most 2^31 - 1 rows");
  // Group repeats with a radix sort that is stable (keeps the summation order) over 32-bit keys
  // and only the bits a row index can have (20 for a million rows): at::sort's stable sort of
  // int64 sorts all 64 bits, and made perturb_rows slower than eager at batch 4096.
  const auto i32 = idx.options().dtype(at::kInt);
  at::Tensor keys = at::empty({2, n}, i32), pos = at::empty({2, n}, i32);
  sort_input_kernel<<<static_cast<unsigned>((n + kBlock - 1) / kBlock), kBlock, 0, stream>>>(
      idx.data_ptr<int64_t>(), keys[0].data_ptr<int32_t>(), pos[0].data_ptr<int32_t>(), n,
      table_rows);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  int end_bit = 1;
  while (end_bit < 31 && (int64_t{1} << end_bit) < table_rows) ++end_bit;
  size_t temp_bytes = 0;
  C10_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, temp_bytes, keys[0].data_ptr<int32_t>(), keys[1].data_ptr<int32_t>(),
      pos[0].data_ptr<int32_t>(), pos[1].data_ptr<int32_t>(), static_cast<int>(n), 0, end_bit,
      stream));
  at::Tensor temp = at::empty({static_cast<int64_t>(temp_bytes)}, idx.options().dtype(at::kByte));
  C10_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      temp.data_ptr(), temp_bytes, keys[0].data_ptr<int32_t>(), keys[1].data_ptr<int32_t>(),
      pos[0].data_ptr<int32_t>(), pos[1].data_ptr<int32_t>(), static_cast<int>(n), 0, end_bit,
      stream));
  const int32_t* sorted = keys[1].data_ptr<int32_t>();
  const int32_t* perm = pos[1].data_ptr<int32_t>();
  const int vec = pick_vec(table, {&table, &grad, &out});
  const int64_t nvec = table.size(1) / vec;
  const int group = group_for(nvec);
  dispatch_dtype(table.scalar_type(), [&](auto t) {
    using T = decltype(t);
    dispatch_vec<T>(vec, [&](auto v) {
      const auto run = [&](auto nm) {
        sparse_kernel<T, decltype(v)::value, decltype(nm)::value>
            <<<blocks_for(n, group), kBlock, 0, stream>>>(
                view_of<const T>(table), sorted, perm, view_of<const T>(grad), view_of<T>(out),
                eps, n, table_rows, nvec, group);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      };
      if (norm == Norm::L2) run(std::integral_constant<Norm, Norm::L2>{});
      else run(std::integral_constant<Norm, Norm::Linf>{});
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
  m.impl("perturb_rows", &perturb_rows_op<launch_sparse_cuda>);
}

}  // namespace rrec
