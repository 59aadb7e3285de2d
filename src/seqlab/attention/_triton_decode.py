"""Triton kernels for decoding against a KV cache (split-KV, "flash-decoding").

``_attn_fwd_splitkv`` appends the new keys/values to the cache and computes attention over one slice
of each row's valid keys per program. With one split it writes the final output directly (a single
launch); with several it writes an unnormalised partial output with its log-sum-exp to a scratch
buffer and ``_splitkv_combine`` merges the slices.
"""

import triton
import triton.language as tl

from ._triton_kernels import LN2


@triton.jit
def _decode_step(acc, m_i, l_i, q, k, v, offs_n, n_hi, qi, diag, slope, window_left, window_right,
                 MASK_N: tl.constexpr, HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, HAS_ALIBI: tl.constexpr,
                 DOT_PREC: tl.constexpr, qk_scale):
    """One online-softmax step over a key tile (scores in log2 units)."""
    s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * qk_scale
    if HAS_ALIBI:
        s += -slope[:, None] * tl.abs(qi[:, None] + diag - offs_n[None, :]).to(tl.float32)
    if MASK_N:
        s = tl.where(offs_n[None, :] < n_hi, s, float("-inf"))
    if HAS_RIGHT:
        s = tl.where(offs_n[None, :] <= qi[:, None] + diag + window_right, s, float("-inf"))
    if HAS_LEFT:
        s = tl.where(offs_n[None, :] >= qi[:, None] + diag - window_left, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
    p = tl.math.exp2(s - m_use[:, None])
    alpha = tl.math.exp2(m_i - m_use)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PREC)
    return acc, m_new, l_i


