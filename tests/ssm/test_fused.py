"""Fused S4 kernel generation (one Triton launch from the raw parameters) and the factored Vandermonde
kernels, through the interpreter, against the naive/unfused paths and dense matrix powers."""

import pytest
import torch

from seqlab.ssm import S4
from seqlab.ssm import kernels as K

pytestmark = pytest.mark.skipif(not K.HAS_TRITON, reason="triton not installed")


def _rel(a, b):
    a, b = (t.to(torch.complex128) if t.is_complex() else t.double() for t in (a, b))
    return (torch.linalg.norm(a - b) / torch.linalg.norm(b)).item()


def _pair(dtype=torch.float64, perturb=0.1, **kw):
    a = S4(kernel_impl="triton", dtype=dtype, **kw)
    with torch.no_grad():  # move away from the init so every parameter matters generically
        for p in a.parameters():
            p.add_(perturb * torch.randn_like(p))
    b = S4(kernel_impl="naive", dtype=dtype, **kw)
    b.load_state_dict(a.state_dict())
    return a, b


def _grads(m, L, g):
    m.zero_grad(set_to_none=True)
    k = m.kernel(L)
    (k * g).sum().backward()
    return k.detach(), {n: p.grad for n, p in m.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("H,N,kw,lengths", [
    (3, 8, {}, [20]),                                  # even kernel length (Nyquist node)
    (4, 12, {"channels": 2}, [33]),                    # odd length, several channels
    (2, 6, {"bidirectional": True}, [17]),
    (2, 10, {}, [9, 40, 23]),                          # C~ re-expressed for 80, output truncated to 23
    (2, 10, {"l_max": 30}, [30, 7]),
    (5, 64, {}, [64]),                                 # 32 stored modes: full tile
])
def test_fused_nplr_kernel_matches_unfused_float64(H, N, kw, lengths):
    a, b = _pair(d_model=H, d_state=N, **kw)
    assert a._fused_nplr() and not b._fused_nplr()
    for L in lengths:
        g = torch.randn(b.kernel(L).shape, dtype=torch.float64)
        ka, ga = _grads(a, L, g)
        kb, gb = _grads(b, L, g)
        assert ka.shape == kb.shape == (a.channels * (2 if a.bidirectional else 1), H, L)
        assert _rel(ka, kb) < 1e-12
        assert set(ga) == set(gb) == {"log_A_real", "A_imag", "B", "P", "C", "log_dt"}
        for n in ga:
            assert _rel(ga[n], gb[n]) < 1e-10, n


def test_fused_nplr_kernel_equals_dense_powers():
    from tests.ssm.test_s4 import dense_kernel

    m, _ = _pair(d_model=3, d_state=8, channels=2)
    L = 26
    k = m.kernel(L)
    assert _rel(k, dense_kernel(m.ssm_matrices(), L)) < 1e-8


def test_fused_nplr_float32_close_to_float64():
    ref, _ = _pair(d_model=4, d_state=16)
    m = S4(4, d_state=16, kernel_impl="triton")
    m.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ref.state_dict().items()})
    L = 50
    g = torch.randn(1, 4, L, dtype=torch.float64)
    k64, g64 = _grads(ref, L, g)
    k32, g32 = _grads(m, L, g.float())
    assert _rel(k32, k64) < 1e-5
    for n in g64:
        assert _rel(g32[n], g64[n]) < 1e-4, n


def test_fused_switch_and_fallbacks(monkeypatch):
    a, b = _pair(d_model=2, d_state=6)
    assert a._fused_nplr()
    monkeypatch.setenv("SEQLAB_S4_FUSED", "0")
    assert not a._fused_nplr()
    assert _rel(a.kernel(12), b.kernel(12)) < 1e-12
    monkeypatch.delenv("SEQLAB_S4_FUSED")
    # rank-2 corrections (LegT) and the naive / CPU-auto paths keep the Cauchy-op path
    assert not S4(2, d_state=6, init="legt", kernel_impl="triton")._fused_nplr()
    assert not S4(2, d_state=6)._fused_nplr()
    m = S4(2, d_state=6, init="legt", kernel_impl="triton")
    with pytest.raises(ValueError, match="rank 1"):
        nodes, scale = m._nodes(8, m.log_dt.device, m.log_dt.dtype)
        K.nplr_kernel(m.log_A_real, m.A_imag, m.log_dt, m.B, m.P, m.C, nodes, scale, 8, 8)


