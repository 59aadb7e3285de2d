"""Triton kernels for decoding against a KV cache (split-KV, "flash-decoding").

``_attn_fwd_splitkv`` computes partial attention over one slice of the cache per program and writes
an unnormalised partial output with its log-sum-exp; ``_splitkv_combine`` merges the slices.
Masking and the tile loaders are shared with the training kernels in ``_triton_kernels``.
"""

import triton
import triton.language as tl

from ._triton_kernels import LN2, LOG2E  # noqa: F401  (LOG2E is read by the launcher in kvcache.py)


@triton.jit
def _attn_fwd_splitkv(
    Q, K, V, OUT_P, LSE_P, SEQLENS_K, ALIBI,
    stride_qb, stride_qn, stride_qh,
    stride_kb, stride_kn, stride_kh,
    stride_vb, stride_vn, stride_vh,
    stride_opb, stride_oph, stride_ops, stride_opr,
    stride_lpb, stride_lph, stride_lps,
    stride_ab,
    nheads_k, group, seqlen_q, num_splits, cache_len,
    qk_scale, window_left, window_right,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, HAS_ALIBI: tl.constexpr, UPCAST: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    """Split-KV ("flash-decoding") forward over a KV cache with per-row valid lengths.

    The query heads sharing one kv head are stacked into the rows of a tile (row r = query i * group + g),
    so each program reads its slice of the cache once for the whole group. Program (m block, b*Hk + hk,
    split) covers keys [split * chunk, (split + 1) * chunk) and writes an unnormalised partial result
    (output / l and log-sum-exp in log2 units) that the host merges across splits.
    """
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    split = tl.program_id(2)
    b = pid_bh // nheads_k
    hk = pid_bh % nheads_k
    # clamped so that unchecked lengths (inside CUDA-graph capture) can never read outside the cache
    k_len = tl.minimum(tl.maximum(tl.load(SEQLENS_K + b), 0), cache_len)
    diag = k_len - seqlen_q
    chunk = tl.cdiv(tl.cdiv(k_len, num_splits), BLOCK_N) * BLOCK_N
    lo = split * chunk
    hi = tl.minimum(k_len, lo + chunk)
    b64 = b.to(tl.int64)
    offs_r = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    r_ok = offs_r < seqlen_q * group
    qi = offs_r // group
    h = hk * group + offs_r % group
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    q = tl.load(Q + b64 * stride_qb + qi[:, None].to(tl.int64) * stride_qn + h[:, None] * stride_qh + offs_d[None, :],
                mask=r_ok[:, None] & d_ok[None, :], other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
    slope = tl.zeros([BLOCK_M], dtype=tl.float32)
    if HAS_ALIBI:
        slope = tl.load(ALIBI + b * stride_ab + h, mask=r_ok, other=0.0) * 1.4426950408889634
    # the row-wise window limits the keys this tile needs
    if HAS_RIGHT:
        hi = tl.minimum(hi, (pid_m * BLOCK_M + BLOCK_M - 1) // group + diag + window_right + 1)
    if HAS_LEFT:
        lo = tl.maximum(lo, (((pid_m * BLOCK_M) // group + diag - window_left) // BLOCK_N) * BLOCK_N)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    k_base = K + b64 * stride_kb + hk * stride_kh
    v_base = V + b64 * stride_vb + hk * stride_vh
    offs_n0 = tl.arange(0, BLOCK_N)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + offs_n0
        n_ok = offs_n < hi
        cols = offs_n.to(tl.int64)
        kv_mask = n_ok[:, None] & d_ok[None, :]
        k = tl.load(k_base + cols[:, None] * stride_kn + offs_d[None, :], mask=kv_mask, other=0.0)
        v = tl.load(v_base + cols[:, None] * stride_vn + offs_d[None, :], mask=kv_mask, other=0.0)
        if UPCAST:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * qk_scale
        if HAS_ALIBI:
            s += -slope[:, None] * tl.abs(qi[:, None] + diag - offs_n[None, :]).to(tl.float32)
        keep = n_ok[None, :] & r_ok[:, None]
        if HAS_RIGHT:
            keep = keep & (offs_n[None, :] <= qi[:, None] + diag + window_right)
        if HAS_LEFT:
            keep = keep & (offs_n[None, :] >= qi[:, None] + diag - window_left)
        s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.math.exp2(s - m_use[:, None])
        alpha = tl.math.exp2(m_i - m_use)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PREC)
        m_i = m_new
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    lse2 = tl.where(l_i == 0.0, float("-inf"), m_i + tl.math.log2(l_safe))
    op = OUT_P + b64 * stride_opb + hk * stride_oph + split * stride_ops
    tl.store(op + offs_r[:, None] * stride_opr + offs_d[None, :], acc / l_safe[:, None],
             mask=r_ok[:, None] & d_ok[None, :])
    tl.store(LSE_P + b64 * stride_lpb + hk * stride_lph + split * stride_lps + offs_r, lse2, mask=r_ok)


@triton.jit
def _splitkv_combine(
    OUT_P, LSE_P, O, LSE,
    stride_opb, stride_oph, stride_ops, stride_opr,
    stride_lpb, stride_lph, stride_lps,
    stride_ob, stride_on, stride_oh,
    stride_lb, stride_lh,
    nheads_k, group, rows_total, num_splits,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_R: tl.constexpr,
):
    """Merge split-KV partials by their log-sum-exp and scatter rows back to (batch, seqlen_q, nheads)."""
    pid_r = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // nheads_k
    hk = pid_bh % nheads_k
    b64 = b.to(tl.int64)
    offs_r = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    r_ok = offs_r < rows_total
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    lp = LSE_P + b64 * stride_lpb + hk * stride_lph + offs_r
    op = OUT_P + b64 * stride_opb + hk * stride_oph + offs_r[:, None] * stride_opr + offs_d[None, :]
    m = tl.full([BLOCK_R], float("-inf"), dtype=tl.float32)
    for s in range(0, num_splits):
        m = tl.maximum(m, tl.load(lp + s * stride_lps, mask=r_ok, other=float("-inf")))
    m = tl.where(m == float("-inf"), 0.0, m)
    denom = tl.zeros([BLOCK_R], dtype=tl.float32)
    acc = tl.zeros([BLOCK_R, BLOCK_D], dtype=tl.float32)
    for s in range(0, num_splits):
        w = tl.math.exp2(tl.load(lp + s * stride_lps, mask=r_ok, other=float("-inf")) - m)
        denom += w
        acc += w[:, None] * tl.load(op + s * stride_ops, mask=r_ok[:, None] & d_ok[None, :], other=0.0)
    out = acc / tl.where(denom == 0.0, 1.0, denom)[:, None]
    lse = tl.where(denom == 0.0, float("-inf"), (m + tl.math.log2(tl.where(denom == 0.0, 1.0, denom))) * LN2)
    qi = offs_r // group
    h = hk * group + offs_r % group
    tl.store(O + b64 * stride_ob + qi[:, None].to(tl.int64) * stride_on + h[:, None] * stride_oh + offs_d[None, :],
             out.to(O.dtype.element_ty), mask=r_ok[:, None] & d_ok[None, :])
    tl.store(LSE + b64 * stride_lb + h * stride_lh + qi, lse, mask=r_ok)
