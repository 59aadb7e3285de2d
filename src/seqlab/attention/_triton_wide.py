"""Triton attention kernels for wide heads (head dim 129..256), where the FlashAttention-2 kernels of
``_triton_kernels`` run out of registers.

The dK/dV kernel of ``_triton_kernels`` holds k, v, dk and dv tiles of BLOCK_N x 256 per program, which
at head dim 256 forces 32-row key tiles (below the 64-row M of Hopper's warpgroup MMA) and spills. Here the
backward splits it in two programs per key block, launched together (``PART == 2``; the grid's first axis
interleaves them): one accumulates dK (recomputes the scores and dP: 3 matmuls per step), the other dV
(recomputes the scores: 2 matmuls per step). Each program then holds one BLOCK_N x 256 fp32 accumulator,
like the forward, so key tiles are 128 rows over two warpgroups. That is 5 matmuls per (key block, query
block) instead of 4, paid back by tiles that run the tensor cores near the forward's rate.

The forward and dQ run the kernels of ``_triton_kernels`` (``_attn_fwd``, ``_attn_bwd_dq``; with ``REV_M``
the query blocks of one (batch, head) are taken last-first, here under any window or causal mask) with their
own tile table: at head dim 256 the H100 prefers 128-row query tiles over two warpgroups (8 warps) to the
64-row tiles of the shared table.

Measured on the H100 (results/attention_d256_run*.json, bf16, hidden 2048, 16k tokens): backward 1.1-1.5x
SDPA's FlashAttention-2 backend (the standard kernels: 0.57-0.84x), forward 1.13-1.6x except causal
N = 512 (0.97x).

Every feature of the standard kernels is supported (causal / sliding window, ALiBi, dropout, varlen, GQA,
head dims not a power of two, the CPU interpreter); the debug path that returns probabilities stays on
the standard kernels. fp32 on the GPU stays there too (its IEEE dots need the small tiles anyway).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ._triton_kernels import (
    LOG2E,
    _attn_bwd_dq,
    _attn_fwd,
    _dropout_keep,
    _load_rows,
    _query_blocks,
    _query_tile_t,
    _seq_bounds,
)

# ``SEQLAB_WIDE=0`` keeps head dims > 128 on the standard kernels (benchmarks compare both).
ENABLED = os.environ.get("SEQLAB_WIDE", "1") == "1"

# H100 (bf16/fp16) defaults per (kernel, masked, seqlen bucket); the config table (shipped or the user's
# cache, keys ``wide_fwd|d256|...``) and ``_configs.set_override("wide_dkdv", ...)`` take precedence.
_DEFAULTS = {
    "wide_fwd": dict(BLOCK_M=128, BLOCK_N=64, num_warps=8, num_stages=2),
    "wide_dq": dict(BLOCK_M=128, BLOCK_N=32, num_warps=8, num_stages=3),
    "wide_dkdv": dict(BLOCK_M=32, BLOCK_N=128, num_warps=8, num_stages=3),
}
_TUNED: dict[str, dict] = {  # results/attention_d256_run2.json (H100, bf16): fastest candidate per cell
    "wide_dkdv|full|n512": dict(BLOCK_M=32, BLOCK_N=128, num_warps=8, num_stages=3),
    "wide_dkdv|full|n1024": dict(BLOCK_M=32, BLOCK_N=128, num_warps=8, num_stages=3),
    "wide_dkdv|full|n2048": dict(BLOCK_M=32, BLOCK_N=128, num_warps=8, num_stages=3),
    "wide_dkdv|full|n4096": dict(BLOCK_M=64, BLOCK_N=128, num_warps=8, num_stages=1),
    "wide_dkdv|full|n8192": dict(BLOCK_M=64, BLOCK_N=128, num_warps=8, num_stages=1),
    "wide_dkdv|full|n16384": dict(BLOCK_M=32, BLOCK_N=128, num_warps=8, num_stages=3),
    "wide_dkdv|masked|n512": dict(BLOCK_M=32, BLOCK_N=128, num_warps=8, num_stages=3),
    "wide_dkdv|masked|n1024": dict(BLOCK_M=32, BLOCK_N=128, num_warps=8, num_stages=3),
    "wide_dkdv|masked|n2048": dict(BLOCK_M=32, BLOCK_N=128, num_warps=8, num_stages=3),
    "wide_dkdv|masked|n4096": dict(BLOCK_M=32, BLOCK_N=128, num_warps=8, num_stages=3),
    "wide_dkdv|masked|n8192": dict(BLOCK_M=64, BLOCK_N=128, num_warps=8, num_stages=1),
    "wide_dkdv|masked|n16384": dict(BLOCK_M=32, BLOCK_N=128, num_warps=8, num_stages=3),
    "wide_dq|full|n512": dict(BLOCK_M=128, BLOCK_N=32, num_warps=8, num_stages=3),
    "wide_dq|full|n1024": dict(BLOCK_M=128, BLOCK_N=32, num_warps=8, num_stages=3),
    "wide_dq|full|n2048": dict(BLOCK_M=128, BLOCK_N=32, num_warps=8, num_stages=3),
    "wide_dq|full|n4096": dict(BLOCK_M=128, BLOCK_N=32, num_warps=8, num_stages=3),
    "wide_dq|full|n8192": dict(BLOCK_M=128, BLOCK_N=32, num_warps=8, num_stages=3),
    "wide_dq|full|n16384": dict(BLOCK_M=128, BLOCK_N=32, num_warps=8, num_stages=3),
    "wide_dq|masked|n512": dict(BLOCK_M=128, BLOCK_N=32, num_warps=8, num_stages=3),
    "wide_dq|masked|n1024": dict(BLOCK_M=128, BLOCK_N=32, num_warps=8, num_stages=3),
    "wide_dq|masked|n2048": dict(BLOCK_M=128, BLOCK_N=32, num_warps=8, num_stages=3),
    "wide_dq|masked|n4096": dict(BLOCK_M=128, BLOCK_N=32, num_warps=8, num_stages=3),
    "wide_dq|masked|n8192": dict(BLOCK_M=128, BLOCK_N=32, num_warps=8, num_stages=3),
    "wide_dq|masked|n16384": dict(BLOCK_M=128, BLOCK_N=64, num_warps=8, num_stages=1),
    "wide_fwd|full|n512": dict(BLOCK_M=128, BLOCK_N=32, num_warps=8, num_stages=3),
    "wide_fwd|full|n1024": dict(BLOCK_M=128, BLOCK_N=64, num_warps=8, num_stages=2),
    "wide_fwd|full|n2048": dict(BLOCK_M=128, BLOCK_N=64, num_warps=8, num_stages=2),
    "wide_fwd|full|n4096": dict(BLOCK_M=128, BLOCK_N=64, num_warps=8, num_stages=2),
    "wide_fwd|full|n8192": dict(BLOCK_M=128, BLOCK_N=64, num_warps=8, num_stages=2),
    "wide_fwd|full|n16384": dict(BLOCK_M=128, BLOCK_N=64, num_warps=8, num_stages=2),
    "wide_fwd|masked|n512": dict(BLOCK_M=128, BLOCK_N=64, num_warps=8, num_stages=2),
    "wide_fwd|masked|n1024": dict(BLOCK_M=128, BLOCK_N=64, num_warps=8, num_stages=2),
    "wide_fwd|masked|n2048": dict(BLOCK_M=128, BLOCK_N=64, num_warps=8, num_stages=2),
    "wide_fwd|masked|n4096": dict(BLOCK_M=128, BLOCK_N=64, num_warps=8, num_stages=2),
    "wide_fwd|masked|n8192": dict(BLOCK_M=128, BLOCK_N=64, num_warps=8, num_stages=2),
    "wide_fwd|masked|n16384": dict(BLOCK_M=128, BLOCK_N=64, num_warps=8, num_stages=2),
}


def applies(q: torch.Tensor, return_probs: bool = False) -> bool:
    """Whether the wide-head kernels take this call."""
    if not ENABLED or return_probs or not 128 < q.shape[-1] <= 256:
        return False
    if q.dtype == torch.float32:  # IEEE fp32 dots: the standard kernels' small tiles (the interpreter: both)
        from ._triton_launch import interpreting

        return interpreting()
    return True


def wide_config(kernel: str, q: torch.Tensor, masked: bool, seqlen: int) -> dict:
    from . import _configs, _triton_launch

    if _triton_launch.interpreting():
        bm, bn = _triton_launch._INTERPRET_BLOCKS
        return dict(BLOCK_M=bm, BLOCK_N=bn, num_warps=4, num_stages=1)
    if kernel in _configs._override:
        return dict(_configs._override[kernel])
    dev = _configs.device_key(q.device)
    entry = _configs._lookup(_configs._table(dev), kernel, q.shape[-1], q.dtype, masked, seqlen)
    if entry is None:
        entry = _DEFAULTS[kernel]
        for bucket in _configs.buckets_by_distance(seqlen):  # the nearest bucket with an entry
            hit = _TUNED.get(f"{kernel}|{'masked' if masked else 'full'}|n{bucket}")
            if hit is not None:
                entry = hit
                break
    return dict(entry)


@triton.jit
def _dk_inner(dk, k, v, q_base, do_base, l_base, dl_base, stride_qn, stride_don, q_start, offs_n, offs_d,
              q_len, k_len, diag, qk_scale, slope, window_left, window_right, SEED, bh, dropout_p, lo, hi,
              HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, MASK: tl.constexpr,
              HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, HAS_ALIBI: tl.constexpr,
              HAS_DROPOUT: tl.constexpr, UPCAST: tl.constexpr, DOT_PREC: tl.constexpr):
    """dK of one key block over query blocks [lo, hi) (transposed scores: keys x queries)."""
    offs_m0 = tl.arange(0, BLOCK_M)
    rp_drop = 1.0 / (1.0 - dropout_p)
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + offs_m0
        m_ok, q_t, do, p_t = _query_tile_t(k, q_base, do_base, l_base, stride_qn, stride_don, q_start, offs_m, offs_n,
                                           offs_d, q_len, k_len, diag, qk_scale, slope, window_left, window_right,
                                           HEAD_DIM, BLOCK_D, MASK, HAS_LEFT, HAS_RIGHT, HAS_ALIBI, UPCAST, DOT_PREC)
        if MASK:
            delta = tl.load(dl_base + offs_m, mask=m_ok, other=0.0)
        else:
            delta = tl.load(dl_base + offs_m)
        dp_t = tl.dot(v, tl.trans(do), input_precision=DOT_PREC)
        if HAS_DROPOUT:
            keep = _dropout_keep(SEED, bh, offs_m[None, :], offs_n[:, None], dropout_p)
            dp_t = tl.where(keep, dp_t * rp_drop, 0.0)
        ds_t = p_t * (dp_t - delta[None, :])
        dk += tl.dot(ds_t.to(q_t.dtype), tl.trans(q_t), input_precision=DOT_PREC)
    return dk


@triton.jit
def _dv_inner(dv, k, q_base, do_base, l_base, stride_qn, stride_don, q_start, offs_n, offs_d,
              q_len, k_len, diag, qk_scale, slope, window_left, window_right, SEED, bh, dropout_p, lo, hi,
              HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, MASK: tl.constexpr,
              HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, HAS_ALIBI: tl.constexpr,
              HAS_DROPOUT: tl.constexpr, UPCAST: tl.constexpr, DOT_PREC: tl.constexpr):
    """dV of one key block over query blocks [lo, hi): dV += P^T dO (dropout-masked and rescaled P)."""
    offs_m0 = tl.arange(0, BLOCK_M)
    rp_drop = 1.0 / (1.0 - dropout_p)
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + offs_m0
        m_ok, q_t, do, p_t = _query_tile_t(k, q_base, do_base, l_base, stride_qn, stride_don, q_start, offs_m, offs_n,
                                           offs_d, q_len, k_len, diag, qk_scale, slope, window_left, window_right,
                                           HEAD_DIM, BLOCK_D, MASK, HAS_LEFT, HAS_RIGHT, HAS_ALIBI, UPCAST, DOT_PREC)
        if HAS_DROPOUT:
            keep = _dropout_keep(SEED, bh, offs_m[None, :], offs_n[:, None], dropout_p)
            p_t = tl.where(keep, p_t * rp_drop, 0.0)
        dv += tl.dot(p_t.to(do.dtype), do, input_precision=DOT_PREC)
    return dv


@triton.jit
def _dk_block(Q, K, V, DO, LSE, DELTA, DK, SEED, ALIBI, q_start, k_start, q_len, k_len, b, hk, n0,
              stride_qb, stride_qn, stride_qh, stride_kb, stride_kn, stride_kh, stride_vb, stride_vn, stride_vh,
              stride_dob, stride_don, stride_doh, stride_dkb, stride_dkn, stride_dkh, stride_lb, stride_lh,
              stride_ab, nheads, group, qk_scale, sm_scale, dropout_p, window_left, window_right,
              HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
              HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, HAS_ALIBI: tl.constexpr,
              HAS_DROPOUT: tl.constexpr, UPCAST: tl.constexpr, DOT_PREC: tl.constexpr):
    diag = k_len - q_len
    b64 = b.to(tl.int64)
    offs_n = n0 + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    n_ok = offs_n < k_len
    cols = (k_start + offs_n).to(tl.int64)
    k = _load_rows(K + b64 * stride_kb + hk * stride_kh + cols[:, None] * stride_kn + offs_d[None, :], n_ok, offs_d,
                   HEAD_DIM, BLOCK_D, True, UPCAST)
    v = _load_rows(V + b64 * stride_vb + hk * stride_vh + cols[:, None] * stride_vn + offs_d[None, :], n_ok, offs_d,
                   HEAD_DIM, BLOCK_D, True, UPCAST)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    m_lo, full_lo, full_hi, m_hi = _query_blocks(n0, q_len, k_len, diag, window_left, window_right, BLOCK_M,
                                                 BLOCK_N, HAS_LEFT, HAS_RIGHT)
    for g in range(0, group):
        h = hk * group + g
        slope = 0.0
        if HAS_ALIBI:
            slope = tl.load(ALIBI + b * stride_ab + h) * 1.4426950408889634
        bh = b * nheads + h
        q_base = Q + b64 * stride_qb + h * stride_qh
        do_base = DO + b64 * stride_dob + h * stride_doh
        l_base = LSE + b64 * stride_lb + h * stride_lh + q_start
        dl_base = DELTA + b64 * stride_lb + h * stride_lh + q_start
        dk = _dk_inner(dk, k, v, q_base, do_base, l_base, dl_base, stride_qn, stride_don, q_start, offs_n, offs_d,
                       q_len, k_len, diag, qk_scale, slope, window_left, window_right, SEED, bh, dropout_p, m_lo,
                       full_lo, HEAD_DIM, BLOCK_D, BLOCK_M, True, HAS_LEFT, HAS_RIGHT, HAS_ALIBI, HAS_DROPOUT,
                       UPCAST, DOT_PREC)
        dk = _dk_inner(dk, k, v, q_base, do_base, l_base, dl_base, stride_qn, stride_don, q_start, offs_n, offs_d,
                       q_len, k_len, diag, qk_scale, slope, window_left, window_right, SEED, bh, dropout_p, full_lo,
                       full_hi, HEAD_DIM, BLOCK_D, BLOCK_M, False, HAS_LEFT, HAS_RIGHT, HAS_ALIBI, HAS_DROPOUT,
                       UPCAST, DOT_PREC)
        dk = _dk_inner(dk, k, v, q_base, do_base, l_base, dl_base, stride_qn, stride_don, q_start, offs_n, offs_d,
                       q_len, k_len, diag, qk_scale, slope, window_left, window_right, SEED, bh, dropout_p, full_hi,
                       m_hi, HEAD_DIM, BLOCK_D, BLOCK_M, True, HAS_LEFT, HAS_RIGHT, HAS_ALIBI, HAS_DROPOUT,
                       UPCAST, DOT_PREC)
    dk = dk * sm_scale
    tl.store(DK + b64 * stride_dkb + hk * stride_dkh + cols[:, None] * stride_dkn + offs_d[None, :],
             dk.to(DK.dtype.element_ty), mask=n_ok[:, None] & (offs_d < HEAD_DIM)[None, :])


@triton.jit
def _dv_block(Q, K, DO, LSE, DV, SEED, ALIBI, q_start, k_start, q_len, k_len, b, hk, n0,
              stride_qb, stride_qn, stride_qh, stride_kb, stride_kn, stride_kh,
              stride_dob, stride_don, stride_doh, stride_dvb, stride_dvn, stride_dvh, stride_lb, stride_lh,
              stride_ab, nheads, group, qk_scale, dropout_p, window_left, window_right,
              HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
              HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, HAS_ALIBI: tl.constexpr,
              HAS_DROPOUT: tl.constexpr, UPCAST: tl.constexpr, DOT_PREC: tl.constexpr):
    diag = k_len - q_len
    b64 = b.to(tl.int64)
    offs_n = n0 + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    n_ok = offs_n < k_len
    cols = (k_start + offs_n).to(tl.int64)
    k = _load_rows(K + b64 * stride_kb + hk * stride_kh + cols[:, None] * stride_kn + offs_d[None, :], n_ok, offs_d,
                   HEAD_DIM, BLOCK_D, True, UPCAST)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    m_lo, full_lo, full_hi, m_hi = _query_blocks(n0, q_len, k_len, diag, window_left, window_right, BLOCK_M,
                                                 BLOCK_N, HAS_LEFT, HAS_RIGHT)
    for g in range(0, group):
        h = hk * group + g
        slope = 0.0
        if HAS_ALIBI:
            slope = tl.load(ALIBI + b * stride_ab + h) * 1.4426950408889634
        bh = b * nheads + h
        q_base = Q + b64 * stride_qb + h * stride_qh
        do_base = DO + b64 * stride_dob + h * stride_doh
        l_base = LSE + b64 * stride_lb + h * stride_lh + q_start
        dv = _dv_inner(dv, k, q_base, do_base, l_base, stride_qn, stride_don, q_start, offs_n, offs_d, q_len, k_len,
                       diag, qk_scale, slope, window_left, window_right, SEED, bh, dropout_p, m_lo, full_lo,
                       HEAD_DIM, BLOCK_D, BLOCK_M, True, HAS_LEFT, HAS_RIGHT, HAS_ALIBI, HAS_DROPOUT, UPCAST,
                       DOT_PREC)
        dv = _dv_inner(dv, k, q_base, do_base, l_base, stride_qn, stride_don, q_start, offs_n, offs_d, q_len, k_len,
                       diag, qk_scale, slope, window_left, window_right, SEED, bh, dropout_p, full_lo, full_hi,
                       HEAD_DIM, BLOCK_D, BLOCK_M, False, HAS_LEFT, HAS_RIGHT, HAS_ALIBI, HAS_DROPOUT, UPCAST,
                       DOT_PREC)
        dv = _dv_inner(dv, k, q_base, do_base, l_base, stride_qn, stride_don, q_start, offs_n, offs_d, q_len, k_len,
                       diag, qk_scale, slope, window_left, window_right, SEED, bh, dropout_p, full_hi, m_hi,
                       HEAD_DIM, BLOCK_D, BLOCK_M, True, HAS_LEFT, HAS_RIGHT, HAS_ALIBI, HAS_DROPOUT, UPCAST,
                       DOT_PREC)
    tl.store(DV + b64 * stride_dvb + hk * stride_dvh + cols[:, None] * stride_dvn + offs_d[None, :],
             dv.to(DV.dtype.element_ty), mask=n_ok[:, None] & (offs_d < HEAD_DIM)[None, :])


@triton.jit
def _wide_bwd_dkdv(
    Q, K, V, DO, LSE, DELTA, DK, DV, SEED, ALIBI, CU_Q, CU_K,
    stride_qb, stride_qn, stride_qh,
    stride_kb, stride_kn, stride_kh,
    stride_vb, stride_vn, stride_vh,
    stride_dob, stride_don, stride_doh,
    stride_dkb, stride_dkn, stride_dkh,
    stride_dvb, stride_dvn, stride_dvh,
    stride_lb, stride_lh,
    stride_ab,
    nheads, group, seqlen_q, seqlen_k,
    qk_scale, sm_scale, dropout_p, window_left, window_right,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    IS_VARLEN: tl.constexpr, HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, HAS_ALIBI: tl.constexpr,
    HAS_DROPOUT: tl.constexpr, MASK_N: tl.constexpr, UPCAST: tl.constexpr, DOT_PREC: tl.constexpr,
    PART: tl.constexpr,
):
    """dK (PART 0), dV (PART 1) or both (PART 2: grid axis 0 is twice the key blocks, even programs dK,
    odd programs dV of the same key block) of one key block x batch x kv head."""
    pid = tl.program_id(0)
    b = tl.program_id(1)
    hk = tl.program_id(2)
    if PART == 2:
        pid_n = pid // 2
        part = pid % 2
    else:
        pid_n = pid
        part = PART
    q_start, q_len = _seq_bounds(CU_Q, b, seqlen_q, IS_VARLEN)
    k_start, k_len = _seq_bounds(CU_K, b, seqlen_k, IS_VARLEN)
    n0 = pid_n * BLOCK_N
    if n0 >= k_len:
        return
    if part == 0:
        _dk_block(Q, K, V, DO, LSE, DELTA, DK, SEED, ALIBI, q_start, k_start, q_len, k_len, b, hk, n0,
                  stride_qb, stride_qn, stride_qh, stride_kb, stride_kn, stride_kh, stride_vb, stride_vn, stride_vh,
                  stride_dob, stride_don, stride_doh, stride_dkb, stride_dkn, stride_dkh, stride_lb, stride_lh,
                  stride_ab, nheads, group, qk_scale, sm_scale, dropout_p, window_left, window_right,
                  HEAD_DIM, BLOCK_D, BLOCK_M, BLOCK_N, HAS_LEFT, HAS_RIGHT, HAS_ALIBI, HAS_DROPOUT, UPCAST,
                  DOT_PREC)
    else:
        _dv_block(Q, K, DO, LSE, DV, SEED, ALIBI, q_start, k_start, q_len, k_len, b, hk, n0,
                  stride_qb, stride_qn, stride_qh, stride_kb, stride_kn, stride_kh,
                  stride_dob, stride_don, stride_doh, stride_dvb, stride_dvn, stride_dvh, stride_lb, stride_lh,
                  stride_ab, nheads, group, qk_scale, dropout_p, window_left, window_right,
                  HEAD_DIM, BLOCK_D, BLOCK_M, BLOCK_N, HAS_LEFT, HAS_RIGHT, HAS_ALIBI, HAS_DROPOUT, UPCAST,
                  DOT_PREC)


def _wflags(q, seqlen_k, cfg_n, wl, wr, alibi, dropout_p, varlen):
    # the shared flags; the query order (REV_M) is set per kernel by the plan
    from ._triton_launch import _flags

    flags = _flags(q, seqlen_k, cfg_n, wl, wr, alibi, dropout_p, varlen)
    del flags["REV_M"]
    return flags


# Launch plans (tile sizes and constexprs) per call signature: the config lookup and flag building cost more
# host time than the launch itself at short lengths. Plans are bypassed while a config override is set.
_plans: dict = {}
_MAX_PLANS = 4096


def _plan(kernel, q, d, masked, longest, seqlen_k, wl, wr, alibi, dropout_p, varlen, extra):
    from . import _configs

    key = (kernel, q.dtype, d, q.get_device(), masked, longest, seqlen_k, wl >= 0, wr >= 0, alibi is not None,
           dropout_p > 0.0, varlen, extra)
    hit = None if _configs._override else _plans.get(key)
    if hit is None:
        from ._triton_launch import _block_d

        cfg = wide_config(kernel, q, masked, longest)
        bm, bn = cfg.pop("BLOCK_M"), cfg.pop("BLOCK_N")
        consts = dict(HEAD_DIM=d, BLOCK_D=_block_d(d), BLOCK_M=bm, BLOCK_N=bn,
                      **_wflags(q, seqlen_k, bn, wl, wr, alibi, dropout_p, varlen), **cfg)
        if kernel == "wide_dkdv":
            consts["PART"] = 2
        else:
            consts["REV_M"] = bool(extra)
            if kernel == "wide_fwd":
                consts["RETURN_P"] = False
        hit = (bm, bn, consts)
        if not _configs._override:
            if len(_plans) >= _MAX_PLANS:
                _plans.clear()
            _plans[key] = hit
    return hit


def set_tuned(table: dict) -> None:
    """Install tuned defaults (keys ``wide_fwd|full|n1024``...; benchmarks) and drop the cached plans."""
    _TUNED.update(table)
    _plans.clear()


def _explicit(cfg, d, q, seqlen_k, wl, wr, alibi, dropout_p, varlen, extra):
    from ._triton_launch import _block_d

    cfg = dict(cfg)
    bm, bn = cfg.pop("BLOCK_M"), cfg.pop("BLOCK_N")
    consts = dict(HEAD_DIM=d, BLOCK_D=_block_d(d), BLOCK_M=bm, BLOCK_N=bn,
                  **_wflags(q, seqlen_k, bn, wl, wr, alibi, dropout_p, varlen), **cfg)
    if extra is None:
        consts["PART"] = 2
    else:
        consts["REV_M"] = bool(extra)
    return bm, bn, consts


def _strides(t, varlen):
    s = t.stride()
    return (0, s[0], s[1]) if varlen else (s[0], s[1], s[2])


def wide_fwd(q, k, v, cu_q, cu_k, max_q, max_k, scale, wl, wr, alibi, dropout_p, seed, cfg=None, reverse=None):
    """Forward for head dims 129..256; same contract as ``_triton_launch.triton_fwd`` without probabilities.
    ``cfg`` / ``reverse`` force the tile config / query order (benchmarks, tests)."""
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    varlen = cu_q is not None
    if varlen:
        batch, nheads, nheads_k, seqlen_q, seqlen_k = cu_q.numel() - 1, q.shape[1], k.shape[1], max_q, max_k
    else:
        batch, seqlen_q, nheads = q.shape[0], q.shape[1], q.shape[2]
        nheads_k, seqlen_k = k.shape[2], k.shape[1]
    d = q.shape[-1]
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    if varlen:
        lse = torch.empty(nheads, q.shape[0], dtype=torch.float32, device=q.device)
        slb, slh = 0, lse.stride(0)
    else:
        lse = torch.empty(batch, nheads, seqlen_q, dtype=torch.float32, device=q.device)
        slb, slh = lse.stride(0), lse.stride(1)
    probs = torch.empty(0, dtype=torch.float32, device=q.device)
    if out.numel() == 0 or seqlen_q == 0:
        return out, lse.fill_(float("-inf")), probs
    masked = wl >= 0 or wr >= 0
    rev = masked if reverse is None else reverse
    if cfg is None:
        bm, bn, consts = _plan("wide_fwd", q, d, masked, max(seqlen_q, seqlen_k), seqlen_k, wl, wr, alibi, dropout_p,
                               varlen, rev)
    else:
        bm, bn, consts = _explicit(cfg, d, q, seqlen_k, wl, wr, alibi, dropout_p, varlen, rev)
        consts["RETURN_P"] = False
    dummy = lse
    args = (
        q, k, v, out, lse, probs, seed if seed is not None else dummy,
        alibi if alibi is not None else dummy,
        cu_q if varlen else dummy, cu_k if varlen else dummy,
        *_strides(q, varlen), *_strides(k, varlen), *_strides(v, varlen), *_strides(out, varlen),
        slb, slh, 0, 0, 0,
        alibi.stride(0) if alibi is not None and alibi.shape[0] > 1 else 0,
        nheads, nheads // nheads_k, seqlen_q, seqlen_k,
        scale * LOG2E, dropout_p, wl, wr,
    )
    _launch(_attn_fwd, (-(-seqlen_q // bm), batch, nheads), args, consts, q.get_device())
    return out, lse, probs


def wide_bwd(dout, q, k, v, out, lse, cu_q, cu_k, max_q, max_k, scale, wl, wr, alibi, dropout_p, seed,
             cfg_q=None, cfg_kv=None, reverse=None, fused_dkdv=True):
    """Backward for head dims 129..256; same contract as ``_triton_launch.triton_bwd``. The dQ kernel runs
    first (it stores delta), then one launch of dK and dV programs (two launches if not ``fused_dkdv``).
    ``cfg_q`` / ``cfg_kv`` / ``reverse`` force tile configs / the dQ query order (benchmarks, tests)."""
    q, k, v, dout, out = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v, dout, out))
    varlen = cu_q is not None
    if varlen:
        batch, nheads, nheads_k, seqlen_q, seqlen_k = cu_q.numel() - 1, q.shape[1], k.shape[1], max_q, max_k
    else:
        batch, seqlen_q, nheads = q.shape[0], q.shape[1], q.shape[2]
        nheads_k, seqlen_k = k.shape[2], k.shape[1]
    d = q.shape[-1]
    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    if q.numel() == 0 or k.numel() == 0:
        return dq.zero_(), torch.zeros_like(k), torch.zeros_like(v)
    lse = lse.contiguous()
    delta = torch.empty(lse.shape, dtype=torch.float32, device=q.device)
    slb, slh = (0, delta.stride(0)) if varlen else (delta.stride(0), delta.stride(1))
    masked = wl >= 0 or wr >= 0
    longest = max(seqlen_q, seqlen_k)
    rev = masked if reverse is None else reverse
    dummy = delta
    common = (seed if seed is not None else dummy, alibi if alibi is not None else dummy,
              cu_q if varlen else dummy, cu_k if varlen else dummy)
    strides_in = (*_strides(q, varlen), *_strides(k, varlen), *_strides(v, varlen), *_strides(dout, varlen))
    sab = alibi.stride(0) if alibi is not None and alibi.shape[0] > 1 else 0
    scalars = (nheads, nheads // nheads_k, seqlen_q, seqlen_k, scale * LOG2E, scale, dropout_p, wl, wr)
    dev = q.get_device()

    if cfg_q is None:
        bm, bn, consts = _plan("wide_dq", q, d, masked, longest, seqlen_k, wl, wr, alibi, dropout_p, varlen, rev)
    else:
        bm, bn, consts = _explicit(cfg_q, d, q, seqlen_k, wl, wr, alibi, dropout_p, varlen, rev)
    _launch(_attn_bwd_dq, (-(-seqlen_q // bm), batch, nheads),
            (q, k, v, dout, lse, delta, dq, *common, out,
             *strides_in, *_strides(dq, varlen), *_strides(out, varlen), slb, slh, sab, *scalars), consts, dev)
    dk = torch.empty(k.shape, dtype=k.dtype, device=k.device)  # after the dQ launch: off the critical path
    dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    if cfg_kv is None:
        bm, bn, consts = _plan("wide_dkdv", q, d, masked, longest, seqlen_k, wl, wr, alibi, dropout_p, varlen, None)
    else:
        bm, bn, consts = _explicit(cfg_kv, d, q, seqlen_k, wl, wr, alibi, dropout_p, varlen, None)
    nblk = -(-seqlen_k // bn)
    args = (q, k, v, dout, lse, delta, dk, dv, *common,
            *strides_in, *_strides(dk, varlen), *_strides(dv, varlen), slb, slh, sab, *scalars)
    if fused_dkdv:
        _launch(_wide_bwd_dkdv, (2 * nblk, batch, nheads_k), args, consts, dev)
    else:
        _launch(_wide_bwd_dkdv, (nblk, batch, nheads_k), args, dict(consts, PART=0), dev)
        _launch(_wide_bwd_dkdv, (nblk, batch, nheads_k), args, dict(consts, PART=1), dev)
    return dq, dk, dv


def _launch(fn, grid, args, consts, device_index):
    from ._fast_launch import launch

    launch(fn, grid, args, consts, device_index)
