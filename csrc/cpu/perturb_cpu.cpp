// CPU kernels of the rrec ops: one pass of row tasks under at::parallel_for, reading
// operands through their strides (no contiguous() copies) and accumulating in fp32.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "perturb.h"

namespace rrec {
namespace {

// ~32K elements per task keeps OpenMP dispatch cost small next to the memory traffic.
int64_t grain_rows(int64_t dim) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(dim, 1)); }

// A row read as fp32; UNIT fixes the column stride to 1 so the loops vectorize.
template <typename T, bool UNIT>
struct Row {
  const T* p;
  int64_t cs;
  float operator[](int64_t c) const { return static_cast<float>(p[UNIT ? c : c * cs]); }
};

// Eight independent partial sums: lets the compiler vectorize the reduction without
// -ffast-math re-association.
template <typename F>
float sum_squares(int64_t dim, const F& value) {
  float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  int64_t c = 0;
  for (; c + 8 <= dim; c += 8)
    for (int k = 0; k < 8; ++k) {
      const float v = value(c + k);
      acc[k] += v * v;
    }
  float s = 0.f;
  for (; c < dim; ++c) {
    const float v = value(c);
    s += v * v;
  }
  for (float x : acc) s += x;
  return s;
}

template <typename T, OpKind OP, Norm NORM, bool UNIT>
void rows_cpu(View<const T> a, View<const T> b, View<T> out, Radius eps, Radius alpha,
              int64_t rows, int64_t dim) {
  at::parallel_for(0, rows, grain_rows(dim), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const Row<T, UNIT> A{a.ptr + r * a.rs, a.cs};
      const Row<T, UNIT> B{b.ptr + r * b.rs, b.cs};
      T* o = out.ptr + r * out.rs;
      const int64_t ocs = UNIT ? 1 : out.cs;
      const float e = radius_at(eps, r);
      if constexpr (NORM == Norm::Linf) {
        const float al = OP == OpKind::Pgd ? radius_at(alpha, r) : 0.f;
        for (int64_t c = 0; c < dim; ++c)
          o[c * ocs] = static_cast<T>(linf_value<OP>(A[c], OP == OpKind::Pgd ? B[c] : 0.f, e, al));
      } else {
        float step = 0.f;  // pgd: alpha_r / ||g_r||, so that t = d + step * g
        if constexpr (OP == OpKind::Pgd)
          step = l2_fgsm_scale(sum_squares(dim, [&](int64_t c) { return B[c]; }),
                               radius_at(alpha, r));
        const auto value = [&](int64_t c) { return OP == OpKind::Pgd ? A[c] + step * B[c] : A[c]; };
        const float ss = sum_squares(dim, value);
        const float s = OP == OpKind::Fgsm ? l2_fgsm_scale(ss, e) : l2_project_scale(ss, e);
        // Every read of row r happened above, so writing o (which may alias A) is safe.
        for (int64_t c = 0; c < dim; ++c) o[c * ocs] = static_cast<T>(value(c) * s);
      }
    }
  });
}

void launch_rows_cpu(OpKind kind, Norm norm, const at::Tensor& a, const at::Tensor& b,
                     const at::Tensor& out, Radius eps, Radius alpha) {
  const bool unit = a.size(1) == 1 || (a.stride(1) == 1 && b.stride(1) == 1 && out.stride(1) == 1);
  dispatch_dtype(a.scalar_type(), [&](auto t) {
    using T = decltype(t);
    dispatch_op(kind, norm, [&](auto k, auto n) {
      constexpr OpKind OP = decltype(k)::value;
      constexpr Norm NORM = decltype(n)::value;
      const auto run = unit ? &rows_cpu<T, OP, NORM, true> : &rows_cpu<T, OP, NORM, false>;
      run(view_of<const T>(a), view_of<const T>(b), view_of<T>(out), eps, alpha, a.size(0),
          a.size(1));
    });
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(rrec, CPU, m) {
  m.impl("fgsm", &fgsm_op<launch_rows_cpu>);
  m.impl("project", &project_op<launch_rows_cpu>);
  m.impl("project_", &project_inplace_op<launch_rows_cpu>);
  m.impl("pgd_step", &pgd_step_op<launch_rows_cpu>);
  m.impl("pgd_step_", &pgd_step_inplace_op<launch_rows_cpu>);
}

}  // namespace rrec
