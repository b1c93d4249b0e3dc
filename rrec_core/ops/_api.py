"""The public rrec ops: the compiled kernel when one serves the input's device, else the
PyTorch reference. Row-wise over a 2-D tensor, fp32 accumulation; see docs/ops.md."""
from __future__ import annotations

import torch

from . import reference
from ._loader import has_kernel
from .reference import Radius


def _radius(eps: Radius, rows, like: torch.Tensor) -> tuple[float, torch.Tensor | None]:
    """(scalar, per-row tensor) as the schemas take them: eps_r = scalar * rows[r]."""
    if not isinstance(eps, torch.Tensor):
        return float(eps), None
    t = eps.to(device=like.device)
    if t.numel() == 1:  # one value: expanded (stride 0), not copied
        return 1.0, t.reshape(1).expand(rows)
    # (a constant message: torch.compile cannot trace a closure over tensors)
    torch._check(t.numel() == rows, lambda: "rrec: per-row eps_rows / alpha_rows must hold "
                 "one value per row ([rows] or [rows, 1])")
    return 1.0, t.reshape(rows)


def fgsm(g: torch.Tensor, eps: Radius, norm: str = "l2") -> torch.Tensor:
    """l2: eps * g[r] / ||g[r]||_2 (a zero row stays zero); linf: eps * sign(g)."""
    if not has_kernel(g.device.type):
        return reference.fgsm(g, eps, norm)
    e, er = _radius(eps, g.shape[0], g)
    return torch.ops.rrec.fgsm.default(g, e, er, norm)


def project(d: torch.Tensor, eps: Radius, norm: str = "l2") -> torch.Tensor:
    """l2: d[r] * min(1, eps / ||d[r]||_2); linf: clamp(d, -eps, eps)."""
    if not has_kernel(d.device.type):
        return reference.project(d, eps, norm)
    e, er = _radius(eps, d.shape[0], d)
    return torch.ops.rrec.project.default(d, e, er, norm)


def project_(d: torch.Tensor, eps: Radius, norm: str = "l2") -> torch.Tensor:
    """In-place project (through d's strides); returns d."""
    if not has_kernel(d.device.type):
        return reference.project_(d, eps, norm)
    e, er = _radius(eps, d.shape[0], d)
    torch.ops.rrec.project_.default(d, e, er, norm)
    return d


def pgd_step(d: torch.Tensor, g: torch.Tensor, alpha: Radius, eps: Radius,
             norm: str = "l2") -> torch.Tensor:
    """project(d + fgsm(g, alpha, norm), eps, norm), fused, without rounding in between."""
    if not has_kernel(d.device.type):
        return reference.pgd_step(d, g, alpha, eps, norm)
    a, ar = _radius(alpha, d.shape[0], d)
    e, er = _radius(eps, d.shape[0], d)
    return torch.ops.rrec.pgd_step.default(d, g, a, ar, e, er, norm)


def pgd_step_(d: torch.Tensor, g: torch.Tensor, alpha: Radius, eps: Radius,
              norm: str = "l2") -> torch.Tensor:
    """In-place pgd_step: updates d (one read of d and g, one write of d); returns d."""
    if not has_kernel(d.device.type):
        return reference.pgd_step_(d, g, alpha, eps, norm)
    a, ar = _radius(alpha, d.shape[0], d)
    e, er = _radius(eps, d.shape[0], d)
    torch.ops.rrec.pgd_step_.default(d, g, a, ar, e, er, norm)
    return d

