"""Triton kernels for exact tiled attention (FlashAttention-2 algorithm).

Layout: every tensor is addressed as ``base + b*stride_b + (start + row)*stride_n + h*stride_h + d``
with a unit stride over the head dimension, so the padded layout (batch, seqlen, nheads, headdim),
varlen packing (total, nheads, headdim) with ``cu_seqlens`` and strided views of packed qkv all go
through the same code. Scores are kept in log2 units (``qk_scale = softmax_scale * log2(e)``) so the
softmax uses ``exp2``. Query row ``i`` sees key ``j`` when ``i + diag - left <= j <= i + diag + right``
with ``diag = seqlen_k - seqlen_q`` (bottom-right alignment; causal is ``right = 0``).

Three kernels (the backward launches dQ first, then dK/dV):
  * ``_attn_fwd``: one program per (query block, batch, head); online softmax over key blocks;
    writes the output and the log-sum-exp (natural log, -inf for rows that see no key), and on the
    debug path the dropout-masked probabilities.
  * ``_attn_bwd_dq``: one program per (query block, batch, head); computes delta = rowsum(dO * O) for
    its rows (stored for the next kernel) and loops over key blocks.
  * ``_attn_bwd_dkdv``: one program per (key block, batch, kv head); loops over the query heads of
    its group and the query blocks that can see it; no atomics, so gradients are deterministic.
"""

import triton
import triton.language as tl

LOG2E = 1.4426950408889634
LN2: tl.constexpr = tl.constexpr(0.6931471805599453)


@triton.jit
def _philox_uniform(seed_lo, seed_hi, c0, c1, c2):
    """Philox-4x32-10 on counters (c0, c1, c2, 0); first output word as a uniform float in [0, 1)."""
    c3 = c0 * 0
    k0 = seed_lo
    k1 = seed_hi
    for _ in tl.static_range(10):
        _c0 = c0
        _c2 = c2
        c0 = tl.umulhi(_c2, 0xCD9E8D57) ^ c1 ^ k0
        c2 = tl.umulhi(_c0, 0xD2511F53) ^ c3 ^ k1
        c1 = _c2 * 0xCD9E8D57
        c3 = _c0 * 0xD2511F53
        k0 = k0 + 0x9E3779B9
        k1 = k1 + 0xBB67AE85
    return (c0 >> 8).to(tl.float32) * (1.0 / 16777216.0)


@triton.jit
def _dropout_keep(SEED, bh, i2d, j2d, dropout_p):
    """Keep mask for query head ``bh`` at rows ``i2d`` and columns ``j2d`` (broadcastable 2-D int tensors)."""
    seed = tl.load(SEED)
    seed_lo = (seed & 0xFFFFFFFF).to(tl.uint32)
    seed_hi = ((seed >> 32) & 0xFFFFFFFF).to(tl.uint32)
    c0 = (j2d + i2d * 0).to(tl.uint32)
    c1 = (i2d + j2d * 0).to(tl.uint32)
    c2 = c0 * 0 + bh.to(tl.uint32)
    return _philox_uniform(seed_lo, seed_hi, c0, c1, c2) >= dropout_p


@triton.jit
def _bias_and_mask(s, i2d, j2d, k_len, diag, slope, window_left, window_right,
                   MASK: tl.constexpr, HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, HAS_ALIBI: tl.constexpr):
    """Add ALiBi to scores ``s`` (log2 units) at rows ``i2d`` / keys ``j2d``; on edge tiles (``MASK``) set
    keys past the sequence or outside the window to -inf."""
    if HAS_ALIBI:
        s += -slope * tl.abs(i2d + diag - j2d).to(tl.float32)
    if MASK:
        keep = j2d < k_len
        if HAS_RIGHT:
            keep = keep & (j2d <= i2d + diag + window_right)
        if HAS_LEFT:
            keep = keep & (j2d >= i2d + diag - window_left)
        s = tl.where(keep, s, float("-inf"))
    return s


