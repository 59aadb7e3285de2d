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
import warnings

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
    "nplr_kernel",
    "diag_kernel",
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
    def _vand_fwd_kernel(V, X, OUT, H, N, L, L_CHUNK, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr):
        # out[row, l] = 2 Re sum_n v_n exp(x_n l). With l = l0 + j (j < BLOCK_L):
        #   v_n exp(x_n l) = (v_n exp(x_n l0)) * E[n, j],   E[n, j] = exp(x_n j)
        # E is computed once per program, exp(x l0) once per (tile, n): the per-term work is 2 FMA
        # instead of exp + sin + cos. All N modes sit in one tile (N <= BLOCK_N, checked by the caller).
        row = tl.program_id(0)
        h = row % H
        l_start = tl.program_id(1) * L_CHUNK
        l_end = tl.minimum(l_start + L_CHUNK, L)
        jj = tl.arange(0, BLOCK_L)
        offs_n = tl.arange(0, BLOCK_N)
        mask_n = offs_n < N
        vr = tl.load(V + 2 * (row * N + offs_n), mask=mask_n, other=0.0)
        vi = tl.load(V + 2 * (row * N + offs_n) + 1, mask=mask_n, other=0.0)
        xr = tl.load(X + 2 * (h * N + offs_n), mask=mask_n, other=0.0)
        xi = tl.load(X + 2 * (h * N + offs_n) + 1, mask=mask_n, other=0.0)
        fj = jj.to(xr.dtype)
        mag = tl.exp(xr[:, None] * fj[None, :])
        ph = xi[:, None] * fj[None, :]
        er = mag * tl.cos(ph)
        ei = mag * tl.sin(ph)
        for l0 in range(l_start, l_end, BLOCK_L):
            offs_l = l0 + jj
            mask_l = offs_l < l_end
            f0 = (l0 + tl.zeros([BLOCK_N], dtype=tl.int32)).to(xr.dtype)
            m0 = tl.exp(xr * f0)
            p0 = xi * f0
            ar = m0 * tl.cos(p0)
            ai = m0 * tl.sin(p0)
            vvr = vr * ar - vi * ai
            vvi = vr * ai + vi * ar
            part = 2.0 * tl.sum(vvr[:, None] * er - vvi[:, None] * ei, axis=0)
            tl.store(OUT + row * L + offs_l, part, mask=mask_l)

    @triton.jit
    def _vand_bwd_kernel(G, X, T1, T2, H, N, L, ROWS, L_CHUNK, BLOCK_N: tl.constexpr,
                         BLOCK_L: tl.constexpr):
        # T1[split, row, n] = sum_l g_l conj(e^{x l});  T2[split, row, n] = sum_l g_l l conj(e^{x l})
        # same factorisation as the forward: e^{x l} = e^{x l0} E[n, j].
        row = tl.program_id(0)
        split = tl.program_id(2)
        h = row % H
        offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        mask_n = offs_n < N
        xr = tl.load(X + 2 * (h * N + offs_n), mask=mask_n, other=0.0)
        xi = tl.load(X + 2 * (h * N + offs_n) + 1, mask=mask_n, other=0.0)
        jj = tl.arange(0, BLOCK_L)
        fj = jj.to(xr.dtype)
        mag = tl.exp(xr[:, None] * fj[None, :])
        ph = xi[:, None] * fj[None, :]
        er = mag * tl.cos(ph)
        ei = mag * tl.sin(ph)
        a1r = tl.zeros([BLOCK_N, BLOCK_L], dtype=xr.dtype)
        a1i = tl.zeros([BLOCK_N, BLOCK_L], dtype=xr.dtype)
        a2r = tl.zeros([BLOCK_N, BLOCK_L], dtype=xr.dtype)
        a2i = tl.zeros([BLOCK_N, BLOCK_L], dtype=xr.dtype)
        l_start = split * L_CHUNK
        l_end = tl.minimum(l_start + L_CHUNK, L)
        for l0 in range(l_start, l_end, BLOCK_L):
            offs_l = l0 + jj
            mask_l = offs_l < l_end
            g = tl.load(G + row * L + offs_l, mask=mask_l, other=0.0)
            f0 = (l0 + tl.zeros([BLOCK_N], dtype=tl.int32)).to(xr.dtype)
            m0 = tl.exp(xr * f0)
            p0 = xi * f0
            cr0 = m0 * tl.cos(p0)
            ci0 = m0 * tl.sin(p0)
            gr = er * g[None, :]
            gi = ei * g[None, :]
            qr = cr0[:, None] * gr - ci0[:, None] * gi
            qi = cr0[:, None] * gi + ci0[:, None] * gr
            ell = offs_l.to(xr.dtype)
            a1r += qr
            a1i += qi
            a2r += qr * ell[None, :]
            a2i += qi * ell[None, :]
        base = split * ROWS * N + row * N + offs_n
        tl.store(T1 + 2 * base, tl.sum(a1r, axis=1), mask=mask_n)
        tl.store(T1 + 2 * base + 1, -tl.sum(a1i, axis=1), mask=mask_n)
        tl.store(T2 + 2 * base, tl.sum(a2r, axis=1), mask=mask_n)
        tl.store(T2 + 2 * base + 1, -tl.sum(a2i, axis=1), mask=mask_n)


