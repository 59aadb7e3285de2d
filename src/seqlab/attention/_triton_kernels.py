"""Triton kernels for exact tiled attention (FlashAttention-2 algorithm).

Layout: every tensor is addressed as ``base + b*stride_b + (start + row)*stride_n + h*stride_h + d``
with a unit stride over the head dimension, so the padded layout (batch, seqlen, nheads, headdim),
varlen packing (total, nheads, headdim) with ``cu_seqlens`` and strided views of packed qkv all go
through the same code. Scores are kept in log2 units (``qk_scale = softmax_scale * log2(e)``) so the
softmax uses ``exp2``. Query row ``i`` sees key ``j`` when ``i + diag - left <= j <= i + diag + right``
with ``diag = seqlen_k - seqlen_q`` (bottom-right alignment; causal is ``right = 0``).

Three kernels:
  * ``_attn_fwd``: one program per (query block, batch, head); online softmax over key blocks;
    writes the output and the log-sum-exp (natural log, -inf for rows that see no key), and on the
    debug path the dropout-masked probabilities.
  * ``_attn_bwd_dkdv``: one program per (key block, batch, kv head); loops over the query heads of
    its group and the query blocks that can see it; no atomics, so gradients are deterministic.
  * ``_attn_bwd_dq``: one program per (query block, batch, head); loops over key blocks.
"""

import triton
import triton.language as tl

LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453


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
def _dropout_keep(SEED, bh, offs_m, offs_n, dropout_p, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Keep mask (BLOCK_M, BLOCK_N) for query head ``bh``, rows ``offs_m``, columns ``offs_n``."""
    seed = tl.load(SEED)
    seed_lo = (seed & 0xFFFFFFFF).to(tl.uint32)
    seed_hi = ((seed >> 32) & 0xFFFFFFFF).to(tl.uint32)
    zero = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.uint32)
    c0 = zero + offs_n[None, :].to(tl.uint32)
    c1 = zero + offs_m[:, None].to(tl.uint32)
    c2 = zero + bh.to(tl.uint32)
    return _philox_uniform(seed_lo, seed_hi, c0, c1, c2) >= dropout_p


@triton.jit
def _score_tile(q, k, offs_m, offs_n, k_len, diag, qk_scale, slope, window_left, window_right,
                HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, HAS_ALIBI: tl.constexpr,
                MASK_N: tl.constexpr, DOT_PREC: tl.constexpr):
    """Scores (BLOCK_M, BLOCK_N) in log2 units with ALiBi and the window/length masks applied."""
    s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * qk_scale
    if HAS_ALIBI:
        s += -slope * tl.abs(offs_m[:, None] + diag - offs_n[None, :]).to(tl.float32)
    if MASK_N or HAS_LEFT or HAS_RIGHT:
        keep = offs_n[None, :] < k_len
        if HAS_RIGHT:
            keep = keep & (offs_n[None, :] <= offs_m[:, None] + diag + window_right)
        if HAS_LEFT:
            keep = keep & (offs_n[None, :] >= offs_m[:, None] + diag - window_left)
        s = tl.where(keep, s, float("-inf"))
    return s


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
    DOT_PREC: tl.constexpr,
):
    pid_m = tl.program_id(0)
    b = tl.program_id(1)
    h = tl.program_id(2)
    hk = h // group
    q_start, q_len = _seq_bounds(CU_Q, b, seqlen_q, IS_VARLEN)
    k_start, k_len = _seq_bounds(CU_K, b, seqlen_k, IS_VARLEN)
    if pid_m * BLOCK_M >= q_len:
        return
    diag = k_len - q_len
    b64 = b.to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    m_mask = offs_m < q_len
    d_mask = offs_d < HEAD_DIM
    rows = (q_start + offs_m).to(tl.int64)
    q = tl.load(Q + b64 * stride_qb + rows[:, None] * stride_qn + h * stride_qh + offs_d[None, :],
                mask=m_mask[:, None] & d_mask[None, :], other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
    k_base = K + b64 * stride_kb + hk * stride_kh
    v_base = V + b64 * stride_vb + hk * stride_vh

    lo = 0
    hi = k_len
    if HAS_RIGHT:
        hi = tl.minimum(hi, pid_m * BLOCK_M + BLOCK_M + diag + window_right)
    if HAS_LEFT:
        lo = tl.maximum(0, pid_m * BLOCK_M + diag - window_left)
        lo = (lo // BLOCK_N) * BLOCK_N
    slope = 0.0
    if HAS_ALIBI:
        slope = tl.load(ALIBI + b * stride_ab + h) * 1.4426950408889634
    bh = b * nheads + h

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + offs_n0
        kv_mask = (offs_n < k_len)[:, None] & d_mask[None, :]
        cols = (k_start + offs_n).to(tl.int64)
        k = tl.load(k_base + cols[:, None] * stride_kn + offs_d[None, :], mask=kv_mask, other=0.0)
        v = tl.load(v_base + cols[:, None] * stride_vn + offs_d[None, :], mask=kv_mask, other=0.0)
        if UPCAST:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        s = _score_tile(q, k, offs_m, offs_n, k_len, diag, qk_scale, slope, window_left, window_right,
                        HAS_LEFT, HAS_RIGHT, HAS_ALIBI, MASK_N, DOT_PREC)
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.math.exp2(s - m_use[:, None])
        alpha = tl.math.exp2(m_i - m_use)
        l_i = l_i * alpha + tl.sum(p, 1)
        if HAS_DROPOUT:
            keep = _dropout_keep(SEED, bh, offs_m, offs_n, dropout_p, BLOCK_M, BLOCK_N)
            p = tl.where(keep, p, 0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PREC)
        m_i = m_new

    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    out = acc / l_safe[:, None]
    if HAS_DROPOUT:
        out = out * (1.0 / (1.0 - dropout_p))
    lse2 = m_i + tl.math.log2(l_safe)
    lse2 = tl.where(l_i == 0.0, float("-inf"), lse2)
    tl.store(O + b64 * stride_ob + rows[:, None] * stride_on + h * stride_oh + offs_d[None, :],
             out.to(O.dtype.element_ty), mask=m_mask[:, None] & d_mask[None, :])
    tl.store(LSE + b64 * stride_lb + h * stride_lh + q_start + offs_m, lse2 * 0.6931471805599453, mask=m_mask)

    if RETURN_P:
        # Debug path: normalised probabilities with dropped entries set to 0, over the whole row.
        lse_use = tl.where(l_i == 0.0, float("inf"), lse2)
        p_base = P + b64 * stride_pb + h * stride_ph + offs_m[:, None].to(tl.int64) * stride_pm
        for start_n in range(0, k_len, BLOCK_N):
            offs_n = start_n + offs_n0
            n_mask = offs_n < k_len
            cols = (k_start + offs_n).to(tl.int64)
            k = tl.load(k_base + cols[:, None] * stride_kn + offs_d[None, :],
                        mask=n_mask[:, None] & d_mask[None, :], other=0.0)
            if UPCAST:
                k = k.to(tl.float32)
            s = _score_tile(q, k, offs_m, offs_n, k_len, diag, qk_scale, slope, window_left, window_right,
                            HAS_LEFT, HAS_RIGHT, HAS_ALIBI, MASK_N, DOT_PREC)
            p = tl.math.exp2(s - lse_use[:, None])
            if HAS_DROPOUT:
                keep = _dropout_keep(SEED, bh, offs_m, offs_n, dropout_p, BLOCK_M, BLOCK_N)
                p = tl.where(keep, p, 0.0)
            tl.store(p_base + offs_n[None, :], p, mask=m_mask[:, None] & n_mask[None, :])


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
):
    pid_n = tl.program_id(0)
    b = tl.program_id(1)
    hk = tl.program_id(2)
    q_start, q_len = _seq_bounds(CU_Q, b, seqlen_q, IS_VARLEN)
    k_start, k_len = _seq_bounds(CU_K, b, seqlen_k, IS_VARLEN)
    if pid_n * BLOCK_N >= k_len:
        return
    diag = k_len - q_len
    b64 = b.to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m0 = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    n_mask = offs_n < k_len
    d_mask = offs_d < HEAD_DIM
    cols = (k_start + offs_n).to(tl.int64)
    kv_mask = n_mask[:, None] & d_mask[None, :]
    k = tl.load(K + b64 * stride_kb + hk * stride_kh + cols[:, None] * stride_kn + offs_d[None, :],
                mask=kv_mask, other=0.0)
    v = tl.load(V + b64 * stride_vb + hk * stride_vh + cols[:, None] * stride_vn + offs_d[None, :],
                mask=kv_mask, other=0.0)
    if UPCAST:
        k = k.to(tl.float32)
        v = v.to(tl.float32)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)

    # Query rows that can see this key block: j - diag - right <= i <= j - diag + left.
    m_lo = 0
    m_hi = q_len
    if HAS_RIGHT:
        m_lo = tl.maximum(0, pid_n * BLOCK_N - diag - window_right)
        m_lo = (m_lo // BLOCK_M) * BLOCK_M
    if HAS_LEFT:
        m_hi = tl.minimum(q_len, pid_n * BLOCK_N + BLOCK_N + window_left - diag)
    rp_drop = 1.0 / (1.0 - dropout_p)
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
        for start_m in range(m_lo, m_hi, BLOCK_M):
            offs_m = start_m + offs_m0
            m_mask = offs_m < q_len
            rows = (q_start + offs_m).to(tl.int64)
            qd_mask = m_mask[:, None] & d_mask[None, :]
            q = tl.load(q_base + rows[:, None] * stride_qn + offs_d[None, :], mask=qd_mask, other=0.0)
            do = tl.load(do_base + rows[:, None] * stride_don + offs_d[None, :], mask=qd_mask, other=0.0)
            if UPCAST:
                q = q.to(tl.float32)
                do = do.to(tl.float32)
            lse = tl.load(l_base + offs_m, mask=m_mask, other=float("inf"))
            lse = tl.where(lse == float("-inf"), float("inf"), lse) * 1.4426950408889634
            delta = tl.load(dl_base + offs_m, mask=m_mask, other=0.0)
            s = _score_tile(q, k, offs_m, offs_n, k_len, diag, qk_scale, slope, window_left, window_right,
                            HAS_LEFT, HAS_RIGHT, HAS_ALIBI, MASK_N, DOT_PREC)
            p = tl.math.exp2(s - lse[:, None])
            dp = tl.dot(do, tl.trans(v), input_precision=DOT_PREC)
            if HAS_DROPOUT:
                keep = _dropout_keep(SEED, bh, offs_m, offs_n, dropout_p, BLOCK_M, BLOCK_N)
                p_drop = tl.where(keep, p * rp_drop, 0.0)
                dp = tl.where(keep, dp * rp_drop, 0.0)
            else:
                p_drop = p
            dv += tl.dot(tl.trans(p_drop.to(do.dtype)), do, input_precision=DOT_PREC)
            ds = p * (dp - delta[:, None])
            dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=DOT_PREC)
    dk = dk * sm_scale
    tl.store(DK + b64 * stride_dkb + hk * stride_dkh + cols[:, None] * stride_dkn + offs_d[None, :],
             dk.to(DK.dtype.element_ty), mask=kv_mask)
    tl.store(DV + b64 * stride_dvb + hk * stride_dvh + cols[:, None] * stride_dvn + offs_d[None, :],
             dv.to(DV.dtype.element_ty), mask=kv_mask)


@triton.jit
def _attn_bwd_dq(
    Q, K, V, DO, LSE, DELTA, DQ, SEED, ALIBI, CU_Q, CU_K,
    stride_qb, stride_qn, stride_qh,
    stride_kb, stride_kn, stride_kh,
    stride_vb, stride_vn, stride_vh,
    stride_dob, stride_don, stride_doh,
    stride_dqb, stride_dqn, stride_dqh,
    stride_lb, stride_lh,
    stride_ab,
    nheads, group, seqlen_q, seqlen_k,
    qk_scale, sm_scale, dropout_p, window_left, window_right,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    IS_VARLEN: tl.constexpr, HAS_LEFT: tl.constexpr, HAS_RIGHT: tl.constexpr, HAS_ALIBI: tl.constexpr,
    HAS_DROPOUT: tl.constexpr, MASK_N: tl.constexpr, UPCAST: tl.constexpr, DOT_PREC: tl.constexpr,
):
    pid_m = tl.program_id(0)
    b = tl.program_id(1)
    h = tl.program_id(2)
    hk = h // group
    q_start, q_len = _seq_bounds(CU_Q, b, seqlen_q, IS_VARLEN)
    k_start, k_len = _seq_bounds(CU_K, b, seqlen_k, IS_VARLEN)
    if pid_m * BLOCK_M >= q_len:
        return
    diag = k_len - q_len
    b64 = b.to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    m_mask = offs_m < q_len
    d_mask = offs_d < HEAD_DIM
    rows = (q_start + offs_m).to(tl.int64)
    qd_mask = m_mask[:, None] & d_mask[None, :]
    q = tl.load(Q + b64 * stride_qb + h * stride_qh + rows[:, None] * stride_qn + offs_d[None, :],
                mask=qd_mask, other=0.0)
    do = tl.load(DO + b64 * stride_dob + h * stride_doh + rows[:, None] * stride_don + offs_d[None, :],
                 mask=qd_mask, other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
        do = do.to(tl.float32)
    lse = tl.load(LSE + b64 * stride_lb + h * stride_lh + q_start + offs_m, mask=m_mask, other=float("inf"))
    lse = tl.where(lse == float("-inf"), float("inf"), lse) * 1.4426950408889634
    delta = tl.load(DELTA + b64 * stride_lb + h * stride_lh + q_start + offs_m, mask=m_mask, other=0.0)
    k_base = K + b64 * stride_kb + hk * stride_kh
    v_base = V + b64 * stride_vb + hk * stride_vh

    lo = 0
    hi = k_len
    if HAS_RIGHT:
        hi = tl.minimum(hi, pid_m * BLOCK_M + BLOCK_M + diag + window_right)
    if HAS_LEFT:
        lo = tl.maximum(0, pid_m * BLOCK_M + diag - window_left)
        lo = (lo // BLOCK_N) * BLOCK_N
    slope = 0.0
    if HAS_ALIBI:
        slope = tl.load(ALIBI + b * stride_ab + h) * 1.4426950408889634
    bh = b * nheads + h
    rp_drop = 1.0 / (1.0 - dropout_p)
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + offs_n0
        kv_mask = (offs_n < k_len)[:, None] & d_mask[None, :]
        cols = (k_start + offs_n).to(tl.int64)
        k = tl.load(k_base + cols[:, None] * stride_kn + offs_d[None, :], mask=kv_mask, other=0.0)
        v = tl.load(v_base + cols[:, None] * stride_vn + offs_d[None, :], mask=kv_mask, other=0.0)
        if UPCAST:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        s = _score_tile(q, k, offs_m, offs_n, k_len, diag, qk_scale, slope, window_left, window_right,
                        HAS_LEFT, HAS_RIGHT, HAS_ALIBI, MASK_N, DOT_PREC)
        p = tl.math.exp2(s - lse[:, None])
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PREC)
        if HAS_DROPOUT:
            keep = _dropout_keep(SEED, bh, offs_m, offs_n, dropout_p, BLOCK_M, BLOCK_N)
            dp = tl.where(keep, dp * rp_drop, 0.0)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=DOT_PREC)
    dq = dq * sm_scale
    tl.store(DQ + b64 * stride_dqb + h * stride_dqh + rows[:, None] * stride_dqn + offs_d[None, :],
             dq.to(DQ.dtype.element_ty), mask=qd_mask)
