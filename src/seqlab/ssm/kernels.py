"""Cauchy (S4) and Vandermonde (S4D) kernels, naive references and Triton versions, plus FFT convolution.

Shapes (M = a batch of vectors sharing the same poles, H = d_model, N = modes, L = output length):

* Cauchy:      ``out[m, h, l] = sum_n v[m, h, n] / (z[l] - w[h, n])``          complex in, complex out
* Vandermonde: ``out[m, h, l] = 2 Re sum_n v[m, h, n] exp(x[h, n] * l)``        complex in, real out

The naive versions materialise the (M, H, N, L) tensor of terms. The Triton versions stream over
tiles of N and L and keep only O(M H (N + L)) in memory, forward and backward. Triton has no complex
type, so complex tensors travel as interleaved (real, imag) pairs (``torch.view_as_real``).
"""

from __future__ import annotations

import os

import torch

try:  # triton is optional on CPU-only installs
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # pragma: no cover - exercised only without triton
    triton = None
    tl = None
    HAS_TRITON = False

__all__ = [
    "cauchy_naive",
    "vandermonde_naive",
    "cauchy",
    "vandermonde",
    "fft_conv",
    "HAS_TRITON",
    "triton_available",
    "ssm_step",
]


# ----------------------------------------------------------------------------------------------
# argument checks shared by all paths
# ----------------------------------------------------------------------------------------------


def _check_complex(name, t, ndim):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_complex():
        raise TypeError(f"{name} must be complex (complex64 or complex128), got {t.dtype}")
    if t.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dims, got shape {tuple(t.shape)}")


def _check_cauchy(v, z, w):
    _check_complex("v", v, 3)
    _check_complex("z", z, 1)
    _check_complex("w", w, 2)
    if v.shape[1:] != w.shape:
        raise ValueError(f"v (M, H, N) and w (H, N) disagree: {tuple(v.shape)} vs {tuple(w.shape)}")
    if not (v.dtype == z.dtype == w.dtype):
        raise TypeError(f"v, z, w must share a dtype, got {v.dtype}, {z.dtype}, {w.dtype}")
    if not (v.device == z.device == w.device):
        raise ValueError("v, z, w must be on the same device")


def _check_vandermonde(v, x, L):
    _check_complex("v", v, 3)
    _check_complex("x", x, 2)
    if v.shape[1:] != x.shape:
        raise ValueError(f"v (M, H, N) and x (H, N) disagree: {tuple(v.shape)} vs {tuple(x.shape)}")
    if v.dtype != x.dtype:
        raise TypeError(f"v and x must share a dtype, got {v.dtype}, {x.dtype}")
    if isinstance(L, bool) or not isinstance(L, int) or L < 1:
        raise ValueError(f"L must be a positive int, got {L!r}")


# ----------------------------------------------------------------------------------------------
# naive references
# ----------------------------------------------------------------------------------------------