if HAS_TRITON:

    @triton.jit
    def _vand_fwd_direct_kernel(V, X, OUT, H, N, L, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr):
        # exp + sin + cos per term: the default variant (SEQLAB_S4_VAND=factored selects the other)
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
    def _vand_bwd_direct_kernel(G, X, T1, T2, H, N, L, ROWS, L_CHUNK, BLOCK_N: tl.constexpr,
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
    def _nplr_params(LAR, AI, LDT, B, P, h, M, BLOCK_N: tl.constexpr):
        # discretisation in registers: s = dt/2, w = s Lambda, u10 = s P^* B, u11 = s |P|^2
        offs_n = tl.arange(0, BLOCK_N)
        mask_n = offs_n < M
        hp = h * M + offs_n
        s = 0.5 * tl.exp(tl.load(LDT + h))
        ear = tl.exp(tl.load(LAR + hp, mask=mask_n, other=0.0))
        wr = -s * ear
        wi = s * tl.load(AI + hp, mask=mask_n, other=0.0)
        br = tl.load(B + 2 * hp, mask=mask_n, other=0.0)
        bi = tl.load(B + 2 * hp + 1, mask=mask_n, other=0.0)
        pr = tl.load(P + 2 * hp, mask=mask_n, other=0.0)
        pi = tl.load(P + 2 * hp + 1, mask=mask_n, other=0.0)
        u10r = s * (pr * br + pi * bi)
        u10i = s * (pr * bi - pi * br)
        u11r = s * (pr * pr + pi * pi)
        return offs_n, mask_n, s, wr, wi, br, bi, pr, pi, u10r, u10i, u11r

    @triton.jit
    def _nplr_basis(Z, offs_l, mask_l, mask_n, wr, wi, is_nyq):
        # e_a = 1/(z - w), e_b = 1/(z - conj w) for the stored poles and their conjugates, returned as
        # the sums/differences the contractions need. The Nyquist node (zeta = -1) uses e_a = e_b = 1.
        zr = tl.load(Z + 2 * offs_l, mask=mask_l, other=0.0)
        zi = tl.load(Z + 2 * offs_l + 1, mask=mask_l, other=0.0)
        valid = mask_n[:, None] & mask_l[None, :]
        nyq = is_nyq[None, :] & valid
        dr = zr[None, :] - wr[:, None]
        dai = zi[None, :] - wi[:, None]
        dbi = zi[None, :] + wi[:, None]
        ia = 1.0 / tl.where(valid, dr * dr + dai * dai, 1.0)
        ib = 1.0 / tl.where(valid, dr * dr + dbi * dbi, 1.0)
        ear = tl.where(nyq, 1.0, tl.where(valid, dr * ia, 0.0))
        eai = tl.where(nyq, 0.0, tl.where(valid, -dai * ia, 0.0))
        ebr = tl.where(nyq, 1.0, tl.where(valid, dr * ib, 0.0))
        ebi = tl.where(nyq, 0.0, tl.where(valid, -dbi * ib, 0.0))
        return ear, eai, ebr, ebi

    @triton.jit
    def _csum(ur, ui, spr, spi, smr, smi):
        # sum_n u_n e_a + conj(u_n) e_b  with sp = e_a + e_b, sm = (e_a - e_b) real part / (e_b - e_a) imag
        rr = tl.sum(ur[:, None] * spr + ui[:, None] * smi, axis=0)
        ri = tl.sum(ur[:, None] * spi + ui[:, None] * smr, axis=0)
        return rr, ri

    @triton.jit
    def _nplr_fwd_kernel(LAR, AI, LDT, B, P, C, Z, SC, OUT, H, M, LF, NYQ, NC,
                         BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr):
        # One program: one h, BLOCK_L rfft nodes, all channels. Per node:
        #   R_ab = s sum_{n in full} a_n b_n / (z - w_n)  for (a, b) in {C~, P^*} x {B, P}
        #   khat = scale (R_00 - R_01 R_10 / (1 + R_11))   (rank-1 Woodbury);  Nyquist: khat = R_00|z=inf
        h = tl.program_id(0)
        offs_l = tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)
        mask_l = offs_l < LF
        is_nyq = (offs_l == LF - 1) & (NYQ != 0)
        offs_n, mask_n, s, wr, wi, br, bi, pr, pi, u10r, u10i, u11r = _nplr_params(
            LAR, AI, LDT, B, P, h, M, BLOCK_N)
        ear, eai, ebr, ebi = _nplr_basis(Z, offs_l, mask_l, mask_n, wr, wi, is_nyq)
        spr = ear + ebr
        spi = eai + ebi
        smr = ear - ebr
        smi = ebi - eai
        r10r, r10i = _csum(u10r, u10i, spr, spi, smr, smi)
        r11r, r11i = _csum(u11r, u11r * 0.0, spr, spi, smr, smi)
        scr = tl.load(SC + 2 * offs_l, mask=mask_l, other=0.0)
        sci = tl.load(SC + 2 * offs_l + 1, mask=mask_l, other=0.0)
        # 1 / (1 + R_11)
        dr = 1.0 + r11r
        den = dr * dr + r11i * r11i
        idr = dr / den
        idi = -r11i / den
        for c in range(NC):
            cp = (c * H + h) * M + offs_n
            cr = tl.load(C + 2 * cp, mask=mask_n, other=0.0)
            ci = tl.load(C + 2 * cp + 1, mask=mask_n, other=0.0)
            u00r = s * (cr * br - ci * bi)
            u00i = s * (cr * bi + ci * br)
            u01r = s * (cr * pr - ci * pi)
            u01i = s * (cr * pi + ci * pr)
            r00r, r00i = _csum(u00r, u00i, spr, spi, smr, smi)
            r01r, r01i = _csum(u01r, u01i, spr, spi, smr, smi)
            tr = r01r * r10r - r01i * r10i
            ti = r01r * r10i + r01i * r10r
            qr = tr * idr - ti * idi
            qi = tr * idi + ti * idr
            kr = r00r - qr
            ki = r00i - qi
            outr = tl.where(is_nyq, r00r, scr * kr - sci * ki)
            outi = tl.where(is_nyq, r00i, scr * ki + sci * kr)
            op = (c * H + h) * LF + offs_l
            tl.store(OUT + 2 * op, outr, mask=mask_l)
            tl.store(OUT + 2 * op + 1, outi, mask=mask_l)

    @triton.jit
    def _nplr_bwd_kernel(LAR, AI, LDT, B, P, C, Z, SC, G, DU, DY, H, M, LF, NYQ, NC, LN, L_CHUNK,
                         BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr):
        # program (h, c, split): gradient of khat_c over one chunk of nodes, pushed through the Woodbury
        # step (dk_p per node) and the Cauchy sums (per pole: du_p = sum_l dk_p conj(e_a) + conj(dk_p) e_b,
        # Y_p = sum_l dk_p conj(e_a^2) + conj(dk_p) e_b^2). G is rfft(dK); the irfft weights (1 or 2)/L_
        # are applied here. Writes DU[split, c, p, h, n] (p = 00, 01, 10, 11) and DY likewise.
        h = tl.program_id(0)
        c = tl.program_id(1)
        split = tl.program_id(2)
        offs_n, mask_n, s, wr, wi, br, bi, pr, pi, u10r, u10i, u11r = _nplr_params(
            LAR, AI, LDT, B, P, h, M, BLOCK_N)
        cp = (c * H + h) * M + offs_n
        cr = tl.load(C + 2 * cp, mask=mask_n, other=0.0)
        ci = tl.load(C + 2 * cp + 1, mask=mask_n, other=0.0)
        u01r = s * (cr * pr - ci * pi)
        u01i = s * (cr * pi + ci * pr)
        z2 = tl.zeros([BLOCK_N, BLOCK_L], dtype=wr.dtype)
        a0r, a0i, a1r, a1i, a2r, a2i, a3r, a3i = z2, z2, z2, z2, z2, z2, z2, z2
        y0r, y0i, y1r, y1i, y2r, y2i, y3r, y3i = z2, z2, z2, z2, z2, z2, z2, z2
        l_start = split * L_CHUNK
        l_end = tl.minimum(l_start + L_CHUNK, LF)
        for l0 in range(l_start, l_end, BLOCK_L):
            offs_l = l0 + tl.arange(0, BLOCK_L)
            mask_l = offs_l < l_end
            is_nyq = (offs_l == LF - 1) & (NYQ != 0)
            ear, eai, ebr, ebi = _nplr_basis(Z, offs_l, mask_l, mask_n, wr, wi, is_nyq)
            spr = ear + ebr
            spi = eai + ebi
            smr = ear - ebr
            smi = ebi - eai
            r10r, r10i = _csum(u10r, u10i, spr, spi, smr, smi)
            r11r, r11i = _csum(u11r, u11r * 0.0, spr, spi, smr, smi)
            r01r, r01i = _csum(u01r, u01i, spr, spi, smr, smi)
            # irfft weights (1 or 2) / L_, in the working dtype (a float scalar argument would be fp32)
            wgt = tl.where((offs_l == 0) | is_nyq, 1.0, 2.0).to(wr.dtype) / (offs_l * 0 + LN).to(wr.dtype)
            gp = (c * H + h) * LF + offs_l
            gr = tl.load(G + 2 * gp, mask=mask_l, other=0.0) * wgt
            gi = tl.load(G + 2 * gp + 1, mask=mask_l, other=0.0) * wgt
            scr = tl.load(SC + 2 * offs_l, mask=mask_l, other=0.0)
            sci = tl.load(SC + 2 * offs_l + 1, mask=mask_l, other=0.0)
            dr = 1.0 + r11r
            den = dr * dr + r11i * r11i
            idr = dr / den
            idi = -r11i / den
            qr = scr * idr - sci * idi  # q = scale / (1 + R11)
            qi = scr * idi + sci * idr
            # dk00 = conj(scale) G ; dk01 = -conj(q R10) G ; dk10 = -conj(q R01) G ;
            # dk11 = conj(q R01 R10 / (1 + R11)) G ; at the Nyquist node only dk00 = G survives.
            k0r = scr * gr + sci * gi
            k0i = scr * gi - sci * gr
            t1r = qr * r10r - qi * r10i
            t1i = qr * r10i + qi * r10r
            k1r = tl.where(is_nyq, 0.0, -(t1r * gr + t1i * gi))
            k1i = tl.where(is_nyq, 0.0, -(t1r * gi - t1i * gr))
            t2r = qr * r01r - qi * r01i
            t2i = qr * r01i + qi * r01r
            k2r = tl.where(is_nyq, 0.0, -(t2r * gr + t2i * gi))
            k2i = tl.where(is_nyq, 0.0, -(t2r * gi - t2i * gr))
            t3r = t2r * r10r - t2i * r10i
            t3i = t2r * r10i + t2i * r10r
            t4r = t3r * idr - t3i * idi
            t4i = t3r * idi + t3i * idr
            k3r = tl.where(is_nyq, 0.0, t4r * gr + t4i * gi)
            k3i = tl.where(is_nyq, 0.0, t4r * gi - t4i * gr)
            # squares of the bases (zero at the Nyquist node: its value does not depend on w)
            nyq2 = is_nyq[None, :]
            ea2r = tl.where(nyq2, 0.0, ear * ear - eai * eai)
            ea2i = tl.where(nyq2, 0.0, 2.0 * ear * eai)
            eb2r = tl.where(nyq2, 0.0, ebr * ebr - ebi * ebi)
            eb2i = tl.where(nyq2, 0.0, 2.0 * ebr * ebi)
            qpr = ea2r + eb2r
            qpi = ea2i + eb2i
            qmr = ea2r - eb2r
            qmi = eb2i - ea2i
            # dk conj(e_a) + conj(dk) e_b = (dkr sp_r + dki sp_i) + i (dki sm_r + dkr sm_i)
            a0r += k0r[None, :] * spr + k0i[None, :] * spi
            a0i += k0i[None, :] * smr + k0r[None, :] * smi
            a1r += k1r[None, :] * spr + k1i[None, :] * spi
            a1i += k1i[None, :] * smr + k1r[None, :] * smi
            a2r += k2r[None, :] * spr + k2i[None, :] * spi
            a2i += k2i[None, :] * smr + k2r[None, :] * smi
            a3r += k3r[None, :] * spr + k3i[None, :] * spi
            a3i += k3i[None, :] * smr + k3r[None, :] * smi
            y0r += k0r[None, :] * qpr + k0i[None, :] * qpi
            y0i += k0i[None, :] * qmr + k0r[None, :] * qmi
            y1r += k1r[None, :] * qpr + k1i[None, :] * qpi
            y1i += k1i[None, :] * qmr + k1r[None, :] * qmi
            y2r += k2r[None, :] * qpr + k2i[None, :] * qpi
            y2i += k2i[None, :] * qmr + k2r[None, :] * qmi
            y3r += k3r[None, :] * qpr + k3i[None, :] * qpi
            y3i += k3i[None, :] * qmr + k3r[None, :] * qmi
        base = ((split * NC + c) * 4) * H * M + h * M + offs_n
        stride = H * M
        tl.store(DU + 2 * base, tl.sum(a0r, axis=1), mask=mask_n)
        tl.store(DU + 2 * base + 1, tl.sum(a0i, axis=1), mask=mask_n)
        tl.store(DU + 2 * (base + stride), tl.sum(a1r, axis=1), mask=mask_n)
        tl.store(DU + 2 * (base + stride) + 1, tl.sum(a1i, axis=1), mask=mask_n)
        tl.store(DU + 2 * (base + 2 * stride), tl.sum(a2r, axis=1), mask=mask_n)
        tl.store(DU + 2 * (base + 2 * stride) + 1, tl.sum(a2i, axis=1), mask=mask_n)
        tl.store(DU + 2 * (base + 3 * stride), tl.sum(a3r, axis=1), mask=mask_n)
        tl.store(DU + 2 * (base + 3 * stride) + 1, tl.sum(a3i, axis=1), mask=mask_n)
        tl.store(DY + 2 * base, tl.sum(y0r, axis=1), mask=mask_n)
        tl.store(DY + 2 * base + 1, tl.sum(y0i, axis=1), mask=mask_n)
        tl.store(DY + 2 * (base + stride), tl.sum(y1r, axis=1), mask=mask_n)
        tl.store(DY + 2 * (base + stride) + 1, tl.sum(y1i, axis=1), mask=mask_n)
        tl.store(DY + 2 * (base + 2 * stride), tl.sum(y2r, axis=1), mask=mask_n)
        tl.store(DY + 2 * (base + 2 * stride) + 1, tl.sum(y2i, axis=1), mask=mask_n)
        tl.store(DY + 2 * (base + 3 * stride), tl.sum(y3r, axis=1), mask=mask_n)
        tl.store(DY + 2 * (base + 3 * stride) + 1, tl.sum(y3i, axis=1), mask=mask_n)


