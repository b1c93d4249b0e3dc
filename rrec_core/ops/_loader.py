"""Loads the compiled kernels (rrec_core._C, or a JIT build) and records which backends
they cover, once, at import: the op wrappers then branch on plain booleans, which
torch.compile can trace without graph breaks."""
from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import torch

from . import _meta

# device type -> the extension has kernels for it
KERNELS: dict[str, bool] = {"cpu": False, "cuda": False}
_warned: set[str] = set()


def _record() -> None:
    _meta.register()
    for dev, key in (("cpu", "CPU"), ("cuda", "CUDA")):
        KERNELS[dev] = torch._C._dispatch_has_kernel_for_dispatch_key("rrec::fgsm", key)


def load_built() -> bool:
    """Import rrec_core._C (built by setup.py); False if it is not built."""
    try:
        importlib.import_module("rrec_core._C")
    except ImportError as err:
        warnings.warn(
            f"rrec_core._C is not built ({err}); rrec_core.ops falls back to the slow PyTorch "
            "reference. Build it with `python setup.py build_ext --inplace` (or "
            "`pip install --no-build-isolation -e .`), or call rrec_core.ops.load_jit().",
            RuntimeWarning, stacklevel=3)
        return False
    _record()
    return True


def load_jit(verbose: bool = False) -> dict[str, bool]:
    """Development path: compile csrc/ with torch.utils.cpp_extension.load and load it.

    Needs a source checkout (csrc/ beside rrec_core/). A no-op when kernels are loaded.
    """
    if KERNELS["cpu"]:
        return dict(KERNELS)
    from torch.utils import cpp_extension

    csrc = Path(__file__).resolve().parents[2] / "csrc"
    sources = sorted(str(p) for p in csrc.rglob("*.cpp"))
    with_cuda = torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None
    if with_cuda:
        sources += sorted(str(p) for p in csrc.rglob("*.cu"))
    cpp_extension.load(
        name="rrec_C_jit", sources=sources, extra_include_paths=[str(csrc)],
        extra_cflags=["-O3", "-fopenmp"], extra_ldflags=["-fopenmp"],
        extra_cuda_cflags=["-O3", "-lineinfo"], with_cuda=with_cuda,
        is_python_module=False, verbose=verbose)
    _record()
    return dict(KERNELS)


def has_kernel(device_type: str) -> bool:
    """True if a compiled kernel serves this device; warns once per device type if not."""
    if KERNELS.get(device_type, False):
        return True
    if device_type not in _warned:
        _warned.add(device_type)
        warnings.warn(f"rrec ops: no compiled kernel for device '{device_type}'; using the "
                      "PyTorch reference.", RuntimeWarning, stacklevel=3)
    return False