@triton.jit
def _key_blocks(m0, k_len, diag, window_left, window_right, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr):
    """Key range seen by query rows [m0, m0 + BLOCK_M): returns (lo, full_lo, full_hi, hi) where blocks in
    [full_lo, full_hi) are seen completely by every row (no mask needed) and the edges [lo, full_lo),
    [full_hi, hi) need the window/length mask. lo and full_lo/full_hi are multiples of BLOCK_N."""
    lo = 0
    hi = k_len
    if HAS_RIGHT:
        hi = tl.minimum(hi, m0 + BLOCK_M + diag + window_right)
    if HAS_LEFT:
        lo = (tl.maximum(0, m0 + diag - window_left) // BLOCK_N) * BLOCK_N
    full_hi = (k_len // BLOCK_N) * BLOCK_N
    if HAS_RIGHT:
        full_hi = tl.minimum(full_hi, ((m0 + diag + window_right + 1) // BLOCK_N) * BLOCK_N)
    full_lo = lo
    if HAS_LEFT:
        first = m0 + BLOCK_M - 1 + diag - window_left
        full_lo = tl.maximum(lo, ((first + BLOCK_N - 1) // BLOCK_N) * BLOCK_N)
    full_lo = tl.minimum(full_lo, hi)
    full_hi = tl.maximum(tl.minimum(full_hi, hi), full_lo)
    return lo, full_lo, full_hi, hi


@triton.jit
def _query_blocks(n0, q_len, k_len, diag, window_left, window_right, BLOCK_M: tl.constexpr,
                  BLOCK_N: tl.constexpr, HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr):
    """Query rows that see keys [n0, n0 + BLOCK_N) (j - diag - right <= i <= j - diag + left): returns
    (lo, full_lo, full_hi, hi); query blocks in [full_lo, full_hi) see every key of the block (no mask),
    the edges [lo, full_lo), [full_hi, hi) need the mask."""
    m_lo = 0
    m_hi = q_len
    if HAS_RIGHT:
        m_lo = (tl.maximum(0, n0 - diag - window_right) // BLOCK_M) * BLOCK_M
    if HAS_LEFT:
        m_hi = tl.minimum(q_len, n0 + BLOCK_N + window_left - diag)
    full_lo = m_lo
    full_hi = (q_len // BLOCK_M) * BLOCK_M
    if HAS_RIGHT:
        full_lo = tl.maximum(m_lo, ((n0 + BLOCK_N - 1 - diag - window_right + BLOCK_M - 1) // BLOCK_M) * BLOCK_M)
    if HAS_LEFT:
        full_hi = tl.minimum(full_hi, ((n0 - diag + window_left + 1) // BLOCK_M) * BLOCK_M)
    if n0 + BLOCK_N > k_len:
        full_hi = full_lo
    full_lo = tl.minimum(full_lo, m_hi)
    full_hi = tl.maximum(tl.minimum(full_hi, m_hi), full_lo)
    return m_lo, full_lo, full_hi, m_hi


@triton.jit
def _seq_bounds(CU, b, seqlen, IS_VARLEN: tl.constexpr):
    if IS_VARLEN:
        start = tl.load(CU + b)
        length = tl.load(CU + b + 1) - start
    else:
        start = 0
        length = seqlen
    return start, length


@triton.jit
def _load_rows(ptrs, row_ok, offs_d, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, ROW_MASK: tl.constexpr,
               UPCAST: tl.constexpr):
    """Load a (rows, BLOCK_D) tile; rows masked by ``row_ok`` only on edge tiles, columns only when the
    head dim is not a power of two."""
    if ROW_MASK:
        x = tl.load(ptrs, mask=row_ok[:, None] & (offs_d < HEAD_DIM)[None, :], other=0.0)
    elif HEAD_DIM != BLOCK_D:
        x = tl.load(ptrs, mask=(offs_d < HEAD_DIM)[None, :], other=0.0)
    else:
        x = tl.load(ptrs)
    if UPCAST:
        x = x.to(tl.float32)
    return x


@triton.jit
def _load_cols(ptrs, col_ok, offs_d, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, COL_MASK: tl.constexpr,
               UPCAST: tl.constexpr):
    """Load a transposed (BLOCK_D, cols) tile."""
    if COL_MASK:
        x = tl.load(ptrs, mask=(offs_d < HEAD_DIM)[:, None] & col_ok[None, :], other=0.0)
    elif HEAD_DIM != BLOCK_D:
        x = tl.load(ptrs, mask=(offs_d < HEAD_DIM)[:, None], other=0.0)
    else:
        x = tl.load(ptrs)
    if UPCAST:
        x = x.to(tl.float32)
    return x


@triton.jit
def _fwd_inner(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_vn, k_start, offs_m, offs_d, k_len, diag,
               qk_scale, slope, window_left, window_right, SEED, bh, dropout_p, lo, hi,
               HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, MASK: tl.constexpr,
               HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, HAS_ALIBI: tl.constexpr,
               HAS_DROPOUT: tl.constexpr, UPCAST: tl.constexpr, DOT_PREC: tl.constexpr):
    """Online-softmax accumulation over key blocks [lo, hi)."""
    offs_n0 = tl.arange(0, BLOCK_N)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + offs_n0
        cols = (k_start + offs_n).to(tl.int64)
        n_ok = offs_n < k_len
        k = _load_rows(k_base + cols[:, None] * stride_kn + offs_d[None, :], n_ok, offs_d, HEAD_DIM, BLOCK_D,
                       MASK, UPCAST)
        v = _load_rows(v_base + cols[:, None] * stride_vn + offs_d[None, :], n_ok, offs_d, HEAD_DIM, BLOCK_D,
                       MASK, UPCAST)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * qk_scale
        s = _bias_and_mask(s, offs_m[:, None], offs_n[None, :], k_len, diag, slope, window_left, window_right,
                           MASK, HAS_LEFT, HAS_RIGHT, HAS_ALIBI)
        m_new = tl.maximum(m_i, tl.max(s, 1))
        if MASK:  # a row may have seen only masked keys so far
            m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        else:
            m_use = m_new
        p = tl.math.exp2(s - m_use[:, None])
        alpha = tl.math.exp2(m_i - m_use)
        l_i = l_i * alpha + tl.sum(p, 1)
        if HAS_DROPOUT:
            keep = _dropout_keep(SEED, bh, offs_m[:, None], offs_n[None, :], dropout_p)
            p = tl.where(keep, p, 0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PREC)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _attn_fwd(
    Q, K, V, O, LSE, P, SEED, ALIBI, CU_Q, CU_K,
    stride_qb, stride_qn, stride_qh,
    stride_kb, stride_kn, stride_kh,
    stride_vb, stride_vn, stride_vh,
    stride_ob, stride_on, stride_oh,
    stride_lb, stride_lh,
    stride_pb, stride_ph, stride_pm,
    stride_ab,
    nheads, group, seqlen_q, seqlen_k,
    qk_scale, dropout_p, window_left, window_right,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    IS_VARLEN: tl.constexpr, HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, HAS_ALIBI: tl.constexpr,
    HAS_DROPOUT: tl.constexpr, RETURN_P: tl.constexpr, MASK_N: tl.constexpr, UPCAST: tl.constexpr,
    DOT_PREC: tl.constexpr, REV_M: tl.constexpr,
):
    pid_m = tl.program_id(0)
    if REV_M:  # causal: the last query blocks see the most keys; start them first so the tail is short
        pid_m = tl.num_programs(0) - 1 - pid_m
    b = tl.program_id(1)
    h = tl.program_id(2)
    hk = h // group
    q_start, q_len = _seq_bounds(CU_Q, b, seqlen_q, IS_VARLEN)
    k_start, k_len = _seq_bounds(CU_K, b, seqlen_k, IS_VARLEN)
    m0 = pid_m * BLOCK_M
    if m0 >= q_len:
        return
    diag = k_len - q_len
    b64 = b.to(tl.int64)
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    m_ok = offs_m < q_len
    rows = (q_start + offs_m).to(tl.int64)
    q = _load_rows(Q + b64 * stride_qb + rows[:, None] * stride_qn + h * stride_qh + offs_d[None, :], m_ok, offs_d,
                   HEAD_DIM, BLOCK_D, True, UPCAST)
    k_base = K + b64 * stride_kb + hk * stride_kh
    v_base = V + b64 * stride_vb + hk * stride_vh
    slope = 0.0
    if HAS_ALIBI:
        slope = tl.load(ALIBI + b * stride_ab + h) * 1.4426950408889634
    bh = b * nheads + h

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    if HAS_LEFT or HAS_RIGHT or MASK_N:
        lo, full_lo, full_hi, hi = _key_blocks(m0, k_len, diag, window_left, window_right, BLOCK_M, BLOCK_N,
                                               HAS_LEFT, HAS_RIGHT)
        # Edge blocks are masked; the interior runs without mask arithmetic.
        acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_vn, k_start, offs_m, offs_d,
                                   k_len, diag, qk_scale, slope, window_left, window_right, SEED, bh, dropout_p,
                                   full_hi, hi, HEAD_DIM, BLOCK_D, BLOCK_N, True, HAS_LEFT, HAS_RIGHT, HAS_ALIBI,
                                   HAS_DROPOUT, UPCAST, DOT_PREC)
        acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_vn, k_start, offs_m, offs_d,
                                   k_len, diag, qk_scale, slope, window_left, window_right, SEED, bh, dropout_p,
                                   full_lo, full_hi, HEAD_DIM, BLOCK_D, BLOCK_N, False, HAS_LEFT, HAS_RIGHT,
                                   HAS_ALIBI, HAS_DROPOUT, UPCAST, DOT_PREC)
        acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_vn, k_start, offs_m, offs_d,
                                   k_len, diag, qk_scale, slope, window_left, window_right, SEED, bh, dropout_p,
                                   lo, full_lo, HEAD_DIM, BLOCK_D, BLOCK_N, True, HAS_LEFT, HAS_RIGHT, HAS_ALIBI,
                                   HAS_DROPOUT, UPCAST, DOT_PREC)
    else:
        acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_vn, k_start, offs_m, offs_d,
                                   k_len, diag, qk_scale, slope, window_left, window_right, SEED, bh, dropout_p,
                                   0, k_len, HEAD_DIM, BLOCK_D, BLOCK_N, False, HAS_LEFT, HAS_RIGHT, HAS_ALIBI,
                                   HAS_DROPOUT, UPCAST, DOT_PREC)

    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    out = acc / l_safe[:, None]
    if HAS_DROPOUT:
        out = out * (1.0 / (1.0 - dropout_p))
    lse2 = tl.where(l_i == 0.0, float("-inf"), m_i + tl.math.log2(l_safe))
    tl.store(O + b64 * stride_ob + rows[:, None] * stride_on + h * stride_oh + offs_d[None, :],
             out.to(O.dtype.element_ty), mask=m_ok[:, None] & (offs_d < HEAD_DIM)[None, :])
    tl.store(LSE + b64 * stride_lb + h * stride_lh + q_start + offs_m, lse2 * 0.6931471805599453, mask=m_ok)

    if RETURN_P:
        # Debug path: normalised probabilities with dropped entries set to 0, over the whole row.
        lse_use = tl.where(l_i == 0.0, float("inf"), lse2)
        p_base = P + b64 * stride_pb + h * stride_ph + offs_m[:, None].to(tl.int64) * stride_pm
        offs_n0 = tl.arange(0, BLOCK_N)
        for start_n in range(0, k_len, BLOCK_N):
            offs_n = start_n + offs_n0
            n_ok = offs_n < k_len
            cols = (k_start + offs_n).to(tl.int64)
            k = _load_rows(k_base + cols[:, None] * stride_kn + offs_d[None, :], n_ok, offs_d, HEAD_DIM, BLOCK_D,
                           True, UPCAST)
            s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * qk_scale
            s = _bias_and_mask(s, offs_m[:, None], offs_n[None, :], k_len, diag, slope, window_left, window_right,
                               True, HAS_LEFT, HAS_RIGHT, HAS_ALIBI)
            p = tl.math.exp2(s - lse_use[:, None])
            if HAS_DROPOUT:
                keep = _dropout_keep(SEED, bh, offs_m[:, None], offs_n[None, :], dropout_p)
                p = tl.where(keep, p, 0.0)
            tl.store(p_base + offs_n[None, :], p, mask=m_ok[:, None] & n_ok[None, :])


@triton.jit
def _query_tile_t(k, q_base, do_base, l_base, stride_qn, stride_don, q_start, offs_m, offs_n, offs_d, q_len, k_len,
                  diag, qk_scale, slope, window_left, window_right,
                  HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, MASK: tl.constexpr, HAS_LEFT: tl.constexpr,
                  HAS_RIGHT: tl.constexpr, HAS_ALIBI: tl.constexpr, UPCAST: tl.constexpr, DOT_PREC: tl.constexpr):
    """One query block as seen from a key block (the dK/dV kernels): loads q transposed (BLOCK_D, rows) and
    dO (rows, BLOCK_D), recomputes the probabilities in transposed form (keys, rows) from the stored
    log-sum-exp; rows past the end get probability 0. Returns (m_ok, q_t, do, p_t)."""
    m_ok = offs_m < q_len
    rows = (q_start + offs_m).to(tl.int64)
    q_t = _load_cols(q_base + rows[None, :] * stride_qn + offs_d[:, None], m_ok, offs_d, HEAD_DIM, BLOCK_D,
                     MASK, UPCAST)
    do = _load_rows(do_base + rows[:, None] * stride_don + offs_d[None, :], m_ok, offs_d, HEAD_DIM, BLOCK_D,
                    MASK, UPCAST)
    if MASK:
        lse = tl.load(l_base + offs_m, mask=m_ok, other=float("inf"))
    else:
        lse = tl.load(l_base + offs_m)
    lse = tl.where(lse == float("-inf"), float("inf"), lse) * 1.4426950408889634
    s_t = tl.dot(k, q_t, input_precision=DOT_PREC) * qk_scale
    s_t = _bias_and_mask(s_t, offs_m[None, :], offs_n[:, None], k_len, diag, slope, window_left, window_right,
                         MASK, HAS_LEFT, HAS_RIGHT, HAS_ALIBI)
    return m_ok, q_t, do, tl.math.exp2(s_t - lse[None, :])


@triton.jit
def _dkdv_inner(dk, dv, k, v, q_base, do_base, l_base, dl_base, stride_qn, stride_don, q_start, offs_n, offs_d,
                q_len, k_len, diag, qk_scale, slope, window_left, window_right, SEED, bh, dropout_p, lo, hi,
                HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, MASK: tl.constexpr,
                HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, HAS_ALIBI: tl.constexpr,
                HAS_DROPOUT: tl.constexpr, UPCAST: tl.constexpr, DOT_PREC: tl.constexpr):
    """Accumulate dK, dV of one key block over query blocks [lo, hi), in transposed form
    (scores as (keys, queries)) so no register tile needs a transpose before a dot."""
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
            pd_t = tl.where(keep, p_t * rp_drop, 0.0)
            dp_t = tl.where(keep, dp_t * rp_drop, 0.0)
        else:
            pd_t = p_t
        dv += tl.dot(pd_t.to(do.dtype), do, input_precision=DOT_PREC)
        ds_t = p_t * (dp_t - delta[None, :])
        dk += tl.dot(ds_t.to(q_t.dtype), tl.trans(q_t), input_precision=DOT_PREC)
    return dk, dv


@triton.jit
def _attn_bwd_dkdv(
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
    REV_M: tl.constexpr,  # unused here: under causal masking key block 0 has the most work and already starts first
):
    pid_n = tl.program_id(0)
    b = tl.program_id(1)
    hk = tl.program_id(2)
    q_start, q_len = _seq_bounds(CU_Q, b, seqlen_q, IS_VARLEN)
    k_start, k_len = _seq_bounds(CU_K, b, seqlen_k, IS_VARLEN)
    n0 = pid_n * BLOCK_N
    if n0 >= k_len:
        return
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
        dl_base = DELTA + b64 * stride_lb + h * stride_lh + q_start
        dk, dv = _dkdv_inner(dk, dv, k, v, q_base, do_base, l_base, dl_base, stride_qn, stride_don, q_start, offs_n,
                             offs_d, q_len, k_len, diag, qk_scale, slope, window_left, window_right, SEED, bh,
                             dropout_p, m_lo, full_lo, HEAD_DIM, BLOCK_D, BLOCK_M, True, HAS_LEFT, HAS_RIGHT,
                             HAS_ALIBI, HAS_DROPOUT, UPCAST, DOT_PREC)
        dk, dv = _dkdv_inner(dk, dv, k, v, q_base, do_base, l_base, dl_base, stride_qn, stride_don, q_start, offs_n,
                             offs_d, q_len, k_len, diag, qk_scale, slope, window_left, window_right, SEED, bh,
                             dropout_p, full_lo, full_hi, HEAD_DIM, BLOCK_D, BLOCK_M, False, HAS_LEFT, HAS_RIGHT,
                             HAS_ALIBI, HAS_DROPOUT, UPCAST, DOT_PREC)
        dk, dv = _dkdv_inner(dk, dv, k, v, q_base, do_base, l_base, dl_base, stride_qn, stride_don, q_start, offs_n,
                             offs_d, q_len, k_len, diag, qk_scale, slope, window_left, window_right, SEED, bh,
                             dropout_p, full_hi, m_hi, HEAD_DIM, BLOCK_D, BLOCK_M, True, HAS_LEFT, HAS_RIGHT,
                             HAS_ALIBI, HAS_DROPOUT, UPCAST, DOT_PREC)
    dk = dk * sm_scale
    kv_mask = n_ok[:, None] & (offs_d < HEAD_DIM)[None, :]
    tl.store(DK + b64 * stride_dkb + hk * stride_dkh + cols[:, None] * stride_dkn + offs_d[None, :],
             dk.to(DK.dtype.element_ty), mask=kv_mask)
    tl.store(DV + b64 * stride_dvb + hk * stride_dvh + cols[:, None] * stride_dvn + offs_d[None, :],
             dv.to(DV.dtype.element_ty), mask=kv_mask)


@triton.jit
def _dq_inner(dq, q, do, lse, delta, k_base, v_base, stride_kn, stride_vn, k_start, offs_m, offs_d, k_len, diag,
              qk_scale, slope, window_left, window_right, SEED, bh, dropout_p, lo, hi,
              HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, MASK: tl.constexpr,
              HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, HAS_ALIBI: tl.constexpr,
              HAS_DROPOUT: tl.constexpr, UPCAST: tl.constexpr, DOT_PREC: tl.constexpr):
    """Accumulate dQ of one query block over key blocks [lo, hi)."""
    offs_n0 = tl.arange(0, BLOCK_N)
    rp_drop = 1.0 / (1.0 - dropout_p)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + offs_n0
        n_ok = offs_n < k_len
        cols = (k_start + offs_n).to(tl.int64)
        k = _load_rows(k_base + cols[:, None] * stride_kn + offs_d[None, :], n_ok, offs_d, HEAD_DIM, BLOCK_D,
                       MASK, UPCAST)
        v = _load_rows(v_base + cols[:, None] * stride_vn + offs_d[None, :], n_ok, offs_d, HEAD_DIM, BLOCK_D,
                       MASK, UPCAST)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * qk_scale
        s = _bias_and_mask(s, offs_m[:, None], offs_n[None, :], k_len, diag, slope, window_left, window_right,
                           MASK, HAS_LEFT, HAS_RIGHT, HAS_ALIBI)
        p = tl.math.exp2(s - lse[:, None])
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PREC)
        if HAS_DROPOUT:
            keep = _dropout_keep(SEED, bh, offs_m[:, None], offs_n[None, :], dropout_p)
            dp = tl.where(keep, dp * rp_drop, 0.0)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=DOT_PREC)
    return dq


@triton.jit
def _attn_bwd_dq(
    Q, K, V, DO, LSE, DELTA, DQ, SEED, ALIBI, CU_Q, CU_K, O,
    stride_qb, stride_qn, stride_qh,
    stride_kb, stride_kn, stride_kh,
    stride_vb, stride_vn, stride_vh,
    stride_dob, stride_don, stride_doh,
    stride_dqb, stride_dqn, stride_dqh,
    stride_ob, stride_on, stride_oh,
    stride_lb, stride_lh,
    stride_ab,
    nheads, group, seqlen_q, seqlen_k,
    qk_scale, sm_scale, dropout_p, window_left, window_right,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    IS_VARLEN: tl.constexpr, HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, HAS_ALIBI: tl.constexpr,
    HAS_DROPOUT: tl.constexpr, MASK_N: tl.constexpr, UPCAST: tl.constexpr, DOT_PREC: tl.constexpr,
    REV_M: tl.constexpr,
):
    pid_m = tl.program_id(0)
    if REV_M:
        pid_m = tl.num_programs(0) - 1 - pid_m
    b = tl.program_id(1)
    h = tl.program_id(2)
    hk = h // group
    q_start, q_len = _seq_bounds(CU_Q, b, seqlen_q, IS_VARLEN)
    k_start, k_len = _seq_bounds(CU_K, b, seqlen_k, IS_VARLEN)
    m0 = pid_m * BLOCK_M
    if m0 >= q_len:
        return
    diag = k_len - q_len
    b64 = b.to(tl.int64)
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    m_ok = offs_m < q_len
    rows = (q_start + offs_m).to(tl.int64)
    q = _load_rows(Q + b64 * stride_qb + h * stride_qh + rows[:, None] * stride_qn + offs_d[None, :], m_ok, offs_d,
                   HEAD_DIM, BLOCK_D, True, UPCAST)
    do = _load_rows(DO + b64 * stride_dob + h * stride_doh + rows[:, None] * stride_don + offs_d[None, :], m_ok,
                    offs_d, HEAD_DIM, BLOCK_D, True, UPCAST)
    lse = tl.load(LSE + b64 * stride_lb + h * stride_lh + q_start + offs_m, mask=m_ok, other=float("inf"))
    lse = tl.where(lse == float("-inf"), float("inf"), lse) * 1.4426950408889634
    # delta_i = rowsum(dO_i * O_i): computed here (this kernel runs before the dK/dV kernel, which reads it)
    # rather than in a launch of its own, whose host cost rivals the kernels at short sequence lengths.
    o = _load_rows(O + b64 * stride_ob + h * stride_oh + rows[:, None] * stride_on + offs_d[None, :], m_ok, offs_d,
                   HEAD_DIM, BLOCK_D, True, UPCAST)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), axis=1)
    tl.store(DELTA + b64 * stride_lb + h * stride_lh + q_start + offs_m, delta, mask=m_ok)
    k_base = K + b64 * stride_kb + hk * stride_kh
    v_base = V + b64 * stride_vb + hk * stride_vh
    slope = 0.0
    if HAS_ALIBI:
        slope = tl.load(ALIBI + b * stride_ab + h) * 1.4426950408889634
    bh = b * nheads + h
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    if HAS_LEFT or HAS_RIGHT or MASK_N:
        lo, full_lo, full_hi, hi = _key_blocks(m0, k_len, diag, window_left, window_right, BLOCK_M, BLOCK_N,
                                               HAS_LEFT, HAS_RIGHT)
        dq = _dq_inner(dq, q, do, lse, delta, k_base, v_base, stride_kn, stride_vn, k_start, offs_m, offs_d, k_len,
                       diag, qk_scale, slope, window_left, window_right, SEED, bh, dropout_p, lo, full_lo,
                       HEAD_DIM, BLOCK_D, BLOCK_N, True, HAS_LEFT, HAS_RIGHT, HAS_ALIBI, HAS_DROPOUT, UPCAST,
                       DOT_PREC)
        dq = _dq_inner(dq, q, do, lse, delta, k_base, v_base, stride_kn, stride_vn, k_start, offs_m, offs_d, k_len,
                       diag, qk_scale, slope, window_left, window_right, SEED, bh, dropout_p, full_lo, full_hi,
                       HEAD_DIM, BLOCK_D, BLOCK_N, False, HAS_LEFT, HAS_RIGHT, HAS_ALIBI, HAS_DROPOUT, UPCAST,
                       DOT_PREC)
        dq = _dq_inner(dq, q, do, lse, delta, k_base, v_base, stride_kn, stride_vn, k_start, offs_m, offs_d, k_len,
                       diag, qk_scale, slope, window_left, window_right, SEED, bh, dropout_p, full_hi, hi,
                       HEAD_DIM, BLOCK_D, BLOCK_N, True, HAS_LEFT, HAS_RIGHT, HAS_ALIBI, HAS_DROPOUT, UPCAST,
                       DOT_PREC)
    else:
        dq = _dq_inner(dq, q, do, lse, delta, k_base, v_base, stride_kn, stride_vn, k_start, offs_m, offs_d, k_len,
                       diag, qk_scale, slope, window_left, window_right, SEED, bh, dropout_p, 0, k_len,
                       HEAD_DIM, BLOCK_D, BLOCK_N, False, HAS_LEFT, HAS_RIGHT, HAS_ALIBI, HAS_DROPOUT, UPCAST,
                       DOT_PREC)
    dq = dq * sm_scale
    tl.store(DQ + b64 * stride_dqb + h * stride_dqh + rows[:, None] * stride_dqn + offs_d[None, :],
             dq.to(DQ.dtype.element_ty), mask=m_ok[:, None] & (offs_d < HEAD_DIM)[None, :])
