// Autograd of rrec::perturb_rows, in C++: the output is table[idx] plus a perturbation that APR
// treats as a constant, so the table's gradient is the lookup's (scattered back with index_add)
// and grad_rows / the radii get none. Registered from Python first, its per-call overhead
// (~300 us of CPU per backward on an H100 host, profiler, batch 4096) made the APR training
// step launch-bound; here it is one C++ node like nn.Embedding's.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <optional>

namespace rrec {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor perturb_rows_call(const at::Tensor& table, const at::Tensor& idx, const at::Tensor& grad,
                             double eps, const std::optional<at::Tensor>& eps_rows,
                             c10::string_view norm) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("rrec::perturb_rows", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&,
                                               const at::Tensor&, double,
                                               const std::optional<at::Tensor>&, c10::string_view)>();
  return op.call(table, idx, grad, eps, eps_rows, norm);
}

class PerturbRows : public torch::autograd::Function<PerturbRows> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& table, const at::Tensor& idx,
                            const at::Tensor& grad, double eps,
                            const std::optional<at::Tensor>& eps_rows, c10::string_view norm) {
    ctx->save_for_backward({idx});
    ctx->saved_data["rows"] = table.sym_size(0);
    at::AutoDispatchBelowADInplaceOrView below;
    return perturb_rows_call(table, idx, grad, eps, eps_rows, norm);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor idx = ctx->get_saved_variables()[0];
    const at::Tensor& g = grads[0];
    at::Tensor grad_table =
        at::zeros_symint({ctx->saved_data["rows"].toSymInt(), g.sym_size(1)}, g.options())
            .index_add_(0, idx, g);
    return {grad_table, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor perturb_rows_autograd(const at::Tensor& table, const at::Tensor& idx,
                                 const at::Tensor& grad, double eps,
                                 const std::optional<at::Tensor>& eps_rows, c10::string_view norm) {
  return PerturbRows::apply(table, idx, grad, eps, eps_rows, norm);
}

}  // namespace

TORCH_LIBRARY_IMPL(rrec, Autograd, m) { m.impl("perturb_rows", &perturb_rows_autograd); }

}  // namespace rrec
