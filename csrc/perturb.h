// Host-side argument handling shared by the CPU and CUDA implementations of the rrec ops.
// Schemas live in ops.cpp; each backend registers its kernels with TORCH_LIBRARY_IMPL.
#pragma once

#include <ATen/ATen.h>
#include <ATen/MemoryOverlap.h>

#include <optional>

#include "row_math.h"

namespace rrec {

inline Norm parse_norm(c10::string_view norm) {
  if (norm == "l2") return Norm::L2;
  if (norm == "linf") return Norm::Linf;
  TORCH_CHECK(false, "rrec: norm must be \"l2\" or \"linf\", got \"",
              std::string(norm.data(), norm.size()), "\"");
}

// Calls f(T{}) for the element type T of st (float, at::Half or at::BFloat16).
template <typename F>
void dispatch_dtype(at::ScalarType st, F&& f) {
  switch (st) {
    case at::kFloat: f(float{}); break;
    case at::kHalf: f(at::Half{}); break;
    case at::kBFloat16: f(at::BFloat16{}); break;
    default: TORCH_CHECK(false, "rrec: unsupported dtype ", st);
  }
}

inline void check_matrix(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 2, "rrec: ", name, " must be 2-D [rows, dim], got ", t.dim(), "-D");
  const auto st = t.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kHalf || st == at::kBFloat16,
              "rrec: ", name, " must be float32, float16 or bfloat16, got ", st);
}

inline void check_same(const at::Tensor& a, const at::Tensor& b, const char* an, const char* bn) {
  TORCH_CHECK(a.sizes() == b.sizes(), "rrec: ", an, " and ", bn, " shapes differ: ", a.sizes(),
              " vs ", b.sizes());
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "rrec: ", an, " and ", bn, " dtypes differ");
  TORCH_CHECK(a.device() == b.device(), "rrec: ", an, " and ", bn, " are on different devices");
}

inline void check_scalar(double v, const char* name) {
  TORCH_CHECK(v >= 0.0, "rrec: ", name, " must be >= 0, got ", v);
}

// Per-row radius, [rows] with any stride (a stride-0 expand of one value is fine). Returned
// as float32 on the input's device; converted only when it is not float32 already.
inline std::optional<at::Tensor> row_scale(const std::optional<at::Tensor>& s, int64_t rows,
                                           const at::Tensor& like, const char* name) {
  if (!s.has_value()) return std::nullopt;
  const at::Tensor& t = *s;
  TORCH_CHECK(t.dim() == 1 && t.size(0) == rows, "rrec: ", name, " must have shape [", rows,
              "], got ", t.sizes());
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), "rrec: ", name, " must be floating point");
  TORCH_CHECK(t.device() == like.device(), "rrec: ", name, " is on ", t.device(),
              " but the rows are on ", like.device());
  return t.scalar_type() == at::kFloat ? t : t.to(at::kFloat);
}

template <typename T>
View<T> view_of(const at::Tensor& t) {
  return {reinterpret_cast<T*>(t.data_ptr()), t.stride(0), t.stride(1)};
}

inline Radius radius_of(double value, const std::optional<at::Tensor>& rows) {
  if (!rows.has_value()) return {static_cast<float>(value), nullptr, 0};
  return {static_cast<float>(value), rows->data_ptr<float>(), rows->stride(0)};
}

// The in-place variants write through d's strides; overlapping views would race.
inline void check_writable(const at::Tensor& d, const at::Tensor* other) {
  TORCH_CHECK(at::has_internal_overlap(d) != at::MemOverlap::Yes,
              "rrec: in-place op on a tensor with overlapping memory (e.g. expanded)");
  if (other) at::assert_no_overlap(d, *other);
}

// ---- Device-agnostic op bodies. A backend supplies the two launchers and registers
// e.g. &fgsm_op<launch_rows_cpu>; checks and allocation are written once, here.

// Computes out[r] for OpKind kind over the rows of a (and b for pgd). out may alias a.
using RowLauncher = void (*)(OpKind kind, Norm norm, const at::Tensor& a, const at::Tensor& b,
                             const at::Tensor& out, Radius eps, Radius alpha);

constexpr Radius kNoRadius{0.f, nullptr, 0};

template <RowLauncher L>
at::Tensor fgsm_op(const at::Tensor& g, double eps, const std::optional<at::Tensor>& eps_rows,
                   c10::string_view norm) {
  check_matrix(g, "g");
  const Norm n = parse_norm(norm);
  check_scalar(eps, "eps");
  const auto er = row_scale(eps_rows, g.size(0), g, "eps_rows");
  at::Tensor out = at::empty({g.size(0), g.size(1)}, g.options());
  if (out.numel() > 0) L(OpKind::Fgsm, n, g, g, out, radius_of(eps, er), kNoRadius);
  return out;
}

template <RowLauncher L>
void project_inplace_op(const at::Tensor& d, double eps, const std::optional<at::Tensor>& eps_rows,
                        c10::string_view norm) {
  check_matrix(d, "d");
  const Norm n = parse_norm(norm);
  check_scalar(eps, "eps");
  check_writable(d, nullptr);
  const auto er = row_scale(eps_rows, d.size(0), d, "eps_rows");
  if (d.numel() > 0) L(OpKind::Project, n, d, d, d, radius_of(eps, er), kNoRadius);
}

template <RowLauncher L>
at::Tensor project_op(const at::Tensor& d, double eps, const std::optional<at::Tensor>& eps_rows,
                      c10::string_view norm) {
  check_matrix(d, "d");
  const Norm n = parse_norm(norm);
  check_scalar(eps, "eps");
  const auto er = row_scale(eps_rows, d.size(0), d, "eps_rows");
  at::Tensor out = at::empty({d.size(0), d.size(1)}, d.options());
  if (out.numel() > 0) L(OpKind::Project, n, d, d, out, radius_of(eps, er), kNoRadius);
  return out;
}

template <RowLauncher L>
void pgd_step_inplace_op(const at::Tensor& d, const at::Tensor& g, double alpha,
                         const std::optional<at::Tensor>& alpha_rows, double eps,
                         const std::optional<at::Tensor>& eps_rows, c10::string_view norm) {
  check_matrix(d, "d");
  check_same(d, g, "d", "g");
  const Norm n = parse_norm(norm);
  check_scalar(alpha, "alpha");
  check_scalar(eps, "eps");
  check_writable(d, &g);
  const auto ar = row_scale(alpha_rows, d.size(0), d, "alpha_rows");
  const auto er = row_scale(eps_rows, d.size(0), d, "eps_rows");
  if (d.numel() > 0) L(OpKind::Pgd, n, d, g, d, radius_of(eps, er), radius_of(alpha, ar));
}

template <RowLauncher L>
at::Tensor pgd_step_op(const at::Tensor& d, const at::Tensor& g, double alpha,
                       const std::optional<at::Tensor>& alpha_rows, double eps,
                       const std::optional<at::Tensor>& eps_rows, c10::string_view norm) {
  check_matrix(d, "d");
  check_same(d, g, "d", "g");
  const Norm n = parse_norm(norm);
  check_scalar(alpha, "alpha");
  check_scalar(eps, "eps");
  const auto ar = row_scale(alpha_rows, d.size(0), d, "alpha_rows");
  const auto er = row_scale(eps_rows, d.size(0), d, "eps_rows");
  at::Tensor out = at::empty({d.size(0), d.size(1)}, d.options());
  if (out.numel() > 0) L(OpKind::Pgd, n, d, g, out, radius_of(eps, er), radius_of(alpha, ar));
  return out;
}

}  // namespace rrec