@triton.jit(do_not_specialize=["num_splits", "cache_len", "n_new", "seqlen_fixed", "window_left", "window_right"])
def _attn_fwd_splitkv(
    Q, K, V, KN, VN, O, LSE, PART_O, SEQLENS, ALIBI,
    stride_qb, stride_qn, stride_qh,
    stride_kb, stride_kn, stride_kh,
    stride_vb, stride_vn, stride_vh,
    stride_knb, stride_knn, stride_knh,
    stride_vnb, stride_vnn, stride_vnh,
    stride_ab,
    nheads_k, group, seqlen_q, num_splits, cache_len, n_new, seqlen_fixed,
    qk_scale, window_left, window_right,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_SEQLENS: tl.constexpr, HAS_NEW: tl.constexpr, HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr,
    HAS_ALIBI: tl.constexpr, SPLIT: tl.constexpr, STORE_LSE: tl.constexpr, UPCAST: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    """Split-KV ("flash-decoding") forward over a KV cache with per-row valid lengths.

    The query heads sharing one kv head are stacked into the rows of a tile (row r = query i * group + g),
    so each program reads its slice of the cache once for the whole group. Program (m block, b*Hk + hk,
    split) covers keys [split * chunk, (split + 1) * chunk) of row b's valid keys.

    Row b's cache holds ``old = SEQLENS[b]`` (or ``seqlen_fixed``) valid keys before the ``n_new`` new ones
    (KN/VN) are appended at ``old ...``. Lengths are clamped to the cache: ``old`` to [0, cache_len] and
    new tokens past the end of the cache are neither written nor attended, so unchecked lengths (CUDA
    lengths are not read back on the host) can never read or write outside the cache. The new tokens are
    written by the m-block-0 program of the split that owns their position and read from KN/VN directly,
    never from the cache, so no program waits for another's write.
    """
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    split = tl.program_id(2)
    b = pid_bh // nheads_k
    hk = pid_bh % nheads_k
    rows = seqlen_q * group
    if HAS_SEQLENS:
        old = tl.load(SEQLENS + b)
    else:
        old = seqlen_fixed
    old = tl.minimum(tl.maximum(old, 0), cache_len)
    if HAS_NEW:
        k_len = tl.minimum(old + n_new, cache_len)
    else:
        k_len = old
    diag = k_len - seqlen_q
    chunk = tl.cdiv(tl.cdiv(k_len, num_splits), BLOCK_N) * BLOCK_N
    lo = split * chunk
    hi = tl.minimum(k_len, lo + chunk)
    b64 = b.to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    if BLOCK_D == HEAD_DIM:
        d_ok = offs_d < BLOCK_D + 1  # all true; lets the compiler keep the loads unmasked along d
    else:
        d_ok = offs_d < HEAD_DIM
    offs_n0 = tl.arange(0, BLOCK_N)
    k_base = K + b64 * stride_kb + hk * stride_kh
    v_base = V + b64 * stride_vb + hk * stride_vh
    if HAS_NEW:
        kn_base = KN + b64 * stride_knb + hk * stride_knh
        vn_base = VN + b64 * stride_vnb + hk * stride_vnh
        if pid_m == 0:  # append this split's share of the new keys/values to the cache
            for start in range(tl.maximum(lo, old), hi, BLOCK_N):
                offs_n = start + offs_n0
                msk = (offs_n < hi)[:, None] & d_ok[None, :]
                src = (offs_n - old).to(tl.int64)[:, None]
                dst = offs_n.to(tl.int64)[:, None]
                kt = tl.load(kn_base + src * stride_knn + offs_d[None, :], mask=msk, other=0.0)
                vt = tl.load(vn_base + src * stride_vnn + offs_d[None, :], mask=msk, other=0.0)
                tl.store(k_base + dst * stride_kn + offs_d[None, :], kt, mask=msk)
                tl.store(v_base + dst * stride_vn + offs_d[None, :], vt, mask=msk)
    offs_r = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    r_ok = offs_r < rows
    qi = offs_r // group
    h = hk * group + offs_r % group
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
    if HAS_NEW:
        hi_c = tl.minimum(hi, old)
    else:
        hi_c = hi
    # whole tiles of cached keys: no bounds mask
    hi_full = lo + (tl.maximum(hi_c - lo, 0) // BLOCK_N) * BLOCK_N
    for start_n in range(lo, hi_full, BLOCK_N):
        offs_n = start_n + offs_n0
        cols = offs_n.to(tl.int64)[:, None]
        if BLOCK_D == HEAD_DIM:
            k = tl.load(k_base + cols * stride_kn + offs_d[None, :])
            v = tl.load(v_base + cols * stride_vn + offs_d[None, :])
        else:
            k = tl.load(k_base + cols * stride_kn + offs_d[None, :], mask=d_ok[None, :], other=0.0)
            v = tl.load(v_base + cols * stride_vn + offs_d[None, :], mask=d_ok[None, :], other=0.0)
        if UPCAST:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        acc, m_i, l_i = _decode_step(acc, m_i, l_i, q, k, v, offs_n, hi_c, qi, diag, slope, window_left,
                                     window_right, False, HAS_LEFT, HAS_RIGHT, HAS_ALIBI, DOT_PREC, qk_scale)
    # the last partial tile of cached keys (at most one iteration)
    for start_n in range(hi_full, hi_c, BLOCK_N):
        offs_n = start_n + offs_n0
        cols = offs_n.to(tl.int64)[:, None]
        msk = (offs_n < hi_c)[:, None] & d_ok[None, :]
        k = tl.load(k_base + cols * stride_kn + offs_d[None, :], mask=msk, other=0.0)
        v = tl.load(v_base + cols * stride_vn + offs_d[None, :], mask=msk, other=0.0)
        if UPCAST:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        acc, m_i, l_i = _decode_step(acc, m_i, l_i, q, k, v, offs_n, hi_c, qi, diag, slope, window_left,
                                     window_right, True, HAS_LEFT, HAS_RIGHT, HAS_ALIBI, DOT_PREC, qk_scale)
    if HAS_NEW:  # the new keys, read from KN/VN
        for start_n in range(tl.maximum(lo, old), hi, BLOCK_N):
            offs_n = start_n + offs_n0
            src = (offs_n - old).to(tl.int64)[:, None]
            msk = (offs_n < hi)[:, None] & d_ok[None, :]
            k = tl.load(kn_base + src * stride_knn + offs_d[None, :], mask=msk, other=0.0)
            v = tl.load(vn_base + src * stride_vnn + offs_d[None, :], mask=msk, other=0.0)
            if UPCAST:
                k = k.to(tl.float32)
                v = v.to(tl.float32)
            acc, m_i, l_i = _decode_step(acc, m_i, l_i, q, k, v, offs_n, hi, qi, diag, slope, window_left,
                                         window_right, True, HAS_LEFT, HAS_RIGHT, HAS_ALIBI, DOT_PREC, qk_scale)
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    lse2 = tl.where(l_i == 0.0, float("-inf"), m_i + tl.math.log2(l_safe))
    out = acc / l_safe[:, None]
    if SPLIT:
        PART_L = PART_O + (tl.num_programs(1) * num_splits * rows).to(tl.int64) * HEAD_DIM
        slot = (pid_bh * num_splits + split).to(tl.int64) * rows + offs_r
        tl.store(PART_O + slot[:, None] * HEAD_DIM + offs_d[None, :], out, mask=r_ok[:, None] & d_ok[None, :])
        tl.store(PART_L + slot, lse2, mask=r_ok)
    else:
        nheads = nheads_k * group
        o_row = (b64 * seqlen_q + qi) * nheads + h
        tl.store(O + o_row[:, None] * HEAD_DIM + offs_d[None, :], out.to(O.dtype.element_ty),
                 mask=r_ok[:, None] & d_ok[None, :])
        if STORE_LSE:
            tl.store(LSE + (b64 * nheads + h) * seqlen_q + qi, lse2 * LN2, mask=r_ok)


@triton.jit(do_not_specialize=["num_splits"])
def _splitkv_combine(
    PART_O, O, LSE,
    nheads_k, group, seqlen_q, num_splits,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_S: tl.constexpr, STORE_LSE: tl.constexpr,
):
    """Merge the split-KV partials of one query row by their log-sum-exp; program (row, b*Hk + hk).

    Partial outputs are laid out (b*Hk + hk, split, row, HEAD_DIM) fp32, followed in the same buffer by the
    partial log-sum-exps (b*Hk + hk, split, row) in log2 units; the output goes to (batch, seqlen_q, nheads,
    HEAD_DIM) contiguous and the log-sum-exp (natural log) to (batch, nheads, seqlen_q).
    """
    r = tl.program_id(0)
    pid_bh = tl.program_id(1)
    rows = seqlen_q * group
    b = pid_bh // nheads_k
    hk = pid_bh % nheads_k
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    base = pid_bh.to(tl.int64) * num_splits
    PART_L = PART_O + (tl.num_programs(1) * num_splits * rows).to(tl.int64) * HEAD_DIM
    m_vec = tl.full([BLOCK_S], float("-inf"), dtype=tl.float32)
    for s0 in range(0, num_splits, BLOCK_S):
        s = s0 + offs_s
        m_vec = tl.maximum(m_vec, tl.load(PART_L + (base + s) * rows + r, mask=s < num_splits, other=float("-inf")))
    m = tl.max(m_vec, 0)
    m = tl.where(m == float("-inf"), 0.0, m)
    w_vec = tl.zeros([BLOCK_S], dtype=tl.float32)
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for s0 in range(0, num_splits, BLOCK_S):
        s = s0 + offs_s
        s_ok = s < num_splits
        w = tl.math.exp2(tl.load(PART_L + (base + s) * rows + r, mask=s_ok, other=float("-inf")) - m)
        w_vec += w
        o = tl.load(PART_O + ((base + s) * rows + r)[:, None] * HEAD_DIM + offs_d[None, :],
                    mask=s_ok[:, None] & d_ok[None, :], other=0.0)
        acc += tl.sum(w[:, None] * o, 0)
    denom = tl.sum(w_vec, 0)
    d_safe = tl.where(denom == 0.0, 1.0, denom)
    qi = r // group
    h = hk * group + r % group
    nheads = nheads_k * group
    b64 = b.to(tl.int64)
    tl.store(O + ((b64 * seqlen_q + qi) * nheads + h) * HEAD_DIM + offs_d, (acc / d_safe).to(O.dtype.element_ty),
             mask=d_ok)
    if STORE_LSE:
        lse = tl.where(denom == 0.0, float("-inf"), (m + tl.math.log2(d_safe)) * LN2)
        tl.store(LSE + (b64 * nheads + h) * seqlen_q + qi, lse)
