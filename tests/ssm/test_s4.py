"""S4 / S4D layer: kernels vs dense matrix powers, step vs conv, state carry, bidirectional, errors."""

import pytest
import torch

from seqlab.ssm import S4, S4Block, SequenceModel, ssm_param_groups
from seqlab.ssm.kernels import HAS_TRITON

CASES = [
    ("nplr", "legs", "bilinear"),
    ("nplr", "legt", "bilinear"),
    ("nplr", "fout", "bilinear"),
    ("diag", "legs", "zoh"),
    ("diag", "lin", "bilinear"),
    ("diag", "inv", "zoh"),
    ("diag", "real", "bilinear"),
]


def _rel(a, b):
    return (torch.linalg.norm(a - b) / torch.linalg.norm(b)).item()


def dense_kernel(m, L):
    """Kbar[c, h, l] = f(C Abar^l Bbar) from ssm_matrices() by explicit matrix powers (complex128)."""
    A, B, C, D, dt, disc, halved = m
    A, B, C, dt = A.to(torch.complex128), B.to(torch.complex128), C.to(torch.complex128), dt.double()
    eye = torch.eye(A.shape[-1], dtype=A.dtype)
    if disc == "bilinear":
        lhs = eye - dt[:, None, None] / 2 * A
        Abar = torch.linalg.solve(lhs, eye + dt[:, None, None] / 2 * A)
        Bbar = torch.linalg.solve(lhs, (dt[:, None] * B)[..., None])[..., 0]
    else:
        Abar = torch.linalg.matrix_exp(dt[:, None, None] * A)
        Bbar = torch.linalg.solve(A, (Abar - eye) @ B[..., None])[..., 0]
    out, x = [], Bbar
    for _ in range(L):
        out.append(torch.einsum("chn,hn->ch", C, x))
        x = torch.einsum("hnm,hm->hn", Abar, x)
    k = torch.stack(out, -1)
    return 2 * k.real if halved else k.real


@pytest.mark.parametrize("mode,init,disc", CASES)
@pytest.mark.parametrize("N,L,l_max", [(4, 1, None), (8, 37, None), (6, 40, 40), (10, 23, 64)])
def test_kernel_equals_dense_powers(mode, init, disc, N, L, l_max):
    m = S4(5, d_state=N, l_max=l_max, mode=mode, init=init, disc=disc, channels=2, dtype=torch.float64)
    k = m.kernel(L)
    assert k.shape == (2, 5, L) and k.dtype == torch.float64
    mats = m.ssm_matrices()
    assert mats.A.shape[0] == 5 and mats.C.shape[:2] == (2, 5) and mats.dt.shape == (5,)
    assert mats.halved == (mode == "diag") and mats.disc == disc
    assert _rel(k, dense_kernel(mats, L)) < 1e-8


@pytest.mark.parametrize("init", ["legs", "lin", "inv", "real"])
def test_diag_odd_d_state(init):
    m = S4(3, d_state=5, mode="diag", init=init, dtype=torch.float64)
    assert m.n_modes == 3 and m.default_state(2).shape == (2, 3, 3)
    assert _rel(m.kernel(29), dense_kernel(m.ssm_matrices(), 29)) < 1e-8


def test_nplr_kernel_growth_keeps_system():
    m = S4(3, d_state=8, dtype=torch.float64)
    before = m.ssm_matrices()  # no kernel yet: C~ is C
    k1 = m.kernel(19)
    assert int(m.kernel_length) == 19
    after = m.ssm_matrices()
    assert _rel(after.C, before.C) < 1e-10
    k2 = m.kernel(50)  # doubles 19 -> 38 -> 76
    assert int(m.kernel_length) == 76
    assert _rel(k2[..., :19], k1) < 1e-10
    assert _rel(k2, dense_kernel(m.ssm_matrices(), 50)) < 1e-8
    assert _rel(m.ssm_matrices().C, before.C) < 1e-9