if HAS_TRITON:

    @triton.jit
    def _cload(PTR, idx, mask):
        return tl.load(PTR + 2 * idx, mask=mask, other=0.0), tl.load(PTR + 2 * idx + 1, mask=mask, other=0.0)

    @triton.jit
    def _nplr_grad_epilogue(LAR, AI, LDT, B, P, C, DU, DY, D_LAR, D_AI, D_LDT, D_B, D_P, D_C, H, M, NC, NSPLIT,
                            BLOCK_N: tl.constexpr):
        # program h: sum the backward partials over node chunks (and channels where shared) and apply
        # the chain rule u00 = s C B, u01 = s C P, u10 = s P^* B, u11 = s |P|^2, w = s Lambda,
        # s = exp(log_dt) / 2, Lambda = -exp(log_A_real) + i A_imag (PyTorch's conjugate convention).
        h = tl.program_id(0)
        offs_n, mask_n, s, wr, wi, br, bi, pr, pi, u10r, u10i, u11r = _nplr_params(
            LAR, AI, LDT, B, P, h, M, BLOCK_N)
        ear = tl.exp(tl.load(LAR + h * M + offs_n, mask=mask_n, other=0.0))
        ai = tl.load(AI + h * M + offs_n, mask=mask_n, other=0.0)
        hp = h * M + offs_n
        HM = H * M
        zero = s * 0.0 * ear
        cb0r, cb0i, cb1r, cb1i = zero, zero, zero, zero  # sum_c conj(C_c) du00_c, sum_c conj(C_c) du01_c
        wdr, wdi = zero, zero  # sum_c conj(C B) dy00 + conj(C P) dy01
        dsr = zero  # sum_c Re(conj(C B) du00 + conj(C P) du01)
        d10r, d10i, d11r, d11i = zero, zero, zero, zero
        y10r, y10i, y11r, y11i = zero, zero, zero, zero
        for c in range(NC):
            cr, ci = _cload(C, c * HM + hp, mask_n)
            a0r, a0i, a1r, a1i = zero, zero, zero, zero
            e0r, e0i, e1r, e1i = zero, zero, zero, zero
            for sp in range(NSPLIT):
                base = (sp * NC + c) * 4 * HM + hp
                xr, xi = _cload(DU, base, mask_n)
                a0r += xr
                a0i += xi
                xr, xi = _cload(DU, base + HM, mask_n)
                a1r += xr
                a1i += xi
                xr, xi = _cload(DU, base + 2 * HM, mask_n)
                d10r += xr
                d10i += xi
                xr, xi = _cload(DU, base + 3 * HM, mask_n)
                d11r += xr
                d11i += xi
                xr, xi = _cload(DY, base, mask_n)
                e0r += xr
                e0i += xi
                xr, xi = _cload(DY, base + HM, mask_n)
                e1r += xr
                e1i += xi
                xr, xi = _cload(DY, base + 2 * HM, mask_n)
                y10r += xr
                y10i += xi
                xr, xi = _cload(DY, base + 3 * HM, mask_n)
                y11r += xr
                y11i += xi
            # dC_c = s (conj(B) du00_c + conj(P) du01_c)
            dcr = s * (br * a0r + bi * a0i + pr * a1r + pi * a1i)
            dci = s * (br * a0i - bi * a0r + pr * a1i - pi * a1r)
            tl.store(D_C + 2 * (c * HM + hp), dcr, mask=mask_n)
            tl.store(D_C + 2 * (c * HM + hp) + 1, dci, mask=mask_n)
            cb0r += cr * a0r + ci * a0i
            cb0i += cr * a0i - ci * a0r
            cb1r += cr * a1r + ci * a1i
            cb1i += cr * a1i - ci * a1r
            # C B and C P (without s)
            qbr = cr * br - ci * bi
            qbi = cr * bi + ci * br
            qpr = cr * pr - ci * pi
            qpi = cr * pi + ci * pr
            wdr += qbr * e0r + qbi * e0i + qpr * e1r + qpi * e1i
            wdi += qbr * e0i - qbi * e0r + qpr * e1i - qpi * e1r
            dsr += qbr * a0r + qbi * a0i + qpr * a1r + qpi * a1i
        # P^* B and |P|^2 (without s)
        pbr = u10r / s
        pbi = u10i / s
        ppr = u11r / s
        # dB = s (sum_c conj(C) du00 + P du10)
        tl.store(D_B + 2 * hp, s * (cb0r + pr * d10r - pi * d10i), mask=mask_n)
        tl.store(D_B + 2 * hp + 1, s * (cb0i + pr * d10i + pi * d10r), mask=mask_n)
        # dP = s (sum_c conj(C) du01 + B conj(du10) + 2 P Re(du11))
        tl.store(D_P + 2 * hp, s * (cb1r + br * d10r + bi * d10i + 2.0 * pr * d11r), mask=mask_n)
        tl.store(D_P + 2 * hp + 1, s * (cb1i + bi * d10r - br * d10i + 2.0 * pi * d11r), mask=mask_n)
        # dw = s (sum_c ... + conj(P^* B) dy10 + |P|^2 dy11)
        dwr = s * (wdr + pbr * y10r + pbi * y10i + ppr * y11r)
        dwi = s * (wdi + pbr * y10i - pbi * y10r + ppr * y11i)
        tl.store(D_LAR + hp, -s * ear * dwr, mask=mask_n)
        tl.store(D_AI + hp, s * dwi, mask=mask_n)
        # ds = sum_n Re(conj(Lambda) dw) + Re(conj(u_p / s) du_p) over the four products
        ds_n = -ear * dwr + ai * dwi + dsr + pbr * d10r + pbi * d10i + ppr * d11r
        ds = tl.sum(tl.where(mask_n, ds_n, 0.0), axis=0)
        tl.store(D_LDT + h, ds * s)


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


