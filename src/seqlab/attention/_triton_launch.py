"""Host-side launchers for the Triton attention kernels: tile configs, strides, grids, and the choice of
kernel family (TMA-descriptor kernels for the common case on Hopper, wide-head kernels above head dim 128,
the general pointer kernels otherwise).

All functions take either the padded layout (``cu_q is None``): q (B, Nq, H, D), k/v (B, Nk, Hk, D),
log-sum-exp (B, H, Nq); or the varlen layout: q (total_q, H, D), k/v (total_k, Hk, D), int32
``cu_q``/``cu_k`` (B + 1,), log-sum-exp (H, total_q).
"""

from __future__ import annotations

import os

import torch

from ..utils.intmath import cdiv, next_power_of_2
from . import _gluon_fwd, _triton_bwd_tma, _triton_fwd_tma
from . import _triton_kernels as kern
from ._configs import get_config
from ._fast_launch import launch

# Tests may shrink tiles so that small shapes still cover several blocks and ragged edges.
_INTERPRET_BLOCKS = (32, 32)
# With a right window (causal), launch query blocks in reverse order, the heaviest first
# (benchmarks flip this to compare both orders in one run).
REVERSE_CAUSAL = True


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _block_d(headdim: int) -> int:
    return max(16, next_power_of_2(headdim))


def _cfg(kernel: str, q: torch.Tensor, masked: bool, seqlen: int) -> dict:
    if interpreting():
        bm, bn = _INTERPRET_BLOCKS
        return dict(BLOCK_M=bm, BLOCK_N=bn, num_warps=4, num_stages=1)
    return get_config(kernel, q.shape[-1], q.dtype, masked, seqlen, q.device)