@pytest.mark.parametrize("mode,init,disc", [CASES[0], CASES[1], CASES[3], CASES[4]])
def test_step_equals_conv_float32(mode, init, disc):
    H, B, L = 6, 3, 45
    m = S4(H, d_state=16, mode=mode, init=init, disc=disc, channels=2)
    x = torch.randn(B, L, H)
    y, _ = m(x)
    assert y.shape == (B, L, 2 * H)
    m.setup_step()
    s, ys = m.default_state(B), []
    for t in range(L):
        yt, s = m.step(x[:, t], s)
        ys.append(yt)
    assert _rel(torch.stack(ys, 1), y) < 1e-5
    # carrying the state over two forward calls equals one call on the concatenation
    y1, s1 = m(x[:, :20], state=m.default_state(B))
    y2, s2 = m(x[:, 20:], state=s1)
    assert _rel(torch.cat([y1, y2], 1), y) < 1e-5
    assert _rel(s2, s) < 1e-4
    # the step state and forward's next_state are the same object kind and shape
    assert s2.shape == s.shape == (B, H, 8) and s2.is_complex()


@pytest.mark.parametrize("mode", ["nplr", "diag"])
def test_forward_with_state_float64_exact(mode):
    m = S4(4, d_state=8, mode=mode, dtype=torch.float64, transposed=True)
    x = torch.randn(2, 4, 31, dtype=torch.float64)
    s0 = torch.randn(2, 4, 4, dtype=torch.complex128)
    y, sN = m(x, state=s0)
    m.setup_step()
    s, ys = s0, []
    for t in range(31):
        yt, s = m.step(x[..., t], s)
        ys.append(yt)
    assert y.shape == (2, 4, 31)
    assert _rel(torch.stack(ys, -1), y) < 1e-10
    assert _rel(sN, s) < 1e-10


@pytest.mark.parametrize("mode", ["nplr", "diag"])
def test_bidirectional_is_causal_plus_reversed(mode):
    H, L, c = 3, 17, 2
    m = S4(H, d_state=8, mode=mode, bidirectional=True, channels=c, dtype=torch.float64, transposed=True)
    x = torch.randn(2, H, L, dtype=torch.float64)
    y, _ = m(x)
    k = m.kernel(L)
    assert k.shape == (2 * c, H, L)

    def causal(u, kk):
        out = torch.zeros(u.shape[0], c, H, L, dtype=u.dtype)
        for t in range(L):
            out[..., t] = (kk[None, :, :, : t + 1].flip(-1) * u[:, None, :, : t + 1]).sum(-1)
        return out

    ref = causal(x, k[:c]) + causal(x.flip(-1), k[c:]).flip(-1) + m.D[None, :, :, None] * x[:, None]
    assert _rel(y, ref.reshape(2, c * H, L)) < 1e-10
    with pytest.raises(ValueError, match="bidirectional"):
        m.setup_step()


@pytest.mark.skipif(not HAS_TRITON, reason="triton not installed")
@pytest.mark.parametrize("mode", ["nplr", "diag"])
def test_layer_triton_path_matches_naive(mode):
    torch.manual_seed(1)
    a = S4(3, d_state=6, mode=mode, init="legt" if mode == "nplr" else "inv", kernel_impl="triton")
    b = S4(3, d_state=6, mode=mode, init="legt" if mode == "nplr" else "inv", kernel_impl="naive")
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 21, 3)
    ya, yb = a(x)[0], b(x)[0]
    assert _rel(ya, yb) < 1e-5
    ya.square().sum().backward()
    yb.square().sum().backward()
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert _rel(pa.grad, pb.grad) < 1e-4, n


def test_gradients_reach_ssm_parameters():
    m = S4(4, d_state=8, kernel_dropout=0.1)
    x = torch.randn(2, 16, 4)
    m(x)[0].sum().backward()
    for n in ("log_A_real", "A_imag", "B", "P", "C", "D", "log_dt"):
        g = getattr(m, n).grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, n


