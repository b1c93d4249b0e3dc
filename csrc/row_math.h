// Per-row scale factors and element maps shared by the CPU and CUDA kernels, so both
// backends compute bit-for-bit the same formula (only summation order differs).
#pragma once

#include <cmath>
#include <type_traits>

#if defined(__CUDACC__)
#define RREC_HD __host__ __device__ __forceinline__
#else
#define RREC_HD inline
#endif

namespace rrec {

enum class Norm { L2, Linf };
enum class OpKind { Fgsm, Project, Pgd };

// NaN and +inf both fail this test; written as a comparison so the same code compiles
// on host and device without std::isfinite / ::isfinite overload differences.
RREC_HD bool finite_sumsq(float sumsq) { return sumsq <= 3.402823466e38f; }

// eps * g / ||g||: a zero row gets scale 0 (stays zero, never 0/0); a row whose squared
// norm is not finite (NaN/Inf inside, or fp32 overflow) gets NaN, poisoning that row only.
RREC_HD float l2_fgsm_scale(float sumsq, float eps) {
  if (!finite_sumsq(sumsq)) return NAN;
  return sumsq > 0.f ? eps / sqrtf(sumsq) : 0.f;
}

// min(1, eps / ||d||) written as a branch so a zero row with eps = 0 gives 1, not 0/0.
RREC_HD float l2_project_scale(float sumsq, float eps) {
  if (!finite_sumsq(sumsq)) return NAN;
  const float n = sqrtf(sumsq);
  return n > eps ? eps / n : 1.f;
}

// sign(0) = 0 and sign(NaN) = NaN (torch.sign on CPU gives 0 for NaN; the ops propagate
// it). Written with selects, not branches: random signs would mispredict every other
// element, and selects let the CPU loops vectorize.
RREC_HD float sign_of(float x) {
  const float s = static_cast<float>(x > 0.f) - static_cast<float>(x < 0.f);
  return x == x ? s : x;
}

// torch.clamp semantics: NaN passes through (both comparisons are false for it). Written
// with comparisons, not fminf/fmaxf: on the host those are libm calls (their NaN rules do
// not match minss/maxss), which kept the CPU linf loops scalar and 3x slower than eager.
RREC_HD float clamp_abs(float x, float e) {
  return x > e ? e : (x < -e ? -e : x);
}

// A [rows, dim] operand as (pointer, row stride, column stride): non-contiguous inputs are
// read in place instead of copied.
template <typename T>
struct View {
  T* ptr;
  long long rs, cs;
};

// Per-row radius eps_r = value * rows[r * stride]; rows == nullptr means the scalar alone.
// Multiplying (rather than choosing) lets norm-relative attacks pass eps and ||e_r|| as is.
struct Radius {
  float value;
  const float* rows;
  long long stride;
};

RREC_HD float radius_at(const Radius& r, long long row) {
  return r.rows ? r.value * r.rows[row * r.stride] : r.value;
}

// The element map of the linf variants (no row reduction needed).
template <OpKind OP>
RREC_HD float linf_value(float a, float b, float eps, float alpha) {
  if (OP == OpKind::Fgsm) return eps * sign_of(a);
  if (OP == OpKind::Project) return clamp_abs(a, eps);
  return clamp_abs(a + alpha * sign_of(b), eps);
}

// Calls f(integral_constant<OpKind>, integral_constant<Norm>) so kernels are specialised
// at compile time per op and norm (no per-element branching on them).
template <typename F>
void dispatch_op(OpKind kind, Norm norm, F&& f) {
  auto with_norm = [&](auto k) {
    if (norm == Norm::L2) f(k, std::integral_constant<Norm, Norm::L2>{});
    else f(k, std::integral_constant<Norm, Norm::Linf>{});
  };
  switch (kind) {
    case OpKind::Fgsm: with_norm(std::integral_constant<OpKind, OpKind::Fgsm>{}); break;
    case OpKind::Project: with_norm(std::integral_constant<OpKind, OpKind::Project>{}); break;
    case OpKind::Pgd: with_norm(std::integral_constant<OpKind, OpKind::Pgd>{}); break;
  }
}

}  // namespace rrec
