"""The rrec ops (rrec_core.ops): compiled kernels against the PyTorch reference.

Inputs are fresh random numbers each run (the seed is printed, so a failure can be
replayed with RREC_TEST_SEED). Kernel tests fail, not skip, when the extension is missing:
`make test` builds it. CUDA variants are skipped when no CUDA device is present.
"""
import os
import subprocess
import sys
import warnings

import pytest
import torch

import rrec_core.ops as ops
from rrec_core.ops import _loader, reference

CUDA = pytest.param("cuda", marks=[
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")])
DEVICES = ["cpu", CUDA]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# Kernel and reference compute the same fp32 value up to summation order; the one
# rounding to a 16-bit dtype can then land one ulp apart.
TOL = {torch.float32: dict(atol=1e-5, rtol=1e-5),
       torch.float16: dict(atol=1e-3, rtol=2e-3),
       torch.bfloat16: dict(atol=1e-2, rtol=1.6e-2)}
DIMS = [1, 3, 64, 130, 384]
ROWS = [0, 1, 1000]
NORMS = ["l2", "linf"]
# name -> (strides(rows, dim), storage offset): views into a larger poisoned buffer
LAYOUTS = {
    "contiguous": lambda n, d: ((d, 1), 0),
    "padded_misaligned": lambda n, d: ((d + 3, 1), 1),  # defeats vector loads
    "every_other_row": lambda n, d: ((2 * d, 1), 0),
    "transposed": lambda n, d: ((1, n), 0),
}


@pytest.fixture(autouse=True)
def seeded():
    seed = int(os.environ.get("RREC_TEST_SEED", torch.seed()))
    torch.manual_seed(seed)
    print(f"seed={seed}")  # shown by pytest when the test fails
    yield seed


@pytest.fixture
def poison_outputs():
    """Fresh op outputs come from at::empty; in deterministic mode it fills them with NaN,
    so an element a kernel forgets to write shows up as NaN."""
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    assert torch.utils.deterministic.fill_uninitialized_memory
    yield
    torch.use_deterministic_algorithms(was)


def need_kernels(device):
    assert ops.backends()[device], (
        f"rrec_core._C has no {device} kernels: build it (python setup.py build_ext --inplace)")


def strided(values, layout):
    """values placed as a view with the given layout inside a NaN-filled buffer.
    Returns (view, buffer, mask of the buffer elements outside the view)."""
    n, d = values.shape
    (rs, cs), off = LAYOUTS[layout](n, d)
    size = off + (n - 1) * rs + (d - 1) * cs + 1 if n and d else 1
    buf = torch.full((size,), float("nan"), dtype=values.dtype, device=values.device)
    view = buf.as_strided((n, d), (rs, cs), off)
    view.copy_(values)
    outside = torch.ones(size, dtype=torch.bool, device=values.device)
    outside.as_strided((n, d), (rs, cs), off).fill_(False)
    return view, buf, outside


def rand(n, d, dtype, device, scale=1.0):
    return (torch.randn(n, d, device=device) * scale).to(dtype)


def radii(n, device):
    """A scalar radius, and per-row radii in the three accepted shapes."""
    per_row = torch.rand(n, device=device) + 0.05
    return [0.3, per_row, per_row.unsqueeze(1), torch.tensor(0.2, device=device)]


def close(actual, expected, dtype, msg=""):
    torch.testing.assert_close(actual, expected, **TOL[dtype], equal_nan=True, msg=msg or None)


def test_extension_is_built():
    assert ops.backends()["cpu"] is True
    assert set(ops.backends()) == {"cpu", "cuda"}


# ---- dense ops against the reference --------------------------------------------------

def _call(name, x, g, eps, norm):
    """Runs op `name` with kernels and reference; returns (kernel out, reference out)."""
    alpha = 0.15
    if name == "fgsm":
        return ops.fgsm(x, eps, norm), reference.fgsm(x, eps, norm)
    if name == "project":
        return ops.project(x, eps, norm), reference.project(x, eps, norm)
    if name == "pgd_step":
        return ops.pgd_step(x, g, alpha, eps, norm), reference.pgd_step(x, g, alpha, eps, norm)
    raise ValueError(name)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("name", ["fgsm", "project", "pgd_step"])
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("n", ROWS)
def test_op_matches_reference(device, dtype, norm, name, d, n, poison_outputs):
    need_kernels(device)
    # each layout with another radius form: all of both are covered in four calls
    for layout, eps in zip(LAYOUTS, radii(n, device)):
        # ||x_r|| ~ 0.6: rows fall on both sides of the l2 ball (both branches of min(1, .))
        x, _, _ = strided(rand(n, d, dtype, device, 0.6 / max(d, 1) ** 0.5), layout)
        g, _, _ = strided(rand(n, d, dtype, device), layout)
        got, want = _call(name, x, g, eps, norm)
        assert got.shape == (n, d) and got.dtype == dtype and got.is_contiguous()
        close(got, want, dtype, f"{name} {norm} {layout} eps={eps!r:.40}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("name", ["project_", "pgd_step_"])
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("n", ROWS)
def test_inplace_matches_reference(device, dtype, norm, name, d, n):
    need_kernels(device)
    for layout, eps in zip(LAYOUTS, radii(n, device)):
        values = rand(n, d, dtype, device, 0.6 / max(d, 1) ** 0.5)
        g = rand(n, d, dtype, device)
        x, buf, outside = strided(values, layout)
        if name == "project_":
            want = reference.project(values, eps, norm)
            out = ops.project_(x, eps, norm)
        else:
            want = reference.pgd_step(values, g, 0.15, eps, norm)
            out = ops.pgd_step_(x, g, 0.15, eps, norm)
        assert out is x
        close(x, want, dtype, f"{name} {norm} {layout}")
        # nothing outside the view was written (the NaN poison is still there)
        assert torch.isnan(buf[outside].float()).all(), layout


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_reduced_precision_accumulates_in_fp32(device, dtype):
    need_kernels(device)
    # 4096 equal entries: a 16-bit running sum of squares would lose most of them
    g = torch.full((2, 4096), 3.0, dtype=dtype, device=device)
    out = ops.fgsm(g, 1.0, "l2").float()
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2, device=device), atol=1e-2, rtol=0)


# ---- zero rows, NaN / Inf policy -----------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_zero_rows_never_nan(device, dtype):
    need_kernels(device)
    x = rand(6, 64, dtype, device)
    x[::2] = 0
    for eps in (0.0, 0.5):
        f = ops.fgsm(x, eps, "l2")
        assert not f.isnan().any()
        assert (f[::2] == 0).all()
        p = ops.project(x, eps, "l2")
        assert not p.isnan().any() and (p[::2] == 0).all()
        # a zero gradient row leaves d to the projection alone
        close(ops.pgd_step(x, torch.zeros_like(x), 0.1, 10.0, "l2"), x, dtype)
        assert not ops.pgd_step(x, x, 0.1, eps, "l2").isnan().any()
    assert (ops.fgsm(torch.zeros(3, 5, dtype=dtype, device=device), 1.0, "linf") == 0).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nonfinite_policy(device, dtype, bad):
    """Propagation, not an error: in l2 a row holding NaN/Inf becomes all NaN (its norm is
    undefined) and other rows are untouched; in linf the maps are element-wise, so NaN
    stays NaN and ±Inf maps to ±eps like any large value."""
    need_kernels(device)
    x = rand(4, 64, dtype, device)
    x[1, 5] = bad
    for name in ("fgsm", "project", "pgd_step"):
        got, want = _call(name, x, x, 0.5, "l2")
        close(got, want, dtype)
        assert got[1].isnan().all(), name
        assert torch.isfinite(got[[0, 2, 3]]).all(), name
        got, want = _call(name, x, x, 0.5, "linf")
        close(got, want, dtype)
        assert torch.isfinite(got[[0, 2, 3]]).all() and torch.isfinite(got[1, :5]).all()
        if bad != bad:  # NaN
            assert got[1, 5].isnan(), name
        else:
            assert got[1, 5].abs().item() == pytest.approx(0.5, rel=1e-2), name


# ---- the sparse-row (APR) form -------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("batch", ROWS)
def test_perturb_rows_matches_reference(device, dtype, norm, d, batch, poison_outputs):
    need_kernels(device)
    table_rows = 50  # few rows: a batch of 1000 repeats most of them many times
    cases = zip(("contiguous", "transposed", "padded_misaligned"),
                (torch.int64, torch.int32, torch.int64), radii(batch, device))
    for layout, idx_dtype, eps in cases:
        table, _, _ = strided(rand(table_rows, d, dtype, device), layout)
        idx = torch.randint(0, table_rows, (batch,), device=device, dtype=idx_dtype)
        grad, _, _ = strided(rand(batch, d, dtype, device), layout)
        got = ops.perturb_rows(table, idx, grad, eps, norm)
        want = reference.perturb_rows(table, idx, grad, eps, norm)
        assert got.shape == (batch, d) and got.dtype == dtype
        close(got, want, dtype, f"{norm} {layout} {idx_dtype}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("norm", NORMS)
def test_perturb_rows_is_whole_table_perturbation(device, norm):
    """Repeated rows get the perturbation of their summed gradient (APR semantics)."""
    need_kernels(device)
    table = torch.randn(20, 16, device=device)
    idx = torch.tensor([3, 7, 3, 3, 0, 7, 19], device=device)
    grad = torch.randn(len(idx), 16, device=device)
    full_grad = torch.zeros_like(table).index_add_(0, idx, grad)
    want = (table + ops.fgsm(full_grad, 0.5, norm))[idx]
    got = ops.perturb_rows(table, idx, grad, 0.5, norm)
    close(got, want, torch.float32)
    assert torch.equal(got[0], got[2]) and torch.equal(got[0], got[3])


@pytest.mark.parametrize("device", DEVICES)
def test_perturb_rows_gradient_flows_to_table(device):
    need_kernels(device)
    table = torch.randn(10, 8, device=device, requires_grad=True)
    idx = torch.tensor([1, 4, 1, 9], device=device)
    grad = torch.randn(4, 8, device=device)
    weights = torch.randn(4, 8, device=device)
    (ops.perturb_rows(table, idx, grad, 0.5) * weights).sum().backward()
    want = torch.zeros(10, 8, device=device).index_add_(0, idx, weights)
    close(table.grad, want, torch.float32)


def test_perturb_rows_rejects_bad_indices():
    with pytest.raises(RuntimeError, match="out of range"):
        ops.perturb_rows(torch.randn(5, 4), torch.tensor([0, 5]), torch.randn(2, 4), 0.1)
    with pytest.raises(RuntimeError, match="out of range"):
        ops.perturb_rows(torch.randn(5, 4), torch.tensor([-1]), torch.randn(1, 4), 0.1)
    with pytest.raises(RuntimeError, match="grad_rows"):
        ops.perturb_rows(torch.randn(5, 4), torch.tensor([0, 1]), torch.randn(3, 4), 0.1)


# ---- argument errors -----------------------------------------------------------------

def test_clear_errors():
    x = torch.randn(4, 3)
    with pytest.raises(RuntimeError, match="norm must be"):
        ops.fgsm(x, 0.1, "l1")
    with pytest.raises(RuntimeError, match="float32, float16 or bfloat16"):
        ops.fgsm(x.double(), 0.1)
    with pytest.raises(RuntimeError, match="2-D"):
        ops.project(torch.randn(4), 0.1)
    with pytest.raises(RuntimeError, match=">= 0"):
        ops.project(x, -1.0)
    with pytest.raises(RuntimeError, match="shapes differ"):
        ops.pgd_step(x, torch.randn(4, 2), 0.1, 0.2)
    with pytest.raises(RuntimeError, match="eps_rows"):
        ops.fgsm(x, torch.ones(3))
    with pytest.raises(RuntimeError, match="overlapping"):
        ops.project_(torch.randn(1, 3).expand(4, 3), 0.1)


# ---- torch.library.opcheck and torch.compile ----------------------------------------

def _opcheck_samples(device):
    x = torch.randn(33, 40, device=device)
    g = torch.randn(33, 40, device=device)
    r = torch.rand(33, device=device)
    t = torch.randn(12, 40, device=device)
    yield torch.ops.rrec.fgsm.default, (g, 0.5, None, "l2")
    yield torch.ops.rrec.fgsm.default, (g.t().contiguous().t(), 0.5, r, "linf")
    yield torch.ops.rrec.project.default, (x.half(), 0.5, r, "l2")
    yield torch.ops.rrec.project.default, (x, 0.5, None, "linf")
    yield torch.ops.rrec.project_.default, (x.clone(), 0.5, None, "l2")
    yield torch.ops.rrec.pgd_step.default, (x, g, 0.1, r, 0.5, None, "l2")
    yield torch.ops.rrec.pgd_step.default, (x.bfloat16(), g.bfloat16(), 0.1, None, 0.5, r, "linf")
    yield torch.ops.rrec.pgd_step_.default, (x.clone(), g, 0.1, None, 0.5, r, "l2")
    idx = torch.randint(0, 12, (33,), device=device)
    yield torch.ops.rrec.perturb_rows.default, (t, idx, g, 0.5, None, "l2")
    yield torch.ops.rrec.perturb_rows.default, (t.clone().requires_grad_(), idx, g, 0.5, r, "linf")


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    need_kernels(device)
    for op, args in _opcheck_samples(device):
        torch.library.opcheck(op, args)


@pytest.mark.parametrize("device", DEVICES)
def test_compile_fullgraph(device):
    """One small graph through every op, with per-row radii and an in-place update."""
    need_kernels(device)
    torch._dynamo.reset()

    def attack(table, idx, grad, d, g):
        radius = 0.1 * table.norm(dim=1)  # norm-relative (per-row) eps
        adv = ops.perturb_rows(table, idx, grad, 0.05, "l2")
        d = ops.pgd_step(d, g, 0.02, radius[: d.shape[0]], "l2")
        d = ops.project_(d, 0.04, "linf")
        return adv, d + ops.fgsm(g, radius[: g.shape[0]], "linf")

    table = torch.randn(64, 32, device=device)
    idx = torch.randint(0, 64, (48,), device=device)
    grad = torch.randn(48, 32, device=device)
    d = torch.randn(16, 32, device=device) * 0.01
    g = torch.randn(16, 32, device=device)
    compiled = torch.compile(attack, fullgraph=True, backend="inductor")
    for got, want in zip(compiled(table, idx, grad, d.clone(), g),
                         attack(table, idx, grad, d.clone(), g)):
        close(got, want, torch.float32)


# ---- the reference fallback ----------------------------------------------------------

def test_fallback_warns_once_and_uses_reference(monkeypatch):
    monkeypatch.setitem(_loader.KERNELS, "cpu", False)
    monkeypatch.setattr(_loader, "_warned", set())
    g = torch.randn(7, 9)
    with pytest.warns(RuntimeWarning, match="reference"):
        out = ops.fgsm(g, 0.5)
    torch.testing.assert_close(out, reference.fgsm(g, 0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = torch.randn(7, 9)
        want = reference.pgd_step(d, g, 0.1, 0.2, "linf")
        assert ops.pgd_step_(d, g, 0.1, 0.2, "linf") is d
        torch.testing.assert_close(d, want)


def test_fallback_when_extension_missing():
    """Without rrec_core._C: a warning at import, no backends, reference results."""
    code = (
        "import sys, warnings; sys.modules['rrec_core._C'] = None\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always'); import rrec_core.ops as ops\n"
        "assert any('not built' in str(x.message) for x in w), [str(x.message) for x in w]\n"
        "assert ops.backends() == {'cpu': False, 'cuda': False}\n"
        "import torch\n"
        "g = torch.tensor([[3.0, 4.0], [0.0, 0.0]])\n"
        "with warnings.catch_warnings():\n"
        "    warnings.simplefilter('ignore'); out = ops.fgsm(g, 1.0)\n"
        "assert torch.allclose(out, torch.tensor([[0.6, 0.8], [0.0, 0.0]])), out\n"
        "t = torch.zeros(4, 2); idx = torch.tensor([1, 1])\n"
        "with warnings.catch_warnings():\n"
        "    warnings.simplefilter('ignore')\n"
        "    rows = ops.perturb_rows(t, idx, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), 1.0)\n"
        "assert torch.allclose(rows, torch.full((2, 2), 0.5 ** 0.5)), rows\n"
    )
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300, cwd=repo)


def test_reference_is_plain_formula():
    """Pins the reference itself to the contract on a hand-checked case."""
    g = torch.tensor([[3.0, 4.0], [0.0, 0.0], [-1.0, 0.0]])
    torch.testing.assert_close(reference.fgsm(g, 2.0), torch.tensor([[1.2, 1.6], [0, 0], [-2, 0]]))
    torch.testing.assert_close(reference.fgsm(g, 2.0, "linf"),
                               torch.tensor([[2.0, 2.0], [0, 0], [-2, 0]]))
    torch.testing.assert_close(reference.project(g, 1.0), torch.tensor([[.6, .8], [0, 0], [-1, 0]]))
    torch.testing.assert_close(reference.project(g, 1.0, "linf"),
                               torch.tensor([[1.0, 1.0], [0, 0], [-1, 0]]))
    torch.testing.assert_close(reference.pgd_step(torch.zeros(1, 2), g[:1], 1.0, 0.5),
                               torch.tensor([[0.3, 0.4]]))
