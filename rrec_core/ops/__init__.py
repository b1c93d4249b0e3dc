"""Fused perturbation / projection ops over embedding rows (FGSM, ε-ball projection, PGD).

    fgsm(g, eps, norm)                       l2: eps*g/||g|| per row; linf: eps*sign(g)
    project(d, eps, norm), project_          l2: d*min(1, eps/||d||); linf: clamp(d, ±eps)
    pgd_step(d, g, alpha, eps, norm), _      project(d + fgsm(g, alpha), eps)

norm is "l2" or "linf"; eps / alpha a float or a per-row tensor. C++/CUDA kernels from
rrec_core._C (registered as torch.ops.rrec.*), PyTorch reference otherwise (warns once).
This package imports only torch.
"""
from . import reference
from ._api import fgsm, pgd_step, pgd_step_, project, project_
from ._loader import KERNELS as _KERNELS
from ._loader import load_built as _load_built
from ._loader import load_jit

_load_built()


def backends() -> dict[str, bool]:
    """Which compiled backends serve the ops, e.g. {"cpu": True, "cuda": False}."""
    return dict(_KERNELS)


__all__ = ["backends", "fgsm", "load_jit", "pgd_step", "pgd_step_", "project", "project_",
           "reference"]