def test_fused_nplr_split_reduction(monkeypatch):
    monkeypatch.setattr(K, "_TARGET_PROGRAMS", 8)  # several node chunks per feature, partials summed
    a, b = _pair(d_model=2, d_state=8, channels=2)  # the epilogue sums partials over chunks and channels
    L = 150
    assert K._splits(4, L // 2 + 1, 16)[0] > 1
    g = torch.randn(2, 2, L, dtype=torch.float64)
    ka, ga = _grads(a, L, g)
    kb, gb = _grads(b, L, g)
    assert _rel(ka, kb) < 1e-12
    for n in ga:
        assert _rel(ga[n], gb[n]) < 1e-10, n


@pytest.mark.parametrize("variant,N", [("factored", 40), ("factored", 70), ("direct", 40)])
@pytest.mark.parametrize("dtype,tol", [(torch.complex128, 1e-12), (torch.complex64, 2e-5)])
def test_vandermonde_long_and_chunked(monkeypatch, variant, N, dtype, tol):
    # several L tiles per program: the E-table / exp(x l0) factoring (N = 70 > 64 falls back to direct)
    monkeypatch.setenv("SEQLAB_S4_VAND", variant)
    monkeypatch.setattr(K, "_TARGET_PROGRAMS", 4)
    rd = dtype.to_real()
    M, H, L = 2, 3, 700
    v = torch.randn(M, H, N, dtype=dtype, requires_grad=True)
    x = torch.complex(-0.01 * torch.rand(H, N, dtype=rd), 2 * torch.randn(H, N, dtype=rd)).requires_grad_()
    out = K.vandermonde(v, x, L)
    v64, x64 = v.detach().to(torch.complex128).requires_grad_(), x.detach().to(torch.complex128).requires_grad_()
    ref = K.vandermonde_naive(v64, x64, L)
    assert _rel(out, ref) < tol
    g = torch.randn(M, H, L, dtype=torch.float64)
    for a, b in zip(torch.autograd.grad(out, (v, x), g.to(rd)), torch.autograd.grad(ref, (v64, x64), g)):
        assert _rel(a, b) < tol * 10


def test_s4d_layer_kernel_triton_matches_naive():
    a, b = _pair(d_model=3, d_state=20, mode="diag", init="lin")
    g = torch.randn(1, 3, 90, dtype=torch.float64)
    ka, ga = _grads(a, 90, g)
    kb, gb = _grads(b, 90, g)
    assert _rel(ka, kb) < 1e-12
    for n in ga:
        assert _rel(ga[n], gb[n]) < 1e-10, n


def test_epilogue_fallback_matches(monkeypatch):
    # the PyTorch chain rule (used if the epilogue kernel cannot run) gives the same gradients
    a, b = _pair(d_model=3, d_state=8, channels=2)
    g = torch.randn(2, 3, 21, dtype=torch.float64)
    _, gt = _grads(a, 21, g)

    class Broken:
        def __getitem__(self, grid):
            def fail(*args, **kw):
                raise RuntimeError("simulated compiler failure")
            return fail

    monkeypatch.setattr(K, "_nplr_grad_epilogue", Broken())
    monkeypatch.setitem(K._EPILOGUE, "triton", True)
    with pytest.warns(RuntimeWarning, match="epilogue"):
        _, gf = _grads(a, 21, g)
    assert not K._EPILOGUE["triton"]
    _, gn = _grads(b, 21, g)
    for n in gt:
        assert _rel(gf[n], gt[n]) < 1e-12 and _rel(gt[n], gn[n]) < 1e-10, n
