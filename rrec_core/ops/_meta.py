"""Fake (meta) kernels of the rrec ops, registered from Python.

Fake kernels give torch.compile / FakeTensor the output shapes without running C++; they
mirror the checks of csrc/perturb.h that depend on shapes only. No op has an autograd formula
(attacks work on detached tensors).
"""
from __future__ import annotations

import torch

_registered = False


def _check_matrix(t: torch.Tensor, name: str) -> None:
    torch._check(t.dim() == 2, lambda: f"rrec: {name} must be 2-D [rows, dim], got {t.dim()}-D")
    torch._check(t.dtype in (torch.float32, torch.float16, torch.bfloat16),
                 lambda: f"rrec: {name} must be float32, float16 or bfloat16, got {t.dtype}")


def _check_rows(r: torch.Tensor | None, rows, name: str) -> None:
    if r is not None:
        torch._check(r.dim() == 1 and r.shape[0] == rows,
                     lambda: f"rrec: {name} must have shape [{rows}], got {tuple(r.shape)}")


def _fgsm(g, eps, eps_rows, norm):
    _check_matrix(g, "g")
    _check_rows(eps_rows, g.shape[0], "eps_rows")
    return g.new_empty(g.shape)


def _project(d, eps, eps_rows, norm):
    _check_matrix(d, "d")
    _check_rows(eps_rows, d.shape[0], "eps_rows")
    return d.new_empty(d.shape)


def _project_(d, eps, eps_rows, norm):
    _check_matrix(d, "d")
    _check_rows(eps_rows, d.shape[0], "eps_rows")


def _pgd_checks(d, g, alpha_rows, eps_rows):
    _check_matrix(d, "d")
    torch._check(d.shape == g.shape and d.dtype == g.dtype, lambda: "rrec: d and g differ")
    _check_rows(alpha_rows, d.shape[0], "alpha_rows")
    _check_rows(eps_rows, d.shape[0], "eps_rows")


def _pgd_step(d, g, alpha, alpha_rows, eps, eps_rows, norm):
    _pgd_checks(d, g, alpha_rows, eps_rows)
    return d.new_empty(d.shape)


def _pgd_step_(d, g, alpha, alpha_rows, eps, eps_rows, norm):
    _pgd_checks(d, g, alpha_rows, eps_rows)


def register() -> None:
    """Idempotent; call once the library defining rrec::* is loaded."""
    global _registered
    if _registered:
        return
    for name, fn in [("fgsm", _fgsm), ("project", _project), ("project_", _project_),
                     ("pgd_step", _pgd_step), ("pgd_step_", _pgd_step_)]:
        torch.library.register_fake(f"rrec::{name}", fn)
    _registered = True