_VAND_MAX_MODES = 64


def _vand_factored_blocks(N, L):
    bn = max(16, triton.next_power_of_2(N))
    bl = min(64 if bn <= 32 else 32, max(16, triton.next_power_of_2(L)))
    return bn, bl


def _vand_direct() -> bool:
    """Vandermonde kernel variant: ``direct`` (exp/sin/cos per term, the default: faster on the H100 at
    6 of 7 lengths in results/s4_bench_run4.json) or ``SEQLAB_S4_VAND=factored`` (exp(x l0) E[n, j]).
    Both are exact to rounding."""
    return os.environ.get("SEQLAB_S4_VAND", "direct") == "direct"


class _VandermondeFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v, x, L):
        v, x = v.contiguous(), x.contiguous()
        M, H, N = v.shape
        out = torch.empty(M, H, L, dtype=v.real.dtype, device=v.device)
        # the factored kernels keep all N modes in one tile; wide states (N > 64) use the direct ones
        ctx.direct = _vand_direct() or N > _VAND_MAX_MODES
        if ctx.direct:
            bn, bl = _blocks(N, L)
            _vand_fwd_direct_kernel[(M * H, triton.cdiv(L, bl))](
                torch.view_as_real(v), torch.view_as_real(x), out, H, N, L, BLOCK_N=bn, BLOCK_L=bl
            )
        else:
            bn, bl = _vand_factored_blocks(N, L)
            nchunk, chunk = _splits(M * H, L, bl)
            _vand_fwd_kernel[(M * H, nchunk)](
                torch.view_as_real(v), torch.view_as_real(x), out, H, N, L, chunk, BLOCK_N=bn, BLOCK_L=bl
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
        bn, bl = _blocks(N, L) if ctx.direct else _vand_factored_blocks(N, L)
        nsplit, chunk = _splits(M * H * triton.cdiv(N, bn), L, bl)
        t1 = torch.empty((nsplit, *v.shape), dtype=v.dtype, device=v.device)
        t2 = torch.empty_like(t1)
        grid = (M * H, triton.cdiv(N, bn), nsplit)
        (_vand_bwd_direct_kernel if ctx.direct else _vand_bwd_kernel)[grid](
            g, torch.view_as_real(x), torch.view_as_real(t1), torch.view_as_real(t2), H, N, L, M * H, chunk,
            BLOCK_N=bn, BLOCK_L=bl,
        )
        t1, t2 = t1.sum(0), t2.sum(0)
        # out = v e + conj(v e) with e = exp(x l): d/dv* gives 2 g conj(e); d/dx* gives 2 g l conj(v e).
        dv = 2 * t1 if ctx.needs_input_grad[0] else None
        dx = 2 * (v.conj() * t2).sum(0) if ctx.needs_input_grad[1] else None
        return dv, dx, None


_NPLR_MAX_MODES = 64  # the fused S4 kernel keeps all stored poles of one feature in one tile


_EPILOGUE = {"triton": True}  # set to False (with a warning) if the epilogue kernel ever fails to run


def _nplr_grad_epilogue_torch(log_a_real, a_imag, log_dt, b, p, c, du, dy):
    """PyTorch version of ``_nplr_grad_epilogue`` (the run-3 path): ~70 small ops instead of one launch."""
    du, dy = du.sum(0), dy.sum(0)  # (NC, 4, H, M)
    # chain rule to the parameters: u00 = s C B, u01 = s C P, u10 = s P^* B, u11 = s |P|^2, w = s Lambda
    s = 0.5 * torch.exp(log_dt)[:, None]
    B, P, C = torch.view_as_complex(b), torch.view_as_complex(p)[0], torch.view_as_complex(c)
    ea = torch.exp(log_a_real)
    Lam = torch.complex(-ea, a_imag)
    du00, du01 = du[:, 0], du[:, 1]
    du10, du11 = du[:, 2].sum(0), du[:, 3].sum(0)
    CB, CP = C * B, C * P
    PB, PP = P.conj() * B, (P.conj() * P).real
    dw = ((CB.conj() * dy[:, 0] + CP.conj() * dy[:, 1]).sum(0) + PB.conj() * dy[:, 2].sum(0)
          + PP * dy[:, 3].sum(0)) * s
    dC = s * (B.conj() * du00 + P.conj() * du01)
    dB = s * ((C.conj() * du00).sum(0) + P * du10)
    dP = s * ((C.conj() * du01).sum(0) + B * du10.conj() + 2 * P * du11.real)
    ds = ((Lam.conj() * dw).real + (CB.conj() * du00 + CP.conj() * du01).sum(0).real
          + (PB.conj() * du10).real + PP * du11.real).sum(-1)
    d_log_dt = ds * s[:, 0]
    d_lar = -(s * ea) * dw.real
    d_ai = s * dw.imag
    return d_lar, d_ai, d_log_dt, torch.view_as_real(dB), torch.view_as_real(dP)[None], torch.view_as_real(dC)


class _NPLRKernelFn(torch.autograd.Function):
    """Fused S4 (rank-1 NPLR, bilinear) kernel generation from the raw parameters.

    Forward: one Triton launch (discretisation, 4 Cauchy sums over both conjugate halves, Woodbury,
    rfft-node scaling, Nyquist limit) + the irfft. Backward: rfft of dK, one Triton launch (gradient of
    the Woodbury step and of the Cauchy sums, reduced over node chunks) and a few O(H N) ops for the
    chain rule to the parameters.
    """

    @staticmethod
    def forward(ctx, log_a_real, a_imag, log_dt, b, p, c, nodes, scale, L_, L):
        log_a_real, a_imag, log_dt = log_a_real.contiguous(), a_imag.contiguous(), log_dt.contiguous()
        b, p, c = b.contiguous(), p.contiguous(), c.contiguous()
        NC, H, M = c.shape[:3]
        LF = nodes.shape[0]
        khat = torch.empty(NC, H, LF, 2, dtype=log_dt.dtype, device=log_dt.device)
        bn = max(16, triton.next_power_of_2(M))
        bl = 32 if bn <= 32 else 16
        _nplr_fwd_kernel[(H, triton.cdiv(LF, bl))](
            log_a_real, a_imag, log_dt, b, p, c, torch.view_as_real(nodes), torch.view_as_real(scale), khat,
            H, M, LF, int(L_ % 2 == 0), NC, BLOCK_N=bn, BLOCK_L=bl, num_warps=4,
        )
        k = torch.fft.irfft(torch.view_as_complex(khat), n=L_)[..., :L]
        ctx.save_for_backward(log_a_real, a_imag, log_dt, b, p, c, nodes, scale)
        ctx.L_ = L_
        return k

    @staticmethod
    def backward(ctx, gk):
        log_a_real, a_imag, log_dt, b, p, c, nodes, scale = ctx.saved_tensors
        L_ = ctx.L_
        NC, H, M = c.shape[:3]
        LF = nodes.shape[0]
        g = torch.fft.rfft(gk.to(log_dt.dtype), n=L_).contiguous()
        bn = max(16, triton.next_power_of_2(M))
        bl = 16
        nsplit, chunk = _splits(NC * H, LF, bl)
        cdt = g.dtype
        du = torch.empty(nsplit, NC, 4, H, M, dtype=cdt, device=g.device)
        dy = torch.empty_like(du)
        _nplr_bwd_kernel[(H, NC, nsplit)](
            log_a_real, a_imag, log_dt, b, p, c, torch.view_as_real(nodes), torch.view_as_real(scale),
            torch.view_as_real(g), torch.view_as_real(du), torch.view_as_real(dy), H, M, LF,
            int(L_ % 2 == 0), NC, L_, chunk, BLOCK_N=bn, BLOCK_L=bl, num_warps=4,
        )
        params = (log_a_real, a_imag, log_dt, b, p, c)
        if _EPILOGUE["triton"]:
            outs = [torch.empty_like(t) for t in params]
            try:
                _nplr_grad_epilogue[(H,)](*params, torch.view_as_real(du), torch.view_as_real(dy), *outs,
                                          H, M, NC, nsplit, BLOCK_N=bn, num_warps=1)
                return (*outs, None, None, None, None)
            except Exception as exc:  # noqa: BLE001 - a compiler failure must not break training
                _EPILOGUE["triton"] = False
                warnings.warn(f"S4 gradient epilogue kernel failed ({type(exc).__name__}: {exc}); "
                              "using the PyTorch chain rule from now on", RuntimeWarning, stacklevel=2)
        return (*_nplr_grad_epilogue_torch(*params, du, dy), None, None, None, None)


def nplr_kernel(log_a_real, a_imag, log_dt, b, p, c, nodes, scale, L_: int, L: int) -> torch.Tensor:
    """Fused S4 kernel K (C, H, L) real from the raw parameters of a rank-1 bilinear NPLR layer.

    log_a_real, a_imag (H, M): Lambda = -exp(log_a_real) + i a_imag (stored half of the poles);
    log_dt (H,); b (H, M, 2), p (1, H, M, 2), c (C, H, M, 2): B, P, C~ as (re, im) pairs; nodes,
    scale (L_//2 + 1,) complex: the rfft-node constants of ``S4._nodes``. Equals
    ``irfft(khat, n=L_)[..., :L]`` of ``S4._nplr_khat``; differentiable in all parameters.
    """
    _require_triton(log_dt)
    if p.shape[0] != 1 or b.shape[1] > _NPLR_MAX_MODES:
        raise ValueError("nplr_kernel supports rank 1 and at most 64 stored modes")
    return _NPLRKernelFn.apply(log_a_real, a_imag, log_dt, b, p, c, nodes, scale, L_, L)


_DIAG_MAX_MODES = 64  # the fused S4D kernel keeps all modes of one feature in one tile

if HAS_TRITON:
    # tl.exp lowers to ex2.approx(x log2 e) on NVIDIA GPUs: relative error ~|x| 2^-24 * 1.44, i.e. ~20x a
    # correctly rounded exp for dt = exp(log_dt) ~ exp(-7), and the kernel's phase error grows with dt l.
    # The S4D kernels call exp only O((T + J) N) times per block, so they use libdevice's accurate expf.
    # (The interpreter has no libdevice; its tl.exp is numpy's exp, already accurate.)
    try:
        from triton.language.extra import libdevice as _libdevice
    except ImportError:  # pragma: no cover - older triton
        _libdevice = None
    _ACCURATE_EXP = tl.constexpr(_libdevice is not None and os.environ.get("TRITON_INTERPRET") != "1")

    @triton.jit
    def _exp(a):
        if _ACCURATE_EXP:
            out = _libdevice.exp(a)
        else:
            out = tl.exp(a)
        return out

    @triton.jit
    def _cmul(ar, ai, br, bi):
        return ar * br - ai * bi, ar * bi + ai * br

    @triton.jit
    def _cmulc(ar, ai, br, bi):
        # conj(a) * b
        return ar * br + ai * bi, ar * bi - ai * br

    @triton.jit
    def _cdiv(ar, ai, br, bi):
        d = br * br + bi * bi
        return (ar * br + ai * bi) / d, (ai * br - ar * bi) / d

    @triton.jit
    def _expm1(a):
        # exp(a) - 1 without cancellation near 0 (Kahan: (u - 1) a / log u)
        u = _exp(a)
        um1 = u - 1.0
        lu = tl.where(um1 == 0.0, 1.0, tl.log(u))
        small = tl.where(um1 == 0.0, a, um1 * a / lu)
        return tl.where(tl.abs(a) < 0.5, small, um1)

    @triton.jit
    def _log1p(a):
        # log(1 + a) without cancellation near 0 (Kahan: log(u) a / (u - 1))
        u = 1.0 + a
        um1 = u - 1.0
        return tl.where(um1 == 0.0, a, tl.log(u) * a / tl.where(um1 == 0.0, 1.0, um1))

    @triton.jit
    def _diag_params(LAR, AI, LDT, B, TH, h, M, BLOCK_N: tl.constexpr, ZOH: tl.constexpr):
        # S4D discretisation in registers for feature h: Lambda = -exp(log_A_real) + i A_imag, dt = exp(log_dt)
        #   zoh:      x = dt Lambda,                     Bbar = B f,  f = (exp(x) - 1) / Lambda
        #   bilinear: x = log((1 + z) / (1 - z)), z = dt Lambda / 2,  f = dt / (1 - z)
        # (bilinear Im x = arg((1 + z) / (1 - z)) comes precomputed in TH; masked lanes give f = 0 via B = 0)
        offs_n = tl.arange(0, BLOCK_N)
        mask_n = offs_n < M
        hp = h * M + offs_n
        dt = _exp(tl.load(LDT + h))
        lr = -_exp(tl.load(LAR + hp, mask=mask_n, other=0.0))
        li = tl.load(AI + hp, mask=mask_n, other=0.0)
        br = tl.load(B + 2 * hp, mask=mask_n, other=0.0)
        bi = tl.load(B + 2 * hp + 1, mask=mask_n, other=0.0)
        if ZOH:
            xr = dt * lr
            xi = dt * li
            sh = tl.sin(0.5 * xi)
            mr = _exp(xr)
            cx = tl.cos(xi)
            # exp(x) - 1 = expm1(xr) cos(xi) - 2 sin^2(xi / 2) + i exp(xr) sin(xi)
            er = _expm1(xr) * cx - 2.0 * sh * sh
            ei = mr * tl.sin(xi)
            fr, fi = _cdiv(er, ei, lr, li)
        else:
            zr = 0.5 * dt * lr
            zi = 0.5 * dt * li
            omr = 1.0 - zr
            dp = omr * omr + zi * zi
            # Re x = log|1 + z| - log|1 - z| = log1p(4 zr / |1 - z|^2) / 2
            xr = 0.5 * _log1p(4.0 * zr / dp)
            xi = tl.load(TH + hp, mask=mask_n, other=0.0)
            fr = dt * omr / dp
            fi = dt * zi / dp
        return offs_n, mask_n, hp, dt, lr, li, br, bi, xr, xi, fr, fi

    @triton.jit
    def _mm(a, b, USE_DOT: tl.constexpr):
        # a (P, K) @ b (K, Q) in the inputs' precision. float32: tl.dot with IEEE inputs (FMA, no tf32);
        # float64: tl.dot (fp64 MMA / FMA); otherwise a broadcast product summed over K.
        if USE_DOT:
            out = tl.dot(a, b, input_precision="ieee")
        else:
            out = tl.sum(a[:, :, None] * b[None, :, :], axis=1)
        return out

    @triton.jit
    def _zpow(fl, xr, xi):
        # z^l = exp(x l) for a column of positions fl (P,) and modes x (N,): (P, N) real, imag parts,
        # computed directly (not by repeated products) so the phase stays as accurate as x l itself
        mag = _exp(fl[:, None] * xr[None, :])
        ph = fl[:, None] * xi[None, :]
        return mag * tl.cos(ph), mag * tl.sin(ph)

    @triton.jit
    def _diag_fwd_kernel(LAR, AI, LDT, B, C, TH, OUT, H, M, L, NC, L_CHUNK, ZOH: tl.constexpr,
                         BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_J: tl.constexpr,
                         USE_DOT: tl.constexpr):
        # program (h, chunk of positions), all channels. A block of BLOCK_T * BLOCK_J positions is laid
        # out as l = l0 + t J + j (t < T, j < J); with z = exp(x), Ct = C Bbar:
        #   K[c, h, l] = 2 Re sum_n Ct_n z_n^(l0 + t J) z_n^j = (Ar @ Er - Ai @ Ei)[t, j]
        #   A[t, n] = 2 Ct_n z_n^(l0 + t J)  (T, N),  E[n, j] = z_n^j  (N, J, once per program)
        # so each (n, l) term costs 2 FMA; exp/sin/cos run only for (T + J) N entries per block.
        h = tl.program_id(0)
        offs_n, mask_n, hp, dt, lr, li, br, bi, xr, xi, fr, fi = _diag_params(
            LAR, AI, LDT, B, TH, h, M, BLOCK_N, ZOH)
        wr, wi = _cmul(br, bi, fr, fi)
        jj = tl.arange(0, BLOCK_J)
        etr, eti = _zpow(jj.to(xr.dtype), xr, xi)  # (J, N)
        er = tl.trans(etr)
        ei = tl.trans(eti)
        tt = tl.arange(0, BLOCK_T)
        l_start = tl.program_id(1) * L_CHUNK
        l_end = tl.minimum(l_start + L_CHUNK, L)
        HM = H * M
        for l0 in range(l_start, l_end, BLOCK_T * BLOCK_J):
            rows_l = l0 + tt * BLOCK_J
            zr, zi = _zpow(rows_l.to(xr.dtype), xr, xi)  # (T, N)
            offs = rows_l[:, None] + jj[None, :]
            mask = offs < l_end
            for c in range(NC):
                cr = tl.load(C + 2 * (c * HM + hp), mask=mask_n, other=0.0)
                ci = tl.load(C + 2 * (c * HM + hp) + 1, mask=mask_n, other=0.0)
                vr, vi = _cmul(cr, ci, wr, wi)
                vr = 2.0 * vr
                vi = 2.0 * vi
                ar = vr[None, :] * zr - vi[None, :] * zi
                ai = vr[None, :] * zi + vi[None, :] * zr
                out = _mm(ar, er, USE_DOT) - _mm(ai, ei, USE_DOT)
                tl.store(OUT + (c * H + h) * L + offs, out, mask=mask)

    @triton.jit
    def _diag_bwd_kernel(LAR, AI, LDT, B, TH, G, T1, T2, H, M, L, ROWS, L_CHUNK, ZOH: tl.constexpr,
                         BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_J: tl.constexpr,
                         USE_DOT: tl.constexpr):
        # program (row = c H + h, split): over one chunk of positions
        #   T1[split, row, n] = sum_l g_l conj(z_n^l),  T2[split, row, n] = sum_l g_l l conj(z_n^l)
        # (g real, so these are conj(S1), conj(S2) with S1 = sum_l g_l z^l, S2 = sum_l g_l l z^l). With the
        # forward's block layout l = l0 + t J + j, G[t, j] = g_l, E^T[j, n] = z_n^j, Z0[t, n] = z_n^(l0 + t J):
        #   S1 = sum_t Z0 (G @ E^T),   S2 = sum_t Z0 ((l G) @ E^T)
        # (only E^T is loop-invariant: keeping j E^T too made ptxas spill at these tile sizes)
        row = tl.program_id(0)
        split = tl.program_id(1)
        h = row % H
        offs_n, mask_n, hp, dt, lr, li, br, bi, xr, xi, fr, fi = _diag_params(
            LAR, AI, LDT, B, TH, h, M, BLOCK_N, ZOH)
        jj = tl.arange(0, BLOCK_J)
        etr, eti = _zpow(jj.to(xr.dtype), xr, xi)  # (J, N)
        tt = tl.arange(0, BLOCK_T)
        a1r = tl.zeros([BLOCK_T, BLOCK_N], dtype=xr.dtype)
        a1i = tl.zeros([BLOCK_T, BLOCK_N], dtype=xr.dtype)
        a2r = tl.zeros([BLOCK_T, BLOCK_N], dtype=xr.dtype)
        a2i = tl.zeros([BLOCK_T, BLOCK_N], dtype=xr.dtype)
        l_start = split * L_CHUNK
        l_end = tl.minimum(l_start + L_CHUNK, L)
        for l0 in range(l_start, l_end, BLOCK_T * BLOCK_J):
            rows_l = l0 + tt * BLOCK_J
            offs = rows_l[:, None] + jj[None, :]
            g = tl.load(G + row * L + offs, mask=offs < l_end, other=0.0)  # (T, J)
            gl = g * offs.to(xr.dtype)
            zr, zi = _zpow(rows_l.to(xr.dtype), xr, xi)  # (T, N)
            s1r, s1i = _cmul(zr, zi, _mm(g, etr, USE_DOT), _mm(g, eti, USE_DOT))
            a1r += s1r
            a1i += s1i
            s2r, s2i = _cmul(zr, zi, _mm(gl, etr, USE_DOT), _mm(gl, eti, USE_DOT))
            a2r += s2r
            a2i += s2i
        base = split * ROWS * M + row * M + offs_n
        tl.store(T1 + 2 * base, tl.sum(a1r, axis=0), mask=mask_n)
        tl.store(T1 + 2 * base + 1, -tl.sum(a1i, axis=0), mask=mask_n)
        tl.store(T2 + 2 * base, tl.sum(a2r, axis=0), mask=mask_n)
        tl.store(T2 + 2 * base + 1, -tl.sum(a2i, axis=0), mask=mask_n)

    @triton.jit
    def _diag_grad_epilogue(LAR, AI, LDT, B, C, TH, T1, T2, D_LAR, D_AI, D_LDT, D_B, D_C, H, M, NC, NSPLIT,
                            ZOH: tl.constexpr, BLOCK_N: tl.constexpr):
        # program h: sum the partials over position chunks, then the chain rule (PyTorch's conjugate
        # convention, holomorphic steps: grad_in = conj(d out / d in) grad_out):
        #   dv_c = 2 T1_c, dx = 2 sum_c conj(v_c) T2_c, dC_c = conj(W) dv_c, dW = sum_c conj(C_c) dv_c,
        #   dB = conj(f) dW, dLambda = conj(dx/dLambda) dx + conj(dW/dLambda) dW,
        #   d dt = sum_n Re(conj(dx/ddt) dx + conj(dW/ddt) dW).
        h = tl.program_id(0)
        offs_n, mask_n, hp, dt, lr, li, br, bi, xr, xi, fr, fi = _diag_params(
            LAR, AI, LDT, B, TH, h, M, BLOCK_N, ZOH)
        wr, wi = _cmul(br, bi, fr, fi)
        HM = H * M
        zero = xr * 0.0
        dwr, dwi, dxr, dxi = zero, zero, zero, zero
        for c in range(NC):
            cr = tl.load(C + 2 * (c * HM + hp), mask=mask_n, other=0.0)
            ci = tl.load(C + 2 * (c * HM + hp) + 1, mask=mask_n, other=0.0)
            t1r, t1i, t2r, t2i = zero, zero, zero, zero
            for sp in range(NSPLIT):
                base = (sp * NC + c) * HM + hp
                t1r += tl.load(T1 + 2 * base, mask=mask_n, other=0.0)
                t1i += tl.load(T1 + 2 * base + 1, mask=mask_n, other=0.0)
                t2r += tl.load(T2 + 2 * base, mask=mask_n, other=0.0)
                t2i += tl.load(T2 + 2 * base + 1, mask=mask_n, other=0.0)
            dvr = 2.0 * t1r
            dvi = 2.0 * t1i
            dcr, dci = _cmulc(wr, wi, dvr, dvi)
            tl.store(D_C + 2 * (c * HM + hp), dcr, mask=mask_n)
            tl.store(D_C + 2 * (c * HM + hp) + 1, dci, mask=mask_n)
            pr, pi = _cmulc(cr, ci, dvr, dvi)
            dwr += pr
            dwi += pi
            vr, vi = _cmul(cr, ci, wr, wi)
            qr, qi = _cmulc(vr, vi, t2r, t2i)
            dxr += 2.0 * qr
            dxi += 2.0 * qi
        dbr, dbi = _cmulc(fr, fi, dwr, dwi)
        tl.store(D_B + 2 * hp, dbr, mask=mask_n)
        tl.store(D_B + 2 * hp + 1, dbi, mask=mask_n)
        if ZOH:
            # dx/dLambda = dt, dx/ddt = Lambda; dW/dLambda = B (dt e^x - f) / Lambda, dW/ddt = B e^x
            mg = _exp(xr)
            exr = mg * tl.cos(xi)
            exi = mg * tl.sin(xi)
            kr, ki = _cdiv(dt * exr - fr, dt * exi - fi, lr, li)
            klr, kli = _cmul(br, bi, kr, ki)
            kdr, kdi = _cmul(br, bi, exr, exi)
            xlr = dt + zero
            xli = zero
            xdr = lr
            xdi = li
        else:
            # z = dt Lambda / 2: dx/dz = 2 / ((1 - z)(1 + z)); dW/dLambda = B dt^2 / (2 (1 - z)^2),
            # dW/ddt = B / (1 - z)^2
            zr = 0.5 * dt * lr
            zi = 0.5 * dt * li
            o2r, o2i = _cmul(1.0 - zr, -zi, 1.0 - zr, -zi)
            kdr, kdi = _cdiv(br, bi, o2r, o2i)
            klr = 0.5 * dt * dt * kdr
            kli = 0.5 * dt * dt * kdi
            pzr, pzi = _cmul(1.0 - zr, -zi, 1.0 + zr, zi)
            qr, qi = _cdiv(2.0 + zero, zero, pzr, pzi)
            xlr = 0.5 * dt * qr
            xli = 0.5 * dt * qi
            xdr, xdi = _cmul(qr, qi, 0.5 * lr, 0.5 * li)
        a1r, a1i = _cmulc(xlr, xli, dxr, dxi)
        a2r, a2i = _cmulc(klr, kli, dwr, dwi)
        dlr = a1r + a2r
        dli = a1i + a2i
        # Lambda = -exp(log_A_real) + i A_imag: d log_A_real = Re(dLambda) lr, d A_imag = Im(dLambda)
        tl.store(D_LAR + hp, lr * dlr, mask=mask_n)
        tl.store(D_AI + hp, dli, mask=mask_n)
        b1r, b1i = _cmulc(xdr, xdi, dxr, dxi)
        b2r, b2i = _cmulc(kdr, kdi, dwr, dwi)
        ddt = tl.sum(tl.where(mask_n, b1r + b2r, 0.0), axis=0)
        tl.store(D_LDT + h, ddt * dt)


def _diag_theta(log_a_real, a_imag, log_dt):
    """Bilinear Im x = arg((1 + z) / (1 - z)) = atan2(2 Im z, 1 - |z|^2), z = dt Lambda / 2 (no autograd)."""
    with torch.no_grad():
        hdt = 0.5 * torch.exp(log_dt)[:, None]
        zr, zi = -hdt * torch.exp(log_a_real), hdt * a_imag
        return torch.atan2(2 * zi, 1 - (zr * zr + zi * zi)).contiguous()


# Tile overrides for tests (e.g. {"BLOCK_T": 16, "BLOCK_J": 16} to get several blocks at small L).
_DIAG_TILES: dict = {}


def _diag_tiles(M, L, dtype, bwd=False):
    """(BLOCK_N, BLOCK_T, BLOCK_J, USE_DOT, num_warps): all modes in one tile, blocks of BLOCK_T * BLOCK_J
    positions.

    float32 runs the small products per block as FMA ``tl.dot`` (IEEE, no tf32). An FMA dot holds whole
    rows/columns of its operands in registers, so the sizes below are the largest that compiled without
    spills for sm_90 (ptxas -v of Triton 3.9's output): forward (T, N) @ (N, J) with J = 64 (32 for 64
    modes); backward (T, J) @ (J, N) with the reduction J = 16. float64 also uses ``tl.dot`` (fp64 MMA on
    sm_80+), 16 x 16 blocks: on the H100 (Triton 3.6) 1.19 ms fwd+bwd at H=256, L=16k, matching the naive
    float64 path to 6e-14, where the broadcast-sum form took 65 ms (register spills). Other dtypes use
    broadcast sums."""
    bn = max(16, triton.next_power_of_2(M))
    use_dot = dtype in (torch.float32, torch.float64)
    if dtype != torch.float32:
        t_max, bj, warps = 16, 16, 4
    elif bwd:
        t_max, bj, warps = 32, 16, 4 if bn <= 32 else 8
    else:
        t_max, bj, warps = (32, 64, 8) if bn <= 32 else (32, 32, 4)
    bt = min(t_max, max(16, triton.next_power_of_2(triton.cdiv(L, bj))))
    bt, bj = _DIAG_TILES.get("BLOCK_T", bt), _DIAG_TILES.get("BLOCK_J", bj)
    return bn, bt, bj, _DIAG_TILES.get("USE_DOT", use_dot), warps


class _DiagKernelFn(torch.autograd.Function):
    """Fused S4D kernel generation from the raw parameters (zoh or bilinear).

    Forward: one Triton launch (discretisation + blocked Vandermonde sum for all channels; bilinear adds
    the atan2 of the poles). Backward: one Triton launch for the position sums (split over L) and one for
    the chain rule to every raw parameter.
    """

    @staticmethod
    def forward(ctx, log_a_real, a_imag, log_dt, b, c, L, zoh):
        log_a_real, a_imag, log_dt = log_a_real.contiguous(), a_imag.contiguous(), log_dt.contiguous()
        b, c = b.contiguous(), c.contiguous()
        NC, H, M = c.shape[:3]
        th = a_imag if zoh else _diag_theta(log_a_real, a_imag, log_dt)
        out = torch.empty(NC, H, L, dtype=log_dt.dtype, device=log_dt.device)
        bn, bt, bj, use_dot, warps = _diag_tiles(M, L, log_dt.dtype)
        nchunk, chunk = _splits(H, L, bt * bj)
        _diag_fwd_kernel[(H, nchunk)](
            log_a_real, a_imag, log_dt, b, c, th, out, H, M, L, NC, chunk, ZOH=bool(zoh), BLOCK_N=bn,
            BLOCK_T=bt, BLOCK_J=bj, USE_DOT=use_dot, num_warps=warps,
        )
        ctx.save_for_backward(log_a_real, a_imag, log_dt, b, c, th)
        ctx.L, ctx.zoh = L, bool(zoh)
        return out

    @staticmethod
    def backward(ctx, gk):
        log_a_real, a_imag, log_dt, b, c, th = ctx.saved_tensors
        L, zoh = ctx.L, ctx.zoh
        NC, H, M = c.shape[:3]
        g = gk.contiguous().to(log_dt.dtype)
        bn, bt, bj, use_dot, warps = _diag_tiles(M, L, log_dt.dtype, bwd=True)
        nsplit, chunk = _splits(NC * H, L, bt * bj)
        t1 = torch.empty(nsplit, NC, H, M, 2, dtype=log_dt.dtype, device=log_dt.device)
        t2 = torch.empty_like(t1)
        _diag_bwd_kernel[(NC * H, nsplit)](
            log_a_real, a_imag, log_dt, b, th, g, t1, t2, H, M, L, NC * H, chunk, ZOH=zoh,
            BLOCK_N=bn, BLOCK_T=bt, BLOCK_J=bj, USE_DOT=use_dot, num_warps=warps,
        )
        outs = [torch.empty_like(t) for t in (log_a_real, a_imag, log_dt, b, c)]
        _diag_grad_epilogue[(H,)](
            log_a_real, a_imag, log_dt, b, c, th, t1, t2, *outs, H, M, NC, nsplit, ZOH=zoh, BLOCK_N=bn,
            num_warps=1,
        )
        return (*outs, None, None)


def diag_kernel(log_a_real, a_imag, log_dt, b, c, L: int, disc: str = "zoh") -> torch.Tensor:
    """Fused S4D kernel K (C, H, L) real from the raw parameters of a diagonal layer.

    log_a_real, a_imag (H, M): Lambda = -exp(log_a_real) + i a_imag; log_dt (H,); b (H, M, 2),
    c (C, H, M, 2): B and C as (re, im) pairs; ``disc`` 'zoh' or 'bilinear'. Equals
    ``vandermonde(C Bbar, x, L)`` with the discretisation of ``S4._diag_discrete``; differentiable in
    all parameters (M <= 64).
    """
    _require_triton(log_dt)
    if b.shape[1] > _DIAG_MAX_MODES:
        raise ValueError(f"diag_kernel supports at most {_DIAG_MAX_MODES} modes")
    if disc not in ("zoh", "bilinear"):
        raise ValueError(f"disc must be 'zoh' or 'bilinear', got {disc!r}")
    if isinstance(L, bool) or not isinstance(L, int) or L < 1:
        raise ValueError(f"L must be a positive int, got {L!r}")
    return _DiagKernelFn.apply(log_a_real, a_imag, log_dt, b, c, L, disc == "zoh")


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
