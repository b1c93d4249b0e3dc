"""Build the fused perturbation ops (rrec_core._C) with torch's cpp_extension.

CUDA kernels are compiled only when the installed torch is a CUDA build and nvcc is
present; otherwise the C++ (CPU) kernels alone are built, so the package installs on
machines without a GPU. Install with `pip install --no-build-isolation -e .` so the
build sees the torch already in the environment.
"""
import glob
import os

from setuptools import setup


def _extensions():
    import torch
    from torch.utils import cpp_extension

    here = os.path.dirname(os.path.abspath(__file__))
    cpp = sorted(glob.glob(os.path.join("csrc", "**", "*.cpp"), recursive=True))
    cu = sorted(glob.glob(os.path.join("csrc", "**", "*.cu"), recursive=True))
    want_cuda = os.environ.get("RREC_FORCE_CPU", "0") != "1"
    use_cuda = (
        want_cuda
        and torch.version.cuda is not None
        and cpp_extension.CUDA_HOME is not None
        and bool(cu)
    )
    # No -std flag: cpp_extension adds the standard the installed torch's headers need
    # (C++20 from torch 2.13 on); an explicit -std=c++17 would override it.
    cxx = ["-O3"]
    if os.name != "nt":
        cxx.append("-fopenmp")
    extra = {"cxx": cxx}
    if use_cuda:
        extra["cxx"] = cxx + ["-DRREC_WITH_CUDA"]
        extra["nvcc"] = ["-O3", "-DRREC_WITH_CUDA", "-lineinfo"]
        ext = cpp_extension.CUDAExtension(
            "rrec_core._C", cpp + cu, extra_compile_args=extra,
            extra_link_args=["-fopenmp"],
            include_dirs=[os.path.join(here, "csrc")],
        )
    else:
        ext = cpp_extension.CppExtension(
            "rrec_core._C", cpp, extra_compile_args=extra,
            extra_link_args=["-fopenmp"] if os.name != "nt" else [],
            include_dirs=[os.path.join(here, "csrc")],
        )
    return [ext], {"build_ext": cpp_extension.BuildExtension}


ext_modules, cmdclass = _extensions()

setup(
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
