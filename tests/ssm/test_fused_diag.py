"""Fused S4D kernel generation (one Triton launch from the raw parameters, two for the gradients; blocked
Vandermonde sums: (T, N) @ (N, J) products per block of positions), through the interpreter, against the
discretise + Vandermonde path (naive and Triton op) and dense matrix powers."""

import pytest
import torch

from seqlab.ssm import S4
from seqlab.ssm import kernels as K

pytestmark = pytest.mark.skipif(not K.HAS_TRITON, reason="triton not installed")

PARAMS = {"log_A_real", "A_imag", "B", "C", "log_dt"}


@pytest.fixture(autouse=True)
def _fused_on(monkeypatch):
    # the fused S4D path is the default; make sure no outer SEQLAB_S4D_FUSED=0 switches it off
    monkeypatch.delenv("SEQLAB_S4D_FUSED", raising=False)


def _rel(a, b):
    a, b = (t.to(torch.complex128) if t.is_complex() else t.double() for t in (a, b))
    return (torch.linalg.norm(a - b) / torch.linalg.norm(b)).item()


def _pair(dtype=torch.float64, perturb=0.1, ref_dtype=None, **kw):
    kw.setdefault("mode", "diag")
    a = S4(kernel_impl="triton", dtype=dtype, **kw)
    with torch.no_grad():  # move away from the init so every parameter matters generically
        for p in a.parameters():
            p.add_(perturb * torch.randn_like(p))
    b = S4(kernel_impl="naive", dtype=ref_dtype or dtype, **kw)
    b.load_state_dict(a.state_dict())
    return a, b


def _grads(m, L, g):
    m.zero_grad(set_to_none=True)
    k = m.kernel(L)
    (k * g.to(k.dtype)).sum().backward()
    return k.detach(), {n: p.grad for n, p in m.named_parameters() if p.grad is not None}


CASES = [
    (3, 8, {}, [20]),                                  # even length
    (4, 12, {"channels": 2}, [33]),                    # odd length, several channels
    (2, 6, {"bidirectional": True}, [17, 24]),
    (2, 7, {"channels": 3, "bidirectional": True}, [1, 2]),  # odd d_state (4 modes), tiny lengths
    (2, 10, {"init": "lin"}, [300]),                   # several position chunks in the backward
    (3, 64, {"init": "inv"}, [65]),                    # 32 modes: full tile
    (2, 128, {}, [40]),                                # 64 modes: the largest fused tile
]


@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
@pytest.mark.parametrize("H,N,kw,lengths", CASES)
def test_fused_diag_kernel_matches_naive_float64(disc, H, N, kw, lengths):
    a, b = _pair(d_model=H, d_state=N, disc=disc, **kw)
    assert a._fused_diag() and not b._fused_diag()
    for L in lengths:
        g = torch.randn(b.kernel(L).shape, dtype=torch.float64)
        ka, ga = _grads(a, L, g)
        kb, gb = _grads(b, L, g)
        assert ka.shape == kb.shape == (a.channels * (2 if a.bidirectional else 1), H, L)
        assert ka.dtype == torch.float64
        assert _rel(ka, kb) < 1e-12
        assert set(ga) == set(gb) == PARAMS
        for n in ga:
            assert _rel(ga[n], gb[n]) < 1e-8, n


@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
def test_fused_diag_kernel_float32_vs_float64(disc):
    # fused kernel in float32 against the naive path in float64 (same parameters); the gradients are as
    # accurate as the naive path's own float32 gradients (sums of ~L terms weighted by l)
    a, b = _pair(dtype=torch.float32, ref_dtype=torch.float64, d_model=4, d_state=16, disc=disc, channels=2,
                 perturb=0.05)
    c = S4(kernel_impl="naive", dtype=torch.float32, d_model=4, d_state=16, disc=disc, channels=2, mode="diag")
    c.load_state_dict(a.state_dict())
    L = 257
    g = torch.randn(b.kernel(L).shape, dtype=torch.float64)
    ka, ga = _grads(a, L, g)
    kb, gb = _grads(b, L, g)
    _, gc = _grads(c, L, g)
    assert ka.dtype == torch.float32
    assert _rel(ka, kb) < 1e-5
    for n in gb:
        assert _rel(ga[n], gb[n]) < max(2e-5, 3 * _rel(gc[n], gb[n])), n
        assert _rel(ga[n], gb[n]) < 1e-4, n


@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
def test_fused_diag_kernel_matches_triton_vandermonde_op(disc, monkeypatch):
    a, _ = _pair(d_model=3, d_state=12, disc=disc, channels=2)
    L = 45
    g = torch.randn(2, 3, L, dtype=torch.float64)
    ka, ga = _grads(a, L, g)
    monkeypatch.setenv("SEQLAB_S4D_FUSED", "0")
    assert not a._fused_diag()
    kb, gb = _grads(a, L, g)
    assert _rel(ka, kb) < 1e-12
    for n in gb:
        assert _rel(ga[n], gb[n]) < 1e-10, n


@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
def test_fused_diag_kernel_equals_dense_powers(disc):
    from tests.ssm.test_s4 import dense_kernel

    m, _ = _pair(d_model=3, d_state=9, disc=disc, channels=2, bidirectional=True)
    assert m._fused_diag()
    for L in (1, 16, 31):
        k = m.kernel(L)
        ref = dense_kernel(m.ssm_matrices(), L)
        assert _rel(k, ref) < 1e-10