def test_param_groups():
    model = SequenceModel(3, 2, d_model=8, n_layers=2, d_state=4, lr=1e-3)
    groups = ssm_param_groups(model, lr=1e-2, weight_decay=0.1)
    special = [g for g in groups if g["lr"] == 1e-3]
    assert len(special) == 1 and special[0]["weight_decay"] == 0.0
    ids = {id(p) for p in special[0]["params"]}
    blk = model.blocks[0].layer
    assert {id(blk.log_A_real), id(blk.A_imag), id(blk.B), id(blk.P), id(blk.log_dt)} <= ids
    assert id(blk.C) not in ids and groups[0]["weight_decay"] == 0.1
    n_all = sum(len(g["params"]) for g in groups)
    assert n_all == len(list(model.parameters()))
    torch.optim.AdamW(groups)  # accepted as is


def test_sequence_model_step_matches_forward():
    torch.manual_seed(2)
    model = SequenceModel(0, 11, d_model=8, n_layers=2, vocab_size=11, d_state=8, ff_expand=2,
                          mode="nplr").double().eval()
    tok = torch.randint(0, 11, (2, 19))
    out, _ = model(tok)
    model.setup_step()
    st, outs = model.default_state(2), []
    for t in range(19):
        o, st = model.step(tok[:, t], st)
        outs.append(o)
    assert _rel(torch.stack(outs, 1), out) < 1e-9
    blk = S4Block(8, d_state=8, prenorm=False, dropout=0.2, mode="diag")
    y, s = blk(torch.randn(2, 5, 8), return_state=True)
    assert y.shape == (2, 5, 8) and s.shape == (2, 8, 4)


def test_bad_inputs():
    m = S4(4, d_state=8, l_max=16)
    with pytest.raises(ValueError, match="3-D"):
        m(torch.randn(4, 16))
    with pytest.raises(ValueError, match="d_model"):
        m(torch.randn(2, 16, 5))
    with pytest.raises(ValueError, match="l_max"):
        m(torch.randn(2, 17, 4))
    with pytest.raises(ValueError, match="l_max"):
        m.kernel(20)
    with pytest.raises(TypeError, match="x"):
        m(torch.ones(2, 16, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="state"):
        m(torch.randn(2, 16, 4), state=m.default_state(3))
    with pytest.raises(TypeError, match="state"):
        m(torch.randn(2, 16, 4), state=torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="state"):
        m.step(torch.randn(2, 4), torch.zeros(2, 4, 3, dtype=torch.complex64))
    with pytest.raises(ValueError, match="x_t"):
        m.step(torch.randn(2, 5), m.default_state(2))
    with pytest.raises(ValueError, match="d_state"):
        S4(4, d_state=7)
    with pytest.raises(ValueError, match="mode"):
        S4(4, mode="dense")
    with pytest.raises(ValueError, match="disc"):
        S4(4, mode="nplr", disc="zoh")
    with pytest.raises(ValueError, match="init"):
        S4(4, mode="diag", init="legt")
    with pytest.raises(TypeError, match="d_model"):
        S4(4.0)
    with pytest.raises(ValueError, match="dt_min"):
        S4(4, dt_min=0.5, dt_max=0.1)
    with pytest.raises(ValueError, match="L"):
        m.kernel(0)


@pytest.mark.skipif(not HAS_TRITON, reason="triton not installed")
@pytest.mark.parametrize("mode,init", [("nplr", "legs"), ("nplr", "fout"), ("diag", "inv")])
def test_fused_triton_step_matches_conv(mode, init):
    m = S4(5, d_state=10, mode=mode, init=init, channels=3, kernel_impl="triton", dtype=torch.float64)
    m.setup_step()
    assert m._step_cache["fused"]
    x = torch.randn(2, 23, 5, dtype=torch.float64)
    y, _ = m(x)
    s, ys = m.default_state(2), []
    with torch.no_grad():
        for t in range(23):
            yt, s = m.step(x[:, t], s)
            ys.append(yt)
    assert _rel(torch.stack(ys, 1), y) < 1e-9
    # rank-2 LegT has no fused path: falls back to the PyTorch step
    assert not S4(3, d_state=4, init="legt", kernel_impl="triton")._step_cache
    m2 = S4(3, d_state=4, init="legt", kernel_impl="triton")
    m2.setup_step()
    assert not m2._step_cache["fused"]
