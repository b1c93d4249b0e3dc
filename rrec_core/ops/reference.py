"""Pure-PyTorch reference of the rrec ops.

The oracle for the tests and the fallback when the C++ extension is not built. Same
formulas as csrc/row_math.h, evaluated in float32 and rounded once to the input dtype.
The in-place functions write through the tensor's own strides (copy_ back into it).
"""
from __future__ import annotations

import math

import torch

Radius = float | torch.Tensor  # a scalar, or one value per row ([rows], [rows, 1] or 0-dim)

_NORMS = ("l2", "linf")


def _check_norm(norm: str) -> None:
    if norm not in _NORMS:
        raise ValueError(f'rrec: norm must be "l2" or "linf", got "{norm}"')


def _column(eps: Radius, rows: int, like: torch.Tensor) -> float | torch.Tensor:
    """eps as a float, or as a float32 [rows, 1] column that broadcasts over a row."""
    if not isinstance(eps, torch.Tensor):
        if eps < 0:
            raise ValueError(f"rrec: eps must be >= 0, got {eps}")
        return float(eps)
    t = eps.to(device=like.device, dtype=torch.float32)
    if t.numel() not in (1, rows):
        raise ValueError(f"rrec: per-row eps must hold {rows} values, got {tuple(t.shape)}")
    return (t.reshape(1).expand(rows) if t.numel() == 1 else t.reshape(rows)).unsqueeze(1)


def _sumsq(x: torch.Tensor) -> torch.Tensor:
    return x.square().sum(dim=1, keepdim=True)


def _nan_unless_finite(scale: torch.Tensor, sumsq: torch.Tensor) -> torch.Tensor:
    # A row with NaN/Inf (or an fp32-overflowing norm) becomes NaN as a whole.
    return torch.where(torch.isfinite(sumsq), scale, math.nan)


def _l2_fgsm_scale(sumsq: torch.Tensor, eps) -> torch.Tensor:
    scale = torch.where(sumsq > 0, eps / sumsq.sqrt(), 0.0)  # a zero row stays zero
    return _nan_unless_finite(scale, sumsq)


def _l2_project_scale(sumsq: torch.Tensor, eps) -> torch.Tensor:
    n = sumsq.sqrt()
    return _nan_unless_finite(torch.where(n > eps, eps / n, 1.0), sumsq)


def _sign(x: torch.Tensor) -> torch.Tensor:
    # torch.sign maps NaN to 0 on CPU; the ops propagate NaN (docs/ops.md), so keep it.
    return torch.where(torch.isnan(x), x, torch.sign(x))


def _clamp(x: torch.Tensor, eps) -> torch.Tensor:
    return torch.clamp(x, -eps, eps)  # NaN passes through, like the kernels


def _fgsm32(g: torch.Tensor, eps, norm: str) -> torch.Tensor:
    if norm == "l2":
        return g * _l2_fgsm_scale(_sumsq(g), eps)
    return eps * _sign(g)


def _project32(d: torch.Tensor, eps, norm: str) -> torch.Tensor:
    if norm == "l2":
        return d * _l2_project_scale(_sumsq(d), eps)
    return _clamp(d, eps)


def fgsm(g: torch.Tensor, eps: Radius, norm: str = "l2") -> torch.Tensor:
    """l2: eps * g[r] / ||g[r]||_2 (zero row -> zero); linf: eps * sign(g)."""
    _check_norm(norm)
    return _fgsm32(g.float(), _column(eps, g.shape[0], g), norm).to(g.dtype)


def project(d: torch.Tensor, eps: Radius, norm: str = "l2") -> torch.Tensor:
    """l2: d[r] * min(1, eps / ||d[r]||_2); linf: clamp(d, -eps, eps)."""
    _check_norm(norm)
    return _project32(d.float(), _column(eps, d.shape[0], d), norm).to(d.dtype)


def pgd_step(d: torch.Tensor, g: torch.Tensor, alpha: Radius, eps: Radius,
             norm: str = "l2") -> torch.Tensor:
    """project(d + fgsm(g, alpha), eps); the sum is not rounded to the input dtype."""
    _check_norm(norm)
    rows = d.shape[0]
    t = d.float() + _fgsm32(g.float(), _column(alpha, rows, d), norm)
    return _project32(t, _column(eps, rows, d), norm).to(d.dtype)


def project_(d: torch.Tensor, eps: Radius, norm: str = "l2") -> torch.Tensor:
    return d.copy_(project(d, eps, norm))


def pgd_step_(d: torch.Tensor, g: torch.Tensor, alpha: Radius, eps: Radius,
              norm: str = "l2") -> torch.Tensor:
    return d.copy_(pgd_step(d, g, alpha, eps, norm))

