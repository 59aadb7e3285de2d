"""Fused recurrent step of a default :class:`~seqlab.ssm.blocks.S4Block`: two Triton launches per block.

The unfused step runs ~8 small kernels per block and token (LayerNorm, the S4 recurrence step, GELU,
the GLU output Linear, GLU, residual add, ...); at batch 1 every one of them is pure launch latency. Here

* kernel A, one program per (batch row, block of features): LayerNorm of x_t (full-row statistics
  recomputed per program: H loads), the S4 step (rank-1 DPLR or diagonal, the same cache tensors and
  math as ``kernels._step_kernel``) with the D skip, then exact (erf) GELU; writes z (B, C*H) and the
  next state (B, H, M);
* kernel B, one program per (block of outputs, batch row): the output Linear (C*H -> 2H) as a
  broadcast-multiply-reduce with an accumulator in the input dtype (no tf32 dots), GLU and the residual.

Used by ``S4Block.step`` for prenorm + GELU + no FFN blocks whose S4 layer takes the fused step
(``cache['fused']``), without autograd; ``SEQLAB_S4_BLOCK_FUSED=0`` disables it. Inference only.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from .kernels import HAS_TRITON

if HAS_TRITON:
    import triton
    import triton.language as tl

__all__ = ["block_step", "block_step_applicable"]

_DTYPES = (torch.float32, torch.float64)


if HAS_TRITON:

    @triton.jit
    def _block_a_kernel(X, LNW, LNB, S, A1, A2, A3, A4, CORE, CM, DM, SOUT, Z, H, M, NC, eps,
                        DPLR: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_M: tl.constexpr,
                        BLOCK_F: tl.constexpr):
        b = tl.program_id(0)
        hb = tl.program_id(1)
        # LayerNorm statistics over the full row (biased variance, as nn.LayerNorm)
        offs_f = tl.arange(0, BLOCK_F)
        mask_f = offs_f < H
        xf = tl.load(X + b * H + offs_f, mask=mask_f, other=0.0)
        mean = tl.sum(xf, axis=0) / H
        xc = tl.where(mask_f, xf - mean, 0.0)
        var = tl.sum(xc * xc, axis=0) / H
        rstd = 1.0 / tl.sqrt(var + eps)
        offs_h = hb * BLOCK_H + tl.arange(0, BLOCK_H)
        mask_h = offs_h < H
        x = tl.load(X + b * H + offs_h, mask=mask_h, other=0.0)
        lw = tl.load(LNW + offs_h, mask=mask_h, other=0.0)
        lb = tl.load(LNB + offs_h, mask=mask_h, other=0.0)
        u = (x - mean) * rstd * lw + lb  # (BLOCK_H,)
        u2 = u[:, None]
        # S4 step, as kernels._step_kernel but for a (BLOCK_H, BLOCK_M) tile
        offs_m = tl.arange(0, BLOCK_M)
        mask = mask_h[:, None] & (offs_m < M)[None, :]
        hm = offs_h[:, None] * M + offs_m[None, :]
        hp = 2 * hm
        sp = 2 * (b * H * M + hm)
        sr = tl.load(S + sp, mask=mask, other=0.0)
        si = tl.load(S + sp + 1, mask=mask, other=0.0)
        a1r = tl.load(A1 + hp, mask=mask, other=0.0)
        a1i = tl.load(A1 + hp + 1, mask=mask, other=0.0)
        a2r = tl.load(A2 + hp, mask=mask, other=0.0)
        a2i = tl.load(A2 + hp + 1, mask=mask, other=0.0)
        if DPLR:
            pr = tl.load(A4 + hp, mask=mask, other=0.0)
            pi = tl.load(A4 + hp + 1, mask=mask, other=0.0)
            ir = tl.load(A3 + hp, mask=mask, other=0.0)
            ii = tl.load(A3 + hp + 1, mask=mask, other=0.0)
            core = tl.load(CORE + offs_h, mask=mask_h, other=0.0)[:, None]
            half_dt = tl.load(CORE + H + offs_h, mask=mask_h, other=0.0)[:, None]
            q = 2.0 * tl.sum(pr * sr + pi * si, axis=1)[:, None] * half_dt  # dt/2 * 2 Re(P^* s)
            y1r = sr + (a1r * sr - a1i * si) - pr * q + a2r * u2
            y1i = si + (a1r * si + a1i * sr) - pi * q + a2i * u2
            tr = y1r * ir - y1i * ii
            ti = y1r * ii + y1i * ir
            q2 = 2.0 * tl.sum(pr * tr + pi * ti, axis=1)[:, None]
            pdr = pr * ir - pi * ii
            pdi = pr * ii + pi * ir
            nr = tr - pdr * core * q2
            ni = ti - pdi * core * q2
        else:
            nr = a1r * sr - a1i * si + a2r * u2
            ni = a1r * si + a1i * sr + a2i * u2
        nr = tl.where(mask, nr, 0.0)
        ni = tl.where(mask, ni, 0.0)
        tl.store(SOUT + sp, nr, mask=mask)
        tl.store(SOUT + sp + 1, ni, mask=mask)
        for c in range(NC):
            cp = 2 * (c * H * M + hm)
            cr = tl.load(CM + cp, mask=mask, other=0.0)
            ci = tl.load(CM + cp + 1, mask=mask, other=0.0)
            d = tl.load(DM + c * H + offs_h, mask=mask_h, other=0.0)
            y = 2.0 * tl.sum(cr * nr - ci * ni, axis=1) + d * u
            z = 0.5 * y * (1.0 + tl.math.erf(y * 0.7071067811865476))  # exact GELU
            tl.store(Z + (b * NC + c) * H + offs_h, z, mask=mask_h)

    @triton.jit
    def _block_b_kernel(Z, W, BIAS, X, Y, H, K, BLOCK_J: tl.constexpr, BLOCK_K: tl.constexpr):
        # y[b, j] = x[b, j] + (W[j] . z[b] + bias[j]) * sigmoid(W[H + j] . z[b] + bias[H + j])
        jb = tl.program_id(0)
        b = tl.program_id(1)
        offs_j = jb * BLOCK_J + tl.arange(0, BLOCK_J)
        mask_j = offs_j < H
        acc_a = tl.zeros([BLOCK_J, BLOCK_K], dtype=Z.dtype.element_ty)
        acc_g = tl.zeros([BLOCK_J, BLOCK_K], dtype=Z.dtype.element_ty)
        for k0 in range(0, K, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            mask_k = offs_k < K
            z = tl.load(Z + b * K + offs_k, mask=mask_k, other=0.0)[None, :]
            m2 = mask_j[:, None] & mask_k[None, :]
            wp = offs_j[:, None] * K + offs_k[None, :]
            acc_a += tl.load(W + wp, mask=m2, other=0.0) * z
            acc_g += tl.load(W + H * K + wp, mask=m2, other=0.0) * z
        a = tl.sum(acc_a, axis=1) + tl.load(BIAS + offs_j, mask=mask_j, other=0.0)
        g = tl.sum(acc_g, axis=1) + tl.load(BIAS + H + offs_j, mask=mask_j, other=0.0)
        x = tl.load(X + b * H + offs_j, mask=mask_j, other=0.0)
        tl.store(Y + b * H + offs_j, x + a / (1.0 + tl.exp(-g)), mask=mask_j)


def block_step_applicable(block) -> bool:
    """Static part of the test: the block's configuration is the default one the fused step implements."""
    if not HAS_TRITON or os.environ.get("SEQLAB_S4_BLOCK_FUSED", "1") == "0":
        return False
    lin = block.out[0]
    norm = block.norm
    return (block.prenorm and block.ff is None and type(block.act) is nn.GELU
            and block.act.approximate == "none" and lin.bias is not None
            and norm.weight is not None and norm.bias is not None
            and tuple(norm.normalized_shape) == (block.layer.d_model,)
            and not block.layer.bidirectional)