def cauchy_naive(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Reference Cauchy product: v (M, H, N), z (L,), w (H, N) complex -> (M, H, L) complex.

    Materialises the (M, H, N, L) terms; autograd gives the gradients.
    """
    _check_cauchy(v, z, w)
    return (v.unsqueeze(-1) / (z - w.unsqueeze(-1))).sum(-2)


def vandermonde_naive(v: torch.Tensor, x: torch.Tensor, L: int) -> torch.Tensor:
    """Reference Vandermonde product: v (M, H, N), x (H, N) complex -> real (M, H, L).

    ``out[m, h, l] = 2 Re sum_n v[m,h,n] exp(x[h,n] l)``; materialises (M, H, N, L).
    """
    _check_vandermonde(v, x, L)
    ell = torch.arange(L, device=x.device, dtype=x.real.dtype)
    terms = torch.exp(x.unsqueeze(-1) * ell)  # (H, N, L)
    return 2 * (v.unsqueeze(-1) * terms).sum(-2).real


# ----------------------------------------------------------------------------------------------
# Triton kernels
# ----------------------------------------------------------------------------------------------

if HAS_TRITON:

    @triton.jit
    def _cauchy_fwd_kernel(V, Z, W, OUT, H, N, L, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr):
        # one program: one (m, h) row and BLOCK_L nodes; loop over the N poles in tiles.
        row = tl.program_id(0)
        h = row % H
        offs_l = tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)
        mask_l = offs_l < L
        zr = tl.load(Z + 2 * offs_l, mask=mask_l, other=0.0)
        zi = tl.load(Z + 2 * offs_l + 1, mask=mask_l, other=0.0)
        acc_r = tl.zeros([BLOCK_L], dtype=zr.dtype)
        acc_i = tl.zeros([BLOCK_L], dtype=zr.dtype)
        for n0 in range(0, N, BLOCK_N):
            offs_n = n0 + tl.arange(0, BLOCK_N)
            mask_n = offs_n < N
            vr = tl.load(V + 2 * (row * N + offs_n), mask=mask_n, other=0.0)
            vi = tl.load(V + 2 * (row * N + offs_n) + 1, mask=mask_n, other=0.0)
            # masked poles get w = 0; their v = 0 so they add nothing (and z != 0 is not needed).
            wr = tl.load(W + 2 * (h * N + offs_n), mask=mask_n, other=0.0)
            wi = tl.load(W + 2 * (h * N + offs_n) + 1, mask=mask_n, other=0.0)
            dr = zr[None, :] - wr[:, None]
            di = zi[None, :] - wi[:, None]
            # padded lanes get a unit denominator (no inf) and are zeroed afterwards
            valid = mask_n[:, None] & mask_l[None, :]
            den = tl.where(valid, dr * dr + di * di, 1.0)
            inv = tl.where(valid, 1.0 / den, 0.0)
            # v / d = v * conj(d) / |d|^2
            tr = (vr[:, None] * dr + vi[:, None] * di) * inv
            ti = (vi[:, None] * dr - vr[:, None] * di) * inv
            acc_r += tl.sum(tr, axis=0)
            acc_i += tl.sum(ti, axis=0)
        tl.store(OUT + 2 * (row * L + offs_l), acc_r, mask=mask_l)
        tl.store(OUT + 2 * (row * L + offs_l) + 1, acc_i, mask=mask_l)

    @triton.jit
    def _cauchy_bwd_kernel(G, Z, W, T1, T2, H, N, L, ROWS, L_CHUNK, BLOCK_N: tl.constexpr,
                           BLOCK_L: tl.constexpr):
        # T1[split, row, n] = sum_l g[row, l] * d / |d|^2     (= sum_l g conj(1/d))
        # T2[split, row, n] = sum_l g[row, l] * d^2 / |d|^4   (= sum_l g conj(1/d^2)),  d = z_l - w_n
        # Each split covers L_CHUNK nodes, so short rows x many nodes still fill the GPU.
        row = tl.program_id(0)
        split = tl.program_id(2)
        h = row % H
        offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        mask_n = offs_n < N
        wr = tl.load(W + 2 * (h * N + offs_n), mask=mask_n, other=0.0)
        wi = tl.load(W + 2 * (h * N + offs_n) + 1, mask=mask_n, other=0.0)
        # 2-D accumulators, reduced over L once at the end (no cross-lane reduction per tile)
        a1r = tl.zeros([BLOCK_N, BLOCK_L], dtype=wr.dtype)
        a1i = tl.zeros([BLOCK_N, BLOCK_L], dtype=wr.dtype)
        a2r = tl.zeros([BLOCK_N, BLOCK_L], dtype=wr.dtype)
        a2i = tl.zeros([BLOCK_N, BLOCK_L], dtype=wr.dtype)
        l_start = split * L_CHUNK
        l_end = tl.minimum(l_start + L_CHUNK, L)
        for l0 in range(l_start, l_end, BLOCK_L):
            offs_l = l0 + tl.arange(0, BLOCK_L)
            mask_l = offs_l < l_end
            gr = tl.load(G + 2 * (row * L + offs_l), mask=mask_l, other=0.0)
            gi = tl.load(G + 2 * (row * L + offs_l) + 1, mask=mask_l, other=0.0)
            zr = tl.load(Z + 2 * offs_l, mask=mask_l, other=1.0)
            zi = tl.load(Z + 2 * offs_l + 1, mask=mask_l, other=1.0)
            dr = zr[None, :] - wr[:, None]
            di = zi[None, :] - wi[:, None]
            valid = mask_n[:, None] & mask_l[None, :]
            den = tl.where(valid, dr * dr + di * di, 1.0)
            inv = tl.where(valid, 1.0 / den, 0.0)
            # e = d / |d|^2 ;  e^2 = d^2 / |d|^4
            er = dr * inv
            ei = di * inv
            e2r = er * er - ei * ei
            e2i = 2.0 * er * ei
            a1r += gr[None, :] * er - gi[None, :] * ei
            a1i += gr[None, :] * ei + gi[None, :] * er
            a2r += gr[None, :] * e2r - gi[None, :] * e2i
            a2i += gr[None, :] * e2i + gi[None, :] * e2r
        base = split * ROWS * N + row * N + offs_n
        tl.store(T1 + 2 * base, tl.sum(a1r, axis=1), mask=mask_n)
        tl.store(T1 + 2 * base + 1, tl.sum(a1i, axis=1), mask=mask_n)
        tl.store(T2 + 2 * base, tl.sum(a2r, axis=1), mask=mask_n)
        tl.store(T2 + 2 * base + 1, tl.sum(a2i, axis=1), mask=mask_n)

    @triton.jit
    def _vand_fwd_kernel(V, X, OUT, H, N, L, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr):
        # out[row, l] = 2 sum_n exp(xr l) (vr cos(xi l) - vi sin(xi l))
        row = tl.program_id(0)
        h = row % H
        offs_l = tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)
        mask_l = offs_l < L
        ell = offs_l.to(OUT.dtype.element_ty)
        acc = tl.zeros([BLOCK_L], dtype=OUT.dtype.element_ty)
        for n0 in range(0, N, BLOCK_N):
            offs_n = n0 + tl.arange(0, BLOCK_N)
            mask_n = offs_n < N
            vr = tl.load(V + 2 * (row * N + offs_n), mask=mask_n, other=0.0)
            vi = tl.load(V + 2 * (row * N + offs_n) + 1, mask=mask_n, other=0.0)
            xr = tl.load(X + 2 * (h * N + offs_n), mask=mask_n, other=0.0)
            xi = tl.load(X + 2 * (h * N + offs_n) + 1, mask=mask_n, other=0.0)
            mag = tl.exp(xr[:, None] * ell[None, :])
            ph = xi[:, None] * ell[None, :]
            t = mag * (vr[:, None] * tl.cos(ph) - vi[:, None] * tl.sin(ph))
            acc += tl.sum(t, axis=0)
        tl.store(OUT + row * L + offs_l, 2.0 * acc, mask=mask_l)

    @triton.jit
    def _vand_bwd_kernel(G, X, T1, T2, H, N, L, ROWS, L_CHUNK, BLOCK_N: tl.constexpr,
                         BLOCK_L: tl.constexpr):
        # T1[split, row, n] = sum_l g_l conj(e^{x l});  T2[split, row, n] = sum_l g_l l conj(e^{x l})
        row = tl.program_id(0)
        split = tl.program_id(2)
        h = row % H
        offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        mask_n = offs_n < N
        xr = tl.load(X + 2 * (h * N + offs_n), mask=mask_n, other=0.0)
        xi = tl.load(X + 2 * (h * N + offs_n) + 1, mask=mask_n, other=0.0)
        a1r = tl.zeros([BLOCK_N, BLOCK_L], dtype=xr.dtype)
        a1i = tl.zeros([BLOCK_N, BLOCK_L], dtype=xr.dtype)
        a2r = tl.zeros([BLOCK_N, BLOCK_L], dtype=xr.dtype)
        a2i = tl.zeros([BLOCK_N, BLOCK_L], dtype=xr.dtype)
        l_start = split * L_CHUNK
        l_end = tl.minimum(l_start + L_CHUNK, L)
        for l0 in range(l_start, l_end, BLOCK_L):
            offs_l = l0 + tl.arange(0, BLOCK_L)
            mask_l = offs_l < l_end
            g = tl.load(G + row * L + offs_l, mask=mask_l, other=0.0)
            ell = offs_l.to(xr.dtype)
            mag = tl.exp(xr[:, None] * ell[None, :]) * g[None, :]
            ph = xi[:, None] * ell[None, :]
            cr = mag * tl.cos(ph)
            ci = -mag * tl.sin(ph)
            a1r += cr
            a1i += ci
            a2r += cr * ell[None, :]
            a2i += ci * ell[None, :]
        base = split * ROWS * N + row * N + offs_n
        tl.store(T1 + 2 * base, tl.sum(a1r, axis=1), mask=mask_n)
        tl.store(T1 + 2 * base + 1, tl.sum(a1i, axis=1), mask=mask_n)
        tl.store(T2 + 2 * base, tl.sum(a2r, axis=1), mask=mask_n)
        tl.store(T2 + 2 * base + 1, tl.sum(a2i, axis=1), mask=mask_n)


if HAS_TRITON:

    @triton.jit
    def _step_kernel(S, U, A1, A2, A3, A4, CORE, CM, DM, SOUT, Y, H, M, NC, DPLR: tl.constexpr,
                     BLOCK_M: tl.constexpr):
        # One program per (b, h): the whole O(M) recurrence update of one SSM, then its NC outputs.
        #   diag: A1 = Abar, A2 = Bbar:            s' = Abar s + Bbar u
        #   DPLR: A1 = dt/2 Lambda, A2 = dt B, A3 = 1/d with d = 1 - dt/2 Lambda, A4 = P (rank 1),
        #         CORE[h] = ((2/dt) + S)^-1 (the 1x1 Woodbury core), CORE[H + h] = dt/2:
        #         y1 = s + dt/2 (Lambda s - P 2Re(P^* s)) + dt B u ; t = y1 / d ; s' = t - (P/d) CORE 2Re(P^* t)
        pid = tl.program_id(0)
        h = pid % H
        offs = tl.arange(0, BLOCK_M)
        mask = offs < M
        sp = 2 * (pid * M + offs)
        hp = 2 * (h * M + offs)
        sr = tl.load(S + sp, mask=mask, other=0.0)
        si = tl.load(S + sp + 1, mask=mask, other=0.0)
        u = tl.load(U + pid)
        a1r = tl.load(A1 + hp, mask=mask, other=0.0)
        a1i = tl.load(A1 + hp + 1, mask=mask, other=0.0)
        a2r = tl.load(A2 + hp, mask=mask, other=0.0)
        a2i = tl.load(A2 + hp + 1, mask=mask, other=0.0)
        if DPLR:
            pr = tl.load(A4 + hp, mask=mask, other=0.0)
            pi = tl.load(A4 + hp + 1, mask=mask, other=0.0)
            ir = tl.load(A3 + hp, mask=mask, other=0.0)
            ii = tl.load(A3 + hp + 1, mask=mask, other=0.0)
            core = tl.load(CORE + h)
            half_dt = tl.load(CORE + H + h)
            q = 2.0 * tl.sum(pr * sr + pi * si, axis=0) * half_dt  # dt/2 * 2 Re(P^* s)
            y1r = sr + (a1r * sr - a1i * si) - pr * q + a2r * u
            y1i = si + (a1r * si + a1i * sr) - pi * q + a2i * u
            tr = y1r * ir - y1i * ii
            ti = y1r * ii + y1i * ir
            q2 = 2.0 * tl.sum(pr * tr + pi * ti, axis=0)
            pdr = pr * ir - pi * ii
            pdi = pr * ii + pi * ir
            nr = tr - pdr * core * q2
            ni = ti - pdi * core * q2
        else:
            nr = a1r * sr - a1i * si + a2r * u
            ni = a1r * si + a1i * sr + a2i * u
        nr = tl.where(mask, nr, 0.0)
        ni = tl.where(mask, ni, 0.0)
        tl.store(SOUT + sp, nr, mask=mask)
        tl.store(SOUT + sp + 1, ni, mask=mask)
        B = pid // H
        for c in range(NC):
            cp = 2 * ((c * H + h) * M + offs)
            cr = tl.load(CM + cp, mask=mask, other=0.0)
            ci = tl.load(CM + cp + 1, mask=mask, other=0.0)
            d = tl.load(DM + c * H + h)
            y = 2.0 * tl.sum(cr * nr - ci * ni, axis=0) + d * u
            tl.store(Y + (B * NC + c) * H + h, y)


def ssm_step(u: torch.Tensor, state: torch.Tensor, cache: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused Triton recurrence step for S4 (rank-1 DPLR) and S4D: one launch per layer and token.

    u (B, H) real, state (B, H, M) complex, ``cache`` from ``S4.setup_step``. Returns
    (y (B, C, H) real, next_state (B, H, M) complex). Inference only (no autograd).
    """
    _require_triton(state)
    Bsz, H, M = state.shape
    state = state.contiguous()
    u = u.contiguous().to(state.real.dtype)
    out = torch.empty_like(state)
    C = cache["C"]
    y = torch.empty(Bsz, C.shape[0], H, dtype=u.dtype, device=u.device)
    rv = lambda t: torch.view_as_real(t.contiguous())  # noqa: E731 - flat (re, im) pairs
    if cache["dplr"]:
        args = (rv(cache["k_a1"]), rv(cache["k_a2"]), rv(cache["k_inv_d"]), rv(cache["k_P"]), cache["k_core"])
    else:
        args = (rv(cache["Abar"]), rv(cache["Bbar"]), rv(cache["Abar"]), rv(cache["Abar"]), cache["D"])
    _step_kernel[(Bsz * H,)](
        rv(state), u, *args, rv(C), cache["D"], rv(out), y, H, M, C.shape[0],
        DPLR=bool(cache["dplr"]), BLOCK_M=max(16, triton.next_power_of_2(M)),
    )
    return y, out


def _blocks(N, L):
    bn = min(32, max(16, triton.next_power_of_2(N)))
    bl = min(64, max(16, triton.next_power_of_2(L)))
    return bn, bl


# Backward programs reduce over L; with few (row, n-block) pairs the L range is split so that about
# this many programs run, each writing a partial sum (O(splits * M * H * N) extra memory).
_TARGET_PROGRAMS = 2048


def _splits(n_programs, L, bl):
    blocks = triton.cdiv(L, bl)
    splits = max(1, min(blocks, _TARGET_PROGRAMS // max(1, n_programs)))
    chunk = triton.cdiv(blocks, splits) * bl
    return triton.cdiv(L, chunk), chunk


def triton_available(device) -> bool:
    """True if the Triton kernels can run on ``device`` (CUDA, or CPU under ``TRITON_INTERPRET=1``)."""
    if not HAS_TRITON:
        return False
    if torch.device(device).type == "cuda":
        return True
    return os.environ.get("TRITON_INTERPRET") == "1"


def _require_triton(t):
    if not triton_available(t.device):
        raise RuntimeError(
            f"the Triton kernels cannot run on {t.device} here (triton missing, or CPU tensors without "
            "TRITON_INTERPRET=1 set before triton was imported); use impl='naive'"
        )


class _CauchyFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v, z, w):
        v, z, w = v.contiguous(), z.contiguous(), w.contiguous()
        M, H, N = v.shape
        L = z.shape[0]
        out = torch.empty(M, H, L, dtype=v.dtype, device=v.device)
        bn, bl = _blocks(N, L)
        grid = (M * H, triton.cdiv(L, bl))
        _cauchy_fwd_kernel[grid](
            torch.view_as_real(v), torch.view_as_real(z), torch.view_as_real(w), torch.view_as_real(out),
            H, N, L, BLOCK_N=bn, BLOCK_L=bl,
        )
        ctx.save_for_backward(v, z, w)
        return out

    @staticmethod
    def backward(ctx, g):
        v, z, w = ctx.saved_tensors
        M, H, N = v.shape
        L = z.shape[0]
        g = g.contiguous().to(v.dtype)
        bn, bl = _blocks(N, L)
        nsplit, chunk = _splits(M * H * triton.cdiv(N, bn), L, bl)
        t1 = torch.empty((nsplit, *v.shape), dtype=v.dtype, device=v.device)
        t2 = torch.empty_like(t1)
        grid = (M * H, triton.cdiv(N, bn), nsplit)
        _cauchy_bwd_kernel[grid](
            torch.view_as_real(g), torch.view_as_real(z), torch.view_as_real(w),
            torch.view_as_real(t1), torch.view_as_real(t2), H, N, L, M * H, chunk, BLOCK_N=bn, BLOCK_L=bl,
        )
        t1, t2 = t1.sum(0), t2.sum(0)
        # out = v / (z - w) is holomorphic in v and w: grad = conj(d out / d input) * g, summed over l.
        dv = t1 if ctx.needs_input_grad[0] else None
        dw = (v.conj() * t2).sum(0) if ctx.needs_input_grad[2] else None
        return dv, None, dw


class _VandermondeFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v, x, L):
        v, x = v.contiguous(), x.contiguous()
        M, H, N = v.shape
        out = torch.empty(M, H, L, dtype=v.real.dtype, device=v.device)
        bn, bl = _blocks(N, L)
        grid = (M * H, triton.cdiv(L, bl))
        _vand_fwd_kernel[grid](
            torch.view_as_real(v), torch.view_as_real(x), out, H, N, L, BLOCK_N=bn, BLOCK_L=bl
        )
        ctx.save_for_backward(v, x)
        ctx.L = L
        return out

    @staticmethod
    def backward(ctx, g):
        v, x = ctx.saved_tensors
        M, H, N = v.shape
        L = ctx.L
        g = g.contiguous().to(v.real.dtype)
        bn, bl = _blocks(N, L)
        nsplit, chunk = _splits(M * H * triton.cdiv(N, bn), L, bl)
        t1 = torch.empty((nsplit, *v.shape), dtype=v.dtype, device=v.device)
        t2 = torch.empty_like(t1)
        grid = (M * H, triton.cdiv(N, bn), nsplit)
        _vand_bwd_kernel[grid](
            g, torch.view_as_real(x), torch.view_as_real(t1), torch.view_as_real(t2), H, N, L, M * H, chunk,
            BLOCK_N=bn, BLOCK_L=bl,
        )
        t1, t2 = t1.sum(0), t2.sum(0)
        # out = v e + conj(v e) with e = exp(x l): d/dv* gives 2 g conj(e); d/dx* gives 2 g l conj(v e).
        dv = 2 * t1 if ctx.needs_input_grad[0] else None
        dx = 2 * (v.conj() * t2).sum(0) if ctx.needs_input_grad[1] else None
        return dv, dx, None


def cauchy(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor, impl: str = "triton") -> torch.Tensor:
    """Cauchy product ``sum_n v[m,h,n] / (z[l] - w[h,n])``: v (M, H, N), z (L,), w (H, N) -> (M, H, L).

    All complex64 or all complex128. ``impl='triton'`` streams tiles (O(M H (N + L)) memory, works on
    CUDA tensors and on CPU tensors under ``TRITON_INTERPRET=1``); ``impl='naive'`` materialises.
    Differentiable in v and w (z is treated as a constant).
    """
    if impl == "naive":
        return cauchy_naive(v, z, w)
    if impl != "triton":
        raise ValueError(f"impl must be 'triton' or 'naive', got {impl!r}")
    _check_cauchy(v, z, w)
    _require_triton(v)
    return _CauchyFn.apply(v, z, w)


def vandermonde(v: torch.Tensor, x: torch.Tensor, L: int, impl: str = "triton") -> torch.Tensor:
    """Vandermonde product ``2 Re sum_n v[m,h,n] exp(x[h,n] l)``: v (M, H, N), x (H, N) -> real (M, H, L).

    Same dtype/impl conventions as :func:`cauchy`; differentiable in v and x.
    """
    if impl == "naive":
        return vandermonde_naive(v, x, L)
    if impl != "triton":
        raise ValueError(f"impl must be 'triton' or 'naive', got {impl!r}")
    _check_vandermonde(v, x, L)
    _require_triton(v)
    return _VandermondeFn.apply(v, x, L)


def fft_conv(u: torch.Tensor, k: torch.Tensor, bidirectional: bool = False) -> torch.Tensor:
    """Causal (or two-sided) convolution by FFT of length 2L, so the circular wrap never reaches [0, L).

    u: (B, H, L) real; k: (C, H, L) real causal kernel, or (2C, H, L) when ``bidirectional`` (first C
    channels act on the past, last C on the future). Returns (B, C, H, L):
    ``y[b,c,h,t] = sum_{s<=t} k[c,h,t-s] u[b,h,s]`` (+ ``sum_{s>=t} k[C+c,h,s-t] u[b,h,s]``).
    """
    if u.dim() != 3 or k.dim() != 3:
        raise ValueError(f"u must be (B, H, L) and k (C, H, L); got {tuple(u.shape)}, {tuple(k.shape)}")
    L = u.shape[-1]
    if k.shape[-1] != L or k.shape[1] != u.shape[1]:
        raise ValueError(f"kernel shape {tuple(k.shape)} does not match input {tuple(u.shape)}")
    n = 2 * L
    if bidirectional:
        if k.shape[0] % 2:
            raise ValueError("bidirectional kernel needs an even number of channels")
        k0, k1 = k.chunk(2, dim=0)
        # anti-causal part at negative lags: lag -s sits at index n - s (s >= 1); lag 0 adds to index 0.
        kk = torch.nn.functional.pad(k0, (0, L))
        kk = kk + torch.nn.functional.pad(k1[..., 1:].flip(-1), (L + 1, 0))
        kk[..., 0] = kk[..., 0] + k1[..., 0]
        k = kk
    kf = torch.fft.rfft(k, n=n)
    uf = torch.fft.rfft(u, n=n)
    y = torch.fft.irfft(uf.unsqueeze(1) * kf, n=n)[..., :L]
    return y
