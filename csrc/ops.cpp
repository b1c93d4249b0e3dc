// Schemas of the rrec ops (one namespace, TORCH_LIBRARY) and the Python module stub.
// Kernels are registered per backend in cpu/ and cuda/; fake (meta) kernels are registered
// from Python (rrec_core/ops/_meta.py). None of the ops has an autograd formula.
#include <Python.h>
#include <torch/library.h>

extern "C" {
// `import rrec_core._C` only has to load this shared library so that the static
// TORCH_LIBRARY registrations run; the module itself is empty (no pybind11 functions),
// as in pytorch/extension-cpp.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(rrec, m) {
  // eps_r = eps * eps_rows[r] when eps_rows is given (per-row, e.g. eps * ||e_r||), else eps.
  m.def("fgsm(Tensor g, float eps, Tensor? eps_rows, str norm) -> Tensor");
  m.def("project(Tensor d, float eps, Tensor? eps_rows, str norm) -> Tensor");
  m.def("project_(Tensor(a!) d, float eps, Tensor? eps_rows, str norm) -> ()");
  m.def(
      "pgd_step(Tensor d, Tensor g, float alpha, Tensor? alpha_rows, float eps, "
      "Tensor? eps_rows, str norm) -> Tensor");
  m.def(
      "pgd_step_(Tensor(a!) d, Tensor g, float alpha, Tensor? alpha_rows, float eps, "
      "Tensor? eps_rows, str norm) -> ()");
}