def block_step(block, x_t: torch.Tensor, state: torch.Tensor):
    """Fused ``S4Block.step`` or None when the fused path does not apply (the caller then falls back)."""
    if torch.is_grad_enabled() or not block_step_applicable(block):
        return None
    layer = block.layer
    if not isinstance(x_t, torch.Tensor) or x_t.dim() != 2 or x_t.shape[1] != layer.d_model:
        return None  # the unfused path raises the usual error
    if not isinstance(state, torch.Tensor) or not state.is_complex():
        return None
    layer._check_state(state, x_t.shape[0])
    lin, norm = block.out[0], block.norm
    dt = state.real.dtype
    if (x_t.dtype != dt or dt not in _DTYPES or norm.weight.dtype != dt or lin.weight.dtype != dt
            or x_t.device != state.device):
        return None
    if layer._step_cache is None or layer._step_cache["C"].dtype != state.dtype:
        layer.setup_step()
    c = layer._step_cache
    if not c["fused"]:
        return None
    Bsz, H, M = state.shape
    NC = c["C"].shape[0]
    state = state.contiguous()
    x_t = x_t.contiguous()
    rv = lambda t: torch.view_as_real(t.contiguous())  # noqa: E731 - flat (re, im) pairs
    if c["dplr"]:
        args = (rv(c["k_a1"]), rv(c["k_a2"]), rv(c["k_inv_d"]), rv(c["k_P"]), c["k_core"])
    else:
        args = (rv(c["Abar"]), rv(c["Bbar"]), rv(c["Abar"]), rv(c["Abar"]), c["D"])
    new = torch.empty_like(state)
    z = torch.empty(Bsz, NC * H, dtype=dt, device=x_t.device)
    block_m = max(16, triton.next_power_of_2(M))
    block_h = max(1, min(triton.next_power_of_2(H), 512 // block_m))
    _block_a_kernel[(Bsz, triton.cdiv(H, block_h))](
        x_t, norm.weight, norm.bias, rv(state), *args, rv(c["C"]), c["D"], rv(new), z, H, M, NC,
        float(norm.eps), DPLR=bool(c["dplr"]), BLOCK_H=block_h, BLOCK_M=block_m,
        BLOCK_F=triton.next_power_of_2(H),
    )
    y = torch.empty_like(x_t)
    K = NC * H
    block_j = 4
    block_k = min(128, max(16, triton.next_power_of_2(K)))
    w = lin.weight if lin.weight.is_contiguous() else lin.weight.contiguous()
    _block_b_kernel[(triton.cdiv(H, block_j), Bsz)](z, w, lin.bias, x_t, y, H, K, BLOCK_J=block_j, BLOCK_K=block_k)
    return y, new
