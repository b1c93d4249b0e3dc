"""The rrec ops (rrec_core.ops): compiled kernels against the PyTorch reference.

Inputs are fresh random numbers each run (the seed is printed, so a failure can be
replayed with RREC_TEST_SEED). Kernel tests fail, not skip, when the extension is missing:
`make test` builds it. CUDA variants are skipped when no CUDA device is present.
"""
import math
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
EPS32 = torch.finfo(torch.float32).eps
# Tolerances, stated in ulps of the output dtype. The ops compute in float32 and round once to
# the output dtype (docs/ops.md). Against `oracle` (the contract evaluated in float64 on the same,
# already rounded inputs) an element may be off by
#   ULPS * ulp(exact)           the one rounding to the dtype is 0.5 ulp; 1 ulp leaves room for
#                               the float32 error to tip a near-tie the other way
# + FP32_TERMS * eps32 * size   the float32 arithmetic, relative to the size of the terms the
#                               element is made of: |result| for fgsm / project; for pgd_step
#                               |d| + |fgsm(g)|, which may cancel in the sum (times the row's
#                               projection factor).
# Measured on CPU (seeds 0-5, every layout, d <= 384, kernel and reference alike): 16-bit outputs
# within 0.50 ulp of the exact value, float32 ones within 4.1 ulp = 2.1 eps32 * |result| (the norm's
# summation order); the largest error / allowed was 0.50 (16-bit) and 0.32 (float32). For bf16 the
# bound is a relative error of 2^-8 .. 2^-7 per element, where the former atol=1e-2, rtol=1.6e-2
# let a 50% error through on outputs of size ~0.02 (d = 384).
ULPS = 1.0
FP32_TERMS = 8.0
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


def ulp(x, dtype):
    """float64 tensor of dtype's spacing at |x|: eps * 2^floor(log2 |x|), and the subnormal
    spacing below the normal range (so exact zeros get the smallest step there is)."""
    fi = torch.finfo(dtype)
    _, e = torch.frexp(x.abs().clamp_min(fi.smallest_normal))
    return torch.ldexp(torch.full_like(x, fi.eps), e - 1)


def assert_near(got, exact, slack, dtype, msg=""):
    """got (of dtype) within ULPS ulp(exact) + slack of the float64 `exact`, element-wise;
    NaN exactly where exact is NaN."""
    assert got.dtype == dtype and got.shape == exact.shape, (got.dtype, got.shape, exact.shape)
    g, exact = got.detach().cpu().double(), exact.detach().cpu().double()
    slack = torch.as_tensor(slack, dtype=torch.float64).cpu()
    nan = exact.isnan()
    assert torch.equal(g.isnan(), nan), f"{msg}: NaN pattern differs from the contract"
    err = torch.where(nan, 0.0, (g - exact).abs())
    tol = ULPS * ulp(exact, dtype) + slack
    if (err > tol).any():
        i = int(torch.argmax(torch.where(nan, -math.inf, err / tol)))
        pos = tuple(int(v) for v in torch.unravel_index(torch.tensor(i), exact.shape))
        raise AssertionError(
            f"{msg}: {int((err > tol).sum())} of {err.numel()} elements out of tolerance; worst "
            f"at {pos}: got {g[pos].item():.9g}, exact {exact[pos].item():.9g}, off by "
            f"{(err / ulp(exact, dtype))[pos].item():.3g} ulp {dtype} (allowed {(tol / ulp(exact, dtype))[pos].item():.3g})")


def close(actual, expected, dtype, msg=""):
    """Two results of the ops' float32 arithmetic (each within the bound above of the exact
    value): twice the bound apart at most, the float32 term taken relative to the row scale."""
    e = expected.detach().double()
    rowscale = e.abs().nan_to_num(0.0).amax(dim=1, keepdim=True) if e.numel() else e
    exact = e.cpu()
    assert_near(actual, exact, 2 * FP32_TERMS * EPS32 * rowscale.cpu() + ULPS * ulp(exact, dtype),
                dtype, msg)


def _f32(v):
    """A radius as the ops see it: float32 (a float, or a per-row column of floats), in float64."""
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().float().double()
    return torch.tensor(v, dtype=torch.float32).double()


def _column64(eps, rows):
    e = _f32(eps)
    return (e.reshape(1).expand(rows) if e.numel() == 1 else e.reshape(rows)).unsqueeze(1)


def _fgsm64(G, e, norm):
    if norm == "linf":
        return e * torch.sign(G)
    n = G.norm(dim=1, keepdim=True)
    return torch.where(n > 0, G * (e / torch.where(n > 0, n, 1.0)), 0.0)


def _project64(T, e, norm):
    """(projected, per-row factor) for l2; (clamped, 1) for linf."""
    if norm == "linf":
        return torch.clamp(T, -e, e), 1.0
    n = T.norm(dim=1, keepdim=True)
    s = torch.where(n > e, e / torch.where(n > 0, n, 1.0), 1.0)
    return T * s, s


