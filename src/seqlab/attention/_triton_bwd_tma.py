"""Backward kernels that load their tiles through TMA tensor descriptors (Hopper and newer).

The same scope as the TMA forward (``_triton_fwd_tma.usable``: padded layout, fp16/bf16, head dim 64/128,
full or causal attention, GQA/MQA, no dropout/ALiBi) and the same algorithm as the pointer kernels of
``_triton_kernels``: a dQ kernel (one program per query block; computes delta = rowsum(dO * O) and stores it)
followed by a dK/dV kernel (one program per key block and KV head, looping over the heads of its group and
the query blocks that see it; deterministic, no atomics).

Rows past a sequence's end come back from the copy engine as zeros and are clipped on stores, so the dK/dV
kernel needs no length mask: a zero key row only feeds its own, discarded dK/dV row, and query rows past the end
read log-sum-exp +inf, so their probabilities are 0. The dQ kernel masks keys past the end in its last block.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ..utils.intmath import cdiv
from . import _triton_fwd_tma
from . import _triton_kernels as kern
from ._configs import get_config
from ._fast_launch import launch_tma
from ._triton_fwd_tma import _desc, _key_range, _load_pair

# SEQLAB_ATTN_TMA=0 turns both TMA paths off; SEQLAB_ATTN_TMA_BWD=0 only this one (benchmarks flip ENABLED).
ENABLED = os.environ.get("SEQLAB_ATTN_TMA_BWD", "1") != "0"


@triton.jit
def _load_stats(LSE, DELTA, base, offs_m, seqlen_q):
    m_ok = offs_m < seqlen_q
    lse = tl.load(LSE + base + offs_m, mask=m_ok, other=float("inf"))
    lse = tl.where(lse == float("-inf"), float("inf"), lse) * 1.4426950408889634
    delta = tl.load(DELTA + base + offs_m, mask=m_ok, other=0.0)
    return lse, delta


@triton.jit
def _dq_tile(dq, q, do, lse, delta, k, v, qk_scale):
    s = tl.dot(q, tl.trans(k)) * qk_scale
    p = tl.math.exp2(s - lse[:, None])
    dp = tl.dot(do, tl.trans(v))
    ds = p * (dp - delta[:, None])
    return dq + tl.dot(ds.to(k.dtype), k)


@triton.jit
def _attn_bwd_dq_tma(
    desc_q, desc_k, desc_v, desc_do, desc_o, desc_dq, LSE, DELTA,
    stride_lb, stride_lh, group, seqlen_q, seqlen_k, qk_scale, sm_scale,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
    MASK_N: tl.constexpr, UPCAST: tl.constexpr,
):
    pid_m = tl.program_id(0)
    if CAUSAL:  # heaviest query blocks first
        pid_m = tl.num_programs(0) - 1 - pid_m
    b = tl.program_id(1)
    h = tl.program_id(2)
    hk = h // group
    m0 = pid_m * BLOCK_M
    diag = seqlen_k - seqlen_q
    col = h * HEAD_DIM
    q, do = _load_pair(desc_q, desc_do, b, m0, col, BLOCK_M, HEAD_DIM, UPCAST)
    o = desc_o.load([b, m0, col]).reshape(BLOCK_M, HEAD_DIM)
    offs_m = m0 + tl.arange(0, BLOCK_M)
    stats = b.to(tl.int64) * stride_lb + h * stride_lh
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), axis=1)
    tl.store(DELTA + stats + offs_m, delta, mask=offs_m < seqlen_q)
    lse = tl.load(LSE + stats + offs_m, mask=offs_m < seqlen_q, other=float("inf"))
    lse = tl.where(lse == float("-inf"), float("inf"), lse) * 1.4426950408889634
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    # Keys [full_hi, hi) get the causal and length masks (a zero-filled key row would add nothing to dQ, but
    # its probability exp2(-lse) can overflow for rows with very negative scores).
    full_hi, hi = _key_range(m0, seqlen_k, diag, BLOCK_M, BLOCK_N, CAUSAL, MASK_N)
    kcol = hk * HEAD_DIM
    for start_n in range(0, full_hi, BLOCK_N):
        k, v = _load_pair(desc_k, desc_v, b, start_n, kcol, BLOCK_N, HEAD_DIM, UPCAST)
        dq = _dq_tile(dq, q, do, lse, delta, k, v, qk_scale)
    if CAUSAL or MASK_N:
        offs_n0 = tl.arange(0, BLOCK_N)
        for start_n in range(full_hi, hi, BLOCK_N):
            k, v = _load_pair(desc_k, desc_v, b, start_n, kcol, BLOCK_N, HEAD_DIM, UPCAST)
            s = tl.dot(q, tl.trans(k)) * qk_scale
            offs_n = start_n + offs_n0
            keep = (offs_n < seqlen_k)[None, :]
            if CAUSAL:
                keep = keep & (offs_n[None, :] <= offs_m[:, None] + diag)
            s = tl.where(keep, s, float("-inf"))
            p = tl.math.exp2(s - lse[:, None])
            dp = tl.dot(do, tl.trans(v))
            ds = p * (dp - delta[:, None])
            dq += tl.dot(ds.to(k.dtype), k)
    dq = dq * sm_scale
    desc_dq.store([b, m0, col], dq.to(desc_dq.dtype).reshape(1, BLOCK_M, HEAD_DIM))


@triton.jit
def _dkdv_tile(dk, dv, k, v, q, do, lse, delta, offs_m, offs_n, diag, qk_scale, MASK: tl.constexpr):
    # Transposed form: scores as (keys, queries), so no register tile is transposed before a dot.
    s_t = tl.dot(k, tl.trans(q)) * qk_scale
    if MASK:
        s_t = tl.where(offs_n[:, None] <= offs_m[None, :] + diag, s_t, float("-inf"))
    p_t = tl.math.exp2(s_t - lse[None, :])
    dp_t = tl.dot(v, tl.trans(do))
    dv += tl.dot(p_t.to(do.dtype), do)
    ds_t = p_t * (dp_t - delta[None, :])
    dk += tl.dot(ds_t.to(q.dtype), q)
    return dk, dv


@triton.jit
def _attn_bwd_dkdv_tma(
    desc_q, desc_k, desc_v, desc_do, desc_dk, desc_dv, LSE, DELTA,
    stride_lb, stride_lh, group, seqlen_q, seqlen_k, qk_scale, sm_scale,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
    UPCAST: tl.constexpr,
):
    pid_n = tl.program_id(0)
    b = tl.program_id(1)
    hk = tl.program_id(2)
    n0 = pid_n * BLOCK_N
    diag = seqlen_k - seqlen_q
    kcol = hk * HEAD_DIM
    k, v = _load_pair(desc_k, desc_v, b, n0, kcol, BLOCK_N, HEAD_DIM, UPCAST)
    offs_n = n0 + tl.arange(0, BLOCK_N)
    offs_m0 = tl.arange(0, BLOCK_M)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    # Query rows that see this key block: i >= j - diag (causal). Blocks in [full_lo, m_hi) see all of it.
    m_hi = tl.cdiv(seqlen_q, BLOCK_M) * BLOCK_M
    m_lo = 0
    full_lo = 0
    if CAUSAL:
        m_lo = tl.minimum((tl.maximum(n0 - diag, 0) // BLOCK_M) * BLOCK_M, m_hi)
        full_lo = tl.minimum(tl.maximum(tl.cdiv(n0 + BLOCK_N - 1 - diag, BLOCK_M) * BLOCK_M, m_lo), m_hi)
    b64 = b.to(tl.int64)
    for g in range(0, group):
        h = hk * group + g
        col = h * HEAD_DIM
        stats = b64 * stride_lb + h * stride_lh
        for start_m in range(m_lo, full_lo, BLOCK_M):
            q, do = _load_pair(desc_q, desc_do, b, start_m, col, BLOCK_M, HEAD_DIM, UPCAST)
            offs_m = start_m + offs_m0
            lse, delta = _load_stats(LSE, DELTA, stats, offs_m, seqlen_q)
            dk, dv = _dkdv_tile(dk, dv, k, v, q, do, lse, delta, offs_m, offs_n, diag, qk_scale, True)
        for start_m in range(full_lo, m_hi, BLOCK_M):
            q, do = _load_pair(desc_q, desc_do, b, start_m, col, BLOCK_M, HEAD_DIM, UPCAST)
            offs_m = start_m + offs_m0
            lse, delta = _load_stats(LSE, DELTA, stats, offs_m, seqlen_q)
            dk, dv = _dkdv_tile(dk, dv, k, v, q, do, lse, delta, offs_m, offs_n, diag, qk_scale, False)
    dk = dk * sm_scale
    desc_dk.store([b, n0, kcol], dk.to(desc_dk.dtype).reshape(1, BLOCK_N, HEAD_DIM))
    desc_dv.store([b, n0, kcol], dv.to(desc_dv.dtype).reshape(1, BLOCK_N, HEAD_DIM))


def usable(dout, q, k, v, out, cu_q, wl, wr, alibi, dropout_p, interpreting: bool) -> bool:
    """Whether a backward call takes these kernels: the TMA forward's scope (``_triton_fwd_tma.usable``) for
    q/k/v and for dout/out, where ``preferred`` says the H100 measured it faster."""
    # head dim 256 takes the TMA forward but the wide-head backward (its tiles would not fit these kernels)
    return (ENABLED and q.shape[-1] <= 128
            and _triton_fwd_tma.usable(q, k, v, cu_q, wl, wr, alibi, dropout_p, False, interpreting)
            and preferred(q, k, wr == 0, interpreting)
            and _triton_fwd_tma._desc_ok(dout) and _triton_fwd_tma._desc_ok(out))


def preferred(q, k, causal: bool, interpreting: bool) -> bool:
    """Whether to take the TMA backward for a call in its scope. From H100 A/B runs (one run each, about +-5%
    noise per cell). ``results/attention_tma_ab.json`` (commit 45c9371): every non-causal case gained 5-17%,
    causal head dim 64 from seqlen 1k gained 1-11%. ``results/attention_probe_v5.json`` (commit 35ba982, both
    backwards with the shipped tiles, interleaved): causal head dim 128 at seqlen 512/1k/2k +8/+10/+7%, at
    4k-16k 0.91-0.98x (no TMA-only tile choice won clearly: 0.98-1.05x); causal head dim 64 at 512 0.99x. So
    causal head dim 128 takes it up to seqlen 2048, causal head dim 64 above 512. The interpreter (tests)
    always takes it."""
    if interpreting or not causal:
        return True
    seqlen = max(q.shape[1], k.shape[1])
    if q.shape[-1] == 64:
        return seqlen > 512
    return seqlen <= 2048


def _tiles(kernel, q, causal, seqlen, interpreting):
    if interpreting:
        return 32, 32, dict(num_warps=4, num_stages=1)
    cfg = get_config(kernel, q.shape[-1], q.dtype, causal, seqlen, q.device)
    bm, bn = cfg.pop("BLOCK_M"), cfg.pop("BLOCK_N")
    return bm, bn, cfg


def tma_bwd(dout, q, k, v, out, lse, scale: float, causal: bool, interpreting: bool = False):
    """Gradients of attention for the TMA scope: dout/out/q (B, Nq, H, D), k/v (B, Nk, Hk, D), lse (B, H, Nq)
    fp32 from the forward -> dq, dk, dv with the shapes and dtypes of q, k, v."""
    batch, seqlen_q, nheads, d = q.shape
    seqlen_k, nheads_k = k.shape[1], k.shape[2]
    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    dk = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    if q.numel() == 0 or k.numel() == 0:
        return dq.zero_(), dk.zero_(), dv.zero_()
    lse = lse.contiguous()
    delta = torch.empty(lse.shape, dtype=torch.float32, device=q.device)
    dev = -1 if interpreting else q.get_device()
    seqlen = max(seqlen_q, seqlen_k)
    group = nheads // nheads_k
    scalars = (lse.stride(0), lse.stride(1), group, seqlen_q, seqlen_k, scale * kern.LOG2E, scale)

    bm, bn, opts = _tiles("dq", q, causal, seqlen, interpreting)
    launch_tma(_attn_bwd_dq_tma, (cdiv(seqlen_q, bm), batch, nheads),
               ((q, bm), (k, bn), (v, bn), (dout, bm), (out, bm), (dq, bm)), (lse, delta, *scalars),
               dict(HEAD_DIM=d, BLOCK_M=bm, BLOCK_N=bn, CAUSAL=causal, MASK_N=seqlen_k % bn != 0,
                    UPCAST=interpreting, **opts), _desc, dev)
    bm, bn, opts = _tiles("dkdv", q, causal, seqlen, interpreting)
    launch_tma(_attn_bwd_dkdv_tma, (cdiv(seqlen_k, bn), batch, nheads_k),
               ((q, bm), (k, bn), (v, bn), (dout, bm), (dk, bn), (dv, bn)), (lse, delta, *scalars),
               dict(HEAD_DIM=d, BLOCK_M=bm, BLOCK_N=bn, CAUSAL=causal, UPCAST=interpreting, **opts), _desc, dev)
    return dq, dk, dv
