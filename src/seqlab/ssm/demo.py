"""``seqlab demo`` section for S4: kernels vs dense references, Triton vs naive, step vs convolution."""

from __future__ import annotations

import time

import torch

from .kernels import cauchy, cauchy_naive, triton_available, vandermonde, vandermonde_naive
from .s4 import S4


def _ms(fn, device, reps=3):
    fn()
    best = float("inf")
    for _ in range(reps):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t) * 1e3)
    return best


def _rel(a, b):
    return float(torch.linalg.norm((a - b).to(torch.complex128 if a.is_complex() else torch.float64))
                 / torch.linalg.norm(b.to(torch.complex128 if b.is_complex() else torch.float64)))


def _row(case, err, tol, ms, ref_ms):
    return {"system": "S4", "case": case, "check": f"rel err {err:.1e} " + ("ok" if err < tol else "FAIL"),
            "seqlab_ms": ms, "reference_ms": ref_ms, "speedup": ref_ms / ms if ms > 0 else float("nan")}


def _dense_kernel(m, L):
    A, B, C, _, dt, disc, halved = m.ssm_matrices()
    A, B, C, dt = A.to(torch.complex128), B.to(torch.complex128), C.to(torch.complex128), dt.double()
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
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


def run(device: str = "cpu", quick: bool = False) -> list[dict]:
    """Demo rows (system, case, check, seqlab_ms, reference_ms, speedup); a few seconds on CPU."""
    rows = []
    torch.manual_seed(0)
    H, N, L = (4, 16, 101) if quick else (8, 32, 203)
    # 1-2. kernel through the Cauchy/Woodbury/FFT (S4) and Vandermonde (S4D) paths vs dense matrix powers
    for mode in ("nplr", "diag"):
        m = S4(H, d_state=N, mode=mode, dtype=torch.float64).to(device)
        k = m.kernel(L)
        with torch.no_grad():
            ms = _ms(lambda m=m: m.kernel(L), device)
            ref_ms = _ms(lambda m=m: _dense_kernel(m, L), device, reps=1)
            err = _rel(k, _dense_kernel(m, L))
        name = "Cauchy+Woodbury+iFFT kernel" if mode == "nplr" else "Vandermonde (S4D) kernel"
        rows.append(_row(f"{name} vs dense powers, f64 H={H} N={N} L={L}", err, 1e-8, ms, ref_ms))
    # 3-4. Triton kernels vs the naive materialising ones (only where Triton can run)
    if triton_available(device):
        Hk, Nk, Lk = (64, 64, 2048) if device.startswith("cuda") else (4, 16, 64)
        v = torch.randn(2, Hk, Nk, dtype=torch.complex64, device=device)
        w = torch.complex(-torch.rand(Hk, Nk, device=device) - 0.1, torch.randn(Hk, Nk, device=device))
        z = torch.exp(torch.complex(torch.zeros(Lk), torch.rand(Lk) * 6)).to(device)
        a, b = cauchy(v, z, w), cauchy_naive(v, z, w)
        rows.append(_row(f"Triton Cauchy vs naive, f32 H={Hk} N={Nk} L={Lk}", _rel(a, b), 1e-5,
                         _ms(lambda: cauchy(v, z, w), device), _ms(lambda: cauchy_naive(v, z, w), device)))
        x = torch.complex(-0.01 * torch.rand(Hk, Nk, device=device), torch.randn(Hk, Nk, device=device))
        a, b = vandermonde(v, x, Lk), vandermonde_naive(v, x, Lk)
        rows.append(_row(f"Triton Vandermonde vs naive, f32 H={Hk} N={Nk} L={Lk}", _rel(a, b), 1e-4,
                         _ms(lambda: vandermonde(v, x, Lk), device),
                         _ms(lambda: vandermonde_naive(v, x, Lk), device)))
    # 5. step mode vs convolution: same outputs; time per token of stepping vs recomputing the conv
    m = S4(H, d_state=N, mode="nplr").to(device)
    xs = torch.randn(1, L, H, device=device)
    with torch.no_grad():
        y, _ = m(xs)
        m.setup_step()

        def steps():
            s, out = m.default_state(1), []
            for t in range(L):
                yt, s = m.step(xs[:, t], s)
                out.append(yt)
            return torch.stack(out, 1)

        ys = steps()
        step_ms = _ms(steps, device, reps=1) / L
        conv_ms = _ms(lambda: m(xs), device)
    rows.append(_row(f"step mode vs conv (per token at context {L}), f32", _rel(ys, y), 1e-4, step_ms, conv_ms))
    return rows