def _rowmajor(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _strides3(t: torch.Tensor, varlen: bool) -> tuple[int, int, int]:
    """(batch, token, head) strides; the varlen layout has no batch stride."""
    if varlen:
        return 0, t.stride(0), t.stride(1)
    return t.stride(0), t.stride(1), t.stride(2)


def _flags(q, seqlen_k, cfg_n, wl, wr, alibi, dropout_p, varlen):
    return dict(
        IS_VARLEN=varlen,
        HAS_LEFT=wl >= 0,
        HAS_RIGHT=wr >= 0,
        HAS_ALIBI=alibi is not None,
        HAS_DROPOUT=dropout_p > 0.0,
        MASK_N=varlen or (seqlen_k % cfg_n != 0),
        UPCAST=interpreting() and q.dtype != torch.float32,
        DOT_PREC="ieee" if q.dtype == torch.float32 else "tf32",
        REV_M=REVERSE_CAUSAL and wr >= 0,
    )


def _dims(q, k, cu_q, max_q, max_k):
    varlen = cu_q is not None
    if varlen:
        return varlen, cu_q.numel() - 1, q.shape[1], k.shape[1], q.shape[-1], max_q, max_k
    return varlen, q.shape[0], q.shape[2], k.shape[2], q.shape[-1], q.shape[1], k.shape[1]


def triton_fwd(q, k, v, cu_q, cu_k, max_q, max_k, scale, wl, wr, alibi, dropout_p, seed, return_probs):
    """Returns out (q's shape and dtype), lse (fp32), probs ((B, H, max_q, max_k) fp32 or empty)."""
    # (the TMA forward folds the scale into its running max, which needs scale > 0)
    if scale > 0.0 and _triton_fwd_tma.usable(q, k, v, cu_q, wl, wr, alibi, dropout_p, return_probs, interpreting()):
        out = None
        if _gluon_fwd.usable(q, k, v, wr == 0, interpreting()):  # warp-specialised Hopper kernel (Gluon), same outputs
            try:
                out, lse = _gluon_fwd.gluon_fwd(q, k, v, scale, wr == 0)
            except Exception as err:  # compile/launch failure (Gluon is experimental): warn once, fall back
                _gluon_fwd.disable(err)
        if out is None:
            out, lse = _triton_fwd_tma.tma_fwd(q, k, v, scale, wr == 0, interpreting())
        return out, lse, lse.new_empty(0)
    if q.shape[-1] > 128:  # wide heads: kernels of _triton_wide (not on the debug path returning probs)
        from . import _triton_wide

        if _triton_wide.applies(q, return_probs):
            return _triton_wide.wide_fwd(q, k, v, cu_q, cu_k, max_q, max_k, scale, wl, wr, alibi, dropout_p, seed)
    q, k, v = _rowmajor(q), _rowmajor(k), _rowmajor(v)
    varlen, batch, nheads, nheads_k, d, seqlen_q, seqlen_k = _dims(q, k, cu_q, max_q, max_k)
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    if varlen:
        lse = torch.empty(nheads, q.shape[0], dtype=torch.float32, device=q.device)
        slb, slh = 0, lse.stride(0)
    else:
        lse = torch.empty(batch, nheads, seqlen_q, dtype=torch.float32, device=q.device)
        slb, slh = lse.stride(0), lse.stride(1)
    if return_probs:
        probs = torch.zeros(batch, nheads, seqlen_q, seqlen_k, dtype=torch.float32, device=q.device)
        spb, sph, spm = probs.stride(0), probs.stride(1), probs.stride(2)
    else:
        probs = torch.empty(0, dtype=torch.float32, device=q.device)
        spb = sph = spm = 0
    if out.numel() == 0 or seqlen_q == 0:
        return out, lse.fill_(float("-inf")), probs
    masked = wl >= 0 or wr >= 0
    cfg = _cfg("fwd", q, masked, max(seqlen_q, seqlen_k))
    bm, bn = cfg.pop("BLOCK_M"), cfg.pop("BLOCK_N")
    dummy = lse
    grid = (cdiv(seqlen_q, bm), batch, nheads)
    args = (
        q, k, v, out, lse, probs, seed if seed is not None else dummy,
        alibi if alibi is not None else dummy,
        cu_q if varlen else dummy, cu_k if varlen else dummy,
        *_strides3(q, varlen), *_strides3(k, varlen), *_strides3(v, varlen), *_strides3(out, varlen),
        slb, slh, spb, sph, spm,
        alibi.stride(0) if alibi is not None and alibi.shape[0] > 1 else 0,
        nheads, nheads // nheads_k, seqlen_q, seqlen_k,
        scale * kern.LOG2E, dropout_p, wl, wr,
    )
    consts = dict(HEAD_DIM=d, BLOCK_D=_block_d(d), BLOCK_M=bm, BLOCK_N=bn, RETURN_P=return_probs,
                  **_flags(q, seqlen_k, bn, wl, wr, alibi, dropout_p, varlen), **cfg)
    launch(kern._attn_fwd, grid, args, consts, q.get_device())
    return out, lse, probs


def triton_bwd(dout, q, k, v, out, lse, cu_q, cu_k, max_q, max_k, scale, wl, wr, alibi, dropout_p, seed):
    """Returns dq, dk, dv with the shapes and dtypes of q, k, v."""
    if _triton_bwd_tma.usable(dout, q, k, v, out, cu_q, wl, wr, alibi, dropout_p, interpreting()):
        return _triton_bwd_tma.tma_bwd(dout, q, k, v, out, lse, scale, wr == 0, interpreting())
    if q.shape[-1] > 128:  # wide heads: split dK / dV programs of _triton_wide
        from . import _triton_wide

        if _triton_wide.applies(q):
            return _triton_wide.wide_bwd(dout, q, k, v, out, lse, cu_q, cu_k, max_q, max_k, scale, wl, wr, alibi,
                                         dropout_p, seed)
    q, k, v, dout, out = (_rowmajor(t) for t in (q, k, v, dout, out))
    varlen, batch, nheads, nheads_k, d, seqlen_q, seqlen_k = _dims(q, k, cu_q, max_q, max_k)
    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    dk = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    if q.numel() == 0 or k.numel() == 0:
        return dq.zero_(), dk.zero_(), dv.zero_()
    # delta_i = rowsum(dO_i * O_i), in the log-sum-exp layout; written by the dQ kernel, read by dK/dV.
    lse = lse.contiguous()
    delta = torch.empty(lse.shape, dtype=torch.float32, device=q.device)
    slb, slh = (0, delta.stride(0)) if varlen else (delta.stride(0), delta.stride(1))
    masked = wl >= 0 or wr >= 0
    cfg_kv = _cfg("dkdv", q, masked, max(seqlen_q, seqlen_k))
    cfg_q = _cfg("dq", q, masked, max(seqlen_q, seqlen_k))
    dummy = delta
    common = (seed if seed is not None else dummy, alibi if alibi is not None else dummy,
              cu_q if varlen else dummy, cu_k if varlen else dummy)
    strides_in = (*_strides3(q, varlen), *_strides3(k, varlen), *_strides3(v, varlen), *_strides3(dout, varlen))
    sab = alibi.stride(0) if alibi is not None and alibi.shape[0] > 1 else 0
    scalars = (nheads, nheads // nheads_k, seqlen_q, seqlen_k, scale * kern.LOG2E, scale, dropout_p, wl, wr)

    dev = q.get_device()
    bm, bn = cfg_q.pop("BLOCK_M"), cfg_q.pop("BLOCK_N")
    launch(kern._attn_bwd_dq, (cdiv(seqlen_q, bm), batch, nheads),
           (q, k, v, dout, lse, delta, dq, *common, out,
            *strides_in, *_strides3(dq, varlen), *_strides3(out, varlen), slb, slh, sab, *scalars),
           dict(HEAD_DIM=d, BLOCK_D=_block_d(d), BLOCK_M=bm, BLOCK_N=bn,
                **_flags(q, seqlen_k, bn, wl, wr, alibi, dropout_p, varlen), **cfg_q), dev)
    bm, bn = cfg_kv.pop("BLOCK_M"), cfg_kv.pop("BLOCK_N")
    launch(kern._attn_bwd_dkdv, (cdiv(seqlen_k, bn), batch, nheads_k),
           (q, k, v, dout, lse, delta, dk, dv, *common,
            *strides_in, *_strides3(dk, varlen), *_strides3(dv, varlen), slb, slh, sab, *scalars),
           dict(HEAD_DIM=d, BLOCK_D=_block_d(d), BLOCK_M=bm, BLOCK_N=bn,
                **_flags(q, seqlen_k, bn, wl, wr, alibi, dropout_p, varlen), **cfg_kv), dev)
    return dq, dk, dv