def test_fused_diag_selection(monkeypatch):
    assert not S4(2, d_state=130, mode="diag", kernel_impl="triton")._fused_diag()  # 65 modes
    assert not S4(2, d_state=8, mode="diag", kernel_impl="naive")._fused_diag()
    assert not S4(2, d_state=8, mode="nplr", kernel_impl="triton")._fused_diag()
    m = S4(2, d_state=8, mode="diag", kernel_impl="triton")
    assert m._fused_diag()
    monkeypatch.setenv("SEQLAB_S4D_FUSED", "0")
    assert not m._fused_diag()
    monkeypatch.delenv("SEQLAB_S4D_FUSED")
    assert m._fused_diag()  # default: the fused path
    monkeypatch.setenv("SEQLAB_S4D_FUSED", "1")
    assert m._fused_diag()


def test_diag_kernel_argument_checks():
    m = S4(2, d_state=8, mode="diag", kernel_impl="triton", dtype=torch.float64)
    args = (m.log_A_real, m.A_imag, m.log_dt, m.B, m.C)
    with pytest.raises(ValueError):
        K.diag_kernel(*args, 0)
    with pytest.raises(ValueError):
        K.diag_kernel(*args, 5, disc="foh")
    w = S4(2, d_state=130, mode="diag", kernel_impl="triton", dtype=torch.float64)
    with pytest.raises(ValueError):
        K.diag_kernel(w.log_A_real, w.A_imag, w.log_dt, w.B, w.C, 5)
    assert torch.allclose(K.diag_kernel(*args, 6), S4.kernel(m, 6))


def test_fused_diag_layer_forward_and_input_grad():
    a, b = _pair(d_model=3, d_state=8, channels=2, bidirectional=True)
    x = torch.randn(2, 19, 3, dtype=torch.float64, requires_grad=True)
    xb = x.detach().clone().requires_grad_()
    ya, _ = a(x)
    yb, _ = b(xb)
    assert _rel(ya, yb) < 1e-12
    g = torch.randn_like(ya)
    (ya * g).sum().backward()
    (yb * g).sum().backward()
    assert _rel(x.grad, xb.grad) < 1e-12
    assert _rel(a.log_dt.grad, b.log_dt.grad) < 1e-8


def test_fused_diag_bf16_input():
    # bf16 activations: the layer upcasts to float32, the kernel runs in the parameters' dtype
    a, b = _pair(dtype=torch.float32, d_model=2, d_state=8)
    x = torch.randn(1, 12, 2).to(torch.bfloat16)
    ya, _ = a(x)
    yb, _ = b(x)
    assert ya.dtype == torch.bfloat16
    assert _rel(ya.float(), yb.float()) < 1e-2


@pytest.mark.parametrize("use_dot", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
def test_fused_diag_several_blocks_and_chunks(dtype, disc, use_dot, monkeypatch):
    # small tiles (16 x 16 positions per block) and few programs: L = 1000 is 4 blocks (the last one
    # partial) in 2 chunks of 2 blocks each (forward and backward); 5 modes in a 16-wide tile; tl.dot
    # and the broadcast-sum form of the block products
    monkeypatch.setattr(K, "_DIAG_TILES", {"BLOCK_T": 16, "BLOCK_J": 16, "USE_DOT": use_dot})
    monkeypatch.setattr(K, "_TARGET_PROGRAMS", 4)
    H, L = 2, 1000
    assert K._diag_tiles(5, L, dtype)[:4] == (16, 16, 16, use_dot)
    assert K._splits(H, L, 256) == (2, 512)
    a, b = _pair(dtype=dtype, ref_dtype=torch.float64, d_model=H, d_state=10, disc=disc, init="lin",
                 perturb=0.05)
    g = torch.randn(b.kernel(L).shape, dtype=torch.float64)
    ka, ga = _grads(a, L, g)
    kb, gb = _grads(b, L, g)
    assert ka.dtype == dtype and ka.shape == (1, H, L)
    tol_k, tol_g = (1e-12, 1e-9) if dtype == torch.float64 else (2e-5, 2e-4)
    assert _rel(ka, kb) < tol_k
    for n in gb:
        assert _rel(ga[n], gb[n]) < tol_g, n


@pytest.mark.parametrize("L", [1, 15, 63, 64, 65, 130, 513, 2049])
def test_fused_diag_float32_tile_edges(L):
    # float32 default tiles (J = 64 positions per row, T = 16..32 rows): lengths around the tile edges,
    # two channels, against the naive path in float64
    a, b = _pair(dtype=torch.float32, ref_dtype=torch.float64, d_model=2, d_state=6, channels=2, perturb=0.05)
    g = torch.randn(b.kernel(L).shape, dtype=torch.float64)
    ka, ga = _grads(a, L, g)
    kb, gb = _grads(b, L, g)
    assert _rel(ka, kb) < 2e-5
    for n in gb:
        assert _rel(ga[n], gb[n]) < 2e-4, n


def test_diag_tiles():
    assert K._diag_tiles(32, 16384, torch.float32) == (32, 32, 64, True, 8)
    assert K._diag_tiles(32, 1024, torch.float32) == (32, 16, 64, True, 8)
    assert K._diag_tiles(32, 16384, torch.float32, bwd=True) == (32, 32, 16, True, 4)
    assert K._diag_tiles(64, 5, torch.float32) == (64, 16, 32, True, 4)
    assert K._diag_tiles(64, 4096, torch.float32) == (64, 32, 32, True, 4)
    assert K._diag_tiles(64, 5, torch.float32, bwd=True) == (64, 16, 16, True, 8)
    assert K._diag_tiles(3, 16384, torch.float64) == (16, 16, 16, True, 4)
    assert K._diag_tiles(3, 16384, torch.float64, bwd=True) == (16, 16, 16, True, 4)