def oracle(name, x, g, eps, norm, alpha=0.15):
    """(exact, slack): op `name` from the contract alone in float64, and the float32 allowance
    FP32_TERMS * eps32 * size of the terms (see ULPS). Finite inputs only."""
    X, G = x.detach().cpu().double(), g.detach().cpu().double()
    e = _column64(eps, X.shape[0])
    if name in ("fgsm",):
        exact = _fgsm64(X, e, norm)
        size = exact.abs()
    elif name in ("project", "project_"):
        exact, _ = _project64(X, e, norm)
        size = exact.abs()
    elif name in ("pgd_step", "pgd_step_"):
        F = _fgsm64(G, _column64(alpha, X.shape[0]), norm)
        exact, s = _project64(X + F, e, norm)
        size = (X.abs() + F.abs()) * s
    else:
        raise ValueError(name)
    return exact, FP32_TERMS * EPS32 * size


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
        got, ref = _call(name, x, g, eps, norm)
        assert got.is_contiguous()  # the reference keeps its input's layout
        exact, slack = oracle(name, x, g, eps, norm)
        for who, out in (("kernel", got), ("reference", ref)):
            assert out.shape == (n, d) and out.dtype == dtype, who
            assert out.device.type == device and not out.isnan().any(), who
            assert_near(out, exact, slack, dtype, f"{who} {name} {norm} {layout} eps={eps!r:.40}")


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
        exact, slack = oracle(name, values, g, eps, norm)
        r = values.clone()
        if name == "project_":
            out, ref = ops.project_(x, eps, norm), reference.project_(r, eps, norm)
        else:
            out, ref = ops.pgd_step_(x, g, 0.15, eps, norm), reference.pgd_step_(r, g, 0.15, eps, norm)
        assert out is x and ref is r
        assert_near(x, exact, slack, dtype, f"kernel {name} {norm} {layout}")
        assert_near(r, exact, slack, dtype, f"reference {name} {norm} {layout}")
        # nothing outside the view was written (the NaN poison is still there)
        assert torch.isnan(buf[outside].float()).all(), layout


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_reduced_precision_accumulates_in_fp32(device, dtype):
    need_kernels(device)
    # 4096 equal entries: a 16-bit running sum of squares would lose most of them
    # (an fp32 sum of them is exact: 36864, and the result exactly 1/64 in every dtype)
    g = torch.full((2, 4096), 3.0, dtype=dtype, device=device)
    for out in (ops.fgsm(g, 1.0, "l2"), reference.fgsm(g, 1.0, "l2")):
        assert_near(out, torch.full((2, 4096), 1 / 64, dtype=torch.float64), 0.0, dtype)
    x = torch.full((2, 4096), 1 / 32, dtype=dtype, device=device)  # ||x|| = 2 > eps = 1
    for out in (ops.project(x, 1.0, "l2"), ops.pgd_step(x, g, 1.0, 1.0, "l2")):
        assert_near(out, torch.full((2, 4096), 1 / 64, dtype=torch.float64), 0.0, dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("norm", NORMS)
def test_empty_inputs(device, dtype, norm, poison_outputs):
    """0 rows: every op returns an empty [0, dim] result of the input's dtype and device, with
    eps / alpha as a float, a per-row tensor of length 0 ([0] and [0, 1]) or a 0-dim tensor."""
    need_kernels(device)
    d = 7
    x = torch.empty(0, d, dtype=dtype, device=device)
    g = torch.empty(0, d, dtype=dtype, device=device)
    per_row = torch.rand(0, device=device)
    for eps in (0.3, per_row, per_row.unsqueeze(1), torch.tensor(0.2, device=device)):
        for impl in (ops, reference):
            outs = {"fgsm": impl.fgsm(g, eps, norm), "project": impl.project(x, eps, norm),
                    "pgd_step": impl.pgd_step(x, g, eps, eps, norm)}
            t = x.clone()
            assert impl.project_(t, eps, norm) is t
            assert impl.pgd_step_(t, g, eps, eps, norm) is t
            outs["in place"] = t
            for what, out in outs.items():
                where = f"{impl.__name__} {what} eps={eps!r:.30}"
                assert out.shape == (0, d), where
                assert out.dtype == dtype and out.device.type == device, where
                assert not out.isnan().any(), where
    # per-row eps must still have 0 rows
    with pytest.raises(RuntimeError, match="eps_rows"):
        ops.fgsm(g, torch.rand(2, device=device), norm)


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
        # a zero gradient row leaves d to the projection alone (a radius no row reaches: with
        # 10, as before, ||x_r|| ~ 8 +- 0.7 crossed it for about one seed in 150)
        close(ops.pgd_step(x, torch.zeros_like(x), 0.1, 1e3, "l2"), x, dtype)
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
    yield torch.ops.rrec.fgsm.default, (g, 0.5, None, "l2")
    yield torch.ops.rrec.fgsm.default, (g.t().contiguous().t(), 0.5, r, "linf")
    yield torch.ops.rrec.project.default, (x.half(), 0.5, r, "l2")
    yield torch.ops.rrec.project.default, (x, 0.5, None, "linf")
    yield torch.ops.rrec.project_.default, (x.clone(), 0.5, None, "l2")
    yield torch.ops.rrec.pgd_step.default, (x, g, 0.1, r, 0.5, None, "l2")
    yield torch.ops.rrec.pgd_step.default, (x.bfloat16(), g.bfloat16(), 0.1, None, 0.5, r, "linf")
    yield torch.ops.rrec.pgd_step_.default, (x.clone(), g, 0.1, None, 0.5, r, "l2")


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

    def attack(table, d, g):
        radius = 0.1 * table.norm(dim=1)  # norm-relative (per-row) eps
        d = ops.pgd_step(d, g, 0.02, radius[: d.shape[0]], "l2")
        d = ops.project_(d, 0.04, "linf")
        return d + ops.fgsm(g, radius[: g.shape[0]], "linf")

    table = torch.randn(64, 32, device=device)
    d = torch.randn(16, 32, device=device) * 0.01
    g = torch.randn(16, 32, device=device)
    compiled = torch.compile(attack, fullgraph=True, backend="inductor")
    close(compiled(table, d.clone(), g), attack(table, d.clone(), g), torch.float32)


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
