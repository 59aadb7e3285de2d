"""Exact attention in plain PyTorch, chunked over query rows (the CPU path).

Same algorithm and same outputs as the Triton kernels (log-sum-exp saved by the forward, scores
recomputed by the backward, dropout mask regenerated from the Philox counters), but on whole rows
of ``chunk`` queries at a time, so memory stays O(chunk · seqlen_k) per (batch, head) instead of
O(seqlen_q · seqlen_k). Works on the padded layout; the varlen entry points loop over sequences.
"""

from __future__ import annotations

import numpy as np
import torch

from ._philox import dropout_keep_mask
from .reference import alibi_bias, local_mask

# Elements of one chunk's score block summed over batch and heads; bounds the working set.
_CHUNK_ELEMS = 1 << 22


def _chunk_rows(batch: int, nheads: int, seqlen_q: int, seqlen_k: int) -> int:
    rows = _CHUNK_ELEMS // max(1, batch * nheads * max(seqlen_k, 1))
    return int(max(16, min(seqlen_q, rows)))


def _keep(seed: int, batch_offset: int, batch: int, nheads_k: int, group: int, rows: range, cols: range,
          dropout_p: float, device) -> torch.Tensor:
    """Keep mask (batch, nheads_k, group, rows, cols) from the kernels' Philox counters."""
    b = np.arange(batch).reshape(-1, 1, 1, 1, 1) + batch_offset
    hk = np.arange(nheads_k).reshape(1, -1, 1, 1, 1)
    g = np.arange(group).reshape(1, 1, -1, 1, 1)
    bh = b * (nheads_k * group) + hk * group + g
    i = np.arange(rows.start, rows.stop).reshape(1, 1, 1, -1, 1)
    j = np.arange(cols.start, cols.stop).reshape(1, 1, 1, 1, -1)
    return torch.from_numpy(dropout_keep_mask(seed, bh, i, j, dropout_p)).to(device)


def _key_range(rows: range, seqlen_q: int, seqlen_k: int, wl: int, wr: int) -> range:
    """Keys that any row of the chunk may see under the window (the rest are skipped, as in the kernels)."""
    diag = seqlen_k - seqlen_q
    hi = min(seqlen_k, rows.stop + diag + wr) if wr >= 0 else seqlen_k
    lo = max(0, rows.start + diag - wl) if wl >= 0 else 0
    return range(lo, max(lo, hi))


def _scores(qc, kf, scale, alibi, rows: range, cols: range, seqlen_q, seqlen_k, wl, wr, nheads_k, group):
    """Masked scores for one chunk of rows over keys ``cols``: (batch, nheads_k, group, rows, cols) fp32."""
    s = torch.einsum("bkgid,bkjd->bkgij", qc, kf[:, :, cols.start : cols.stop]) * scale
    if alibi is not None:
        bias = alibi_bias(alibi, seqlen_q, seqlen_k, row_offset=rows.start)[:, :, : len(rows), cols.start : cols.stop]
        s = s + bias.reshape(bias.shape[0], nheads_k, group, len(rows), len(cols))
    masked = local_mask(seqlen_q, seqlen_k, wl, wr, s.device, row_offset=rows.start)
    if masked is not None:
        s = s.masked_fill(masked[: len(rows), cols.start : cols.stop], float("-inf"))
    return s


def _split_heads(q, k, v):
    batch, seqlen_q, nheads, d = q.shape
    nheads_k = k.shape[2]
    group = nheads // nheads_k
    qf = q.float().permute(0, 2, 1, 3).reshape(batch, nheads_k, group, seqlen_q, d)
    kf = k.float().permute(0, 2, 1, 3)
    vf = v.float().permute(0, 2, 1, 3)
    return qf, kf, vf, group


def torch_fwd(q, k, v, scale: float, wl: int, wr: int, alibi, dropout_p: float, seed: int,
              return_probs: bool, batch_offset: int = 0):
    """Forward on the padded layout.

    q (B, Nq, H, D), k/v (B, Nk, Hk, D) of one floating dtype; alibi fp32 (B or 1, H) or None.
    Returns out (B, Nq, H, D) in q's dtype, lse (B, H, Nq) fp32 (-inf for rows that see no key) and
    probs (B, H, Nq, Nk) fp32 (dropped entries 0) when ``return_probs``, else None.
    """
    batch, seqlen_q, nheads, d = q.shape
    seqlen_k, nheads_k = k.shape[1], k.shape[2]
    qf, kf, vf, group = _split_heads(q, k, v)
    out = torch.empty_like(qf)
    lse = torch.empty(qf.shape[:-1], dtype=torch.float32, device=q.device)
    probs = torch.zeros(batch, nheads, seqlen_q, seqlen_k, device=q.device) if return_probs else None
    step = _chunk_rows(batch, nheads, seqlen_q, seqlen_k)
    for r0 in range(0, seqlen_q, step):
        rows = range(r0, min(seqlen_q, r0 + step))
        cols = _key_range(rows, seqlen_q, seqlen_k, wl, wr)
        if len(cols) == 0:  # no row of the chunk sees a key
            out[:, :, :, r0 : rows.stop] = 0.0
            lse[..., r0 : rows.stop] = float("-inf")
            continue
        s = _scores(qf[:, :, :, r0 : rows.stop], kf, scale, alibi, rows, cols, seqlen_q, seqlen_k, wl, wr, nheads_k,
                    group)
        m = s.amax(dim=-1, keepdim=True)
        m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
        p = torch.exp(s - m)
        denom = p.sum(dim=-1, keepdim=True)
        lse[..., r0 : rows.stop] = (m + torch.log(denom)).squeeze(-1)
        p = p / torch.where(denom == 0, torch.ones_like(denom), denom)
        if dropout_p > 0:
            keep = _keep(seed, batch_offset, batch, nheads_k, group, rows, cols, dropout_p, q.device)
            p = p.masked_fill(~keep, 0.0)
        if probs is not None:
            probs[:, :, r0 : rows.stop, cols.start : cols.stop] = p.reshape(batch, nheads, len(rows), len(cols))
        if dropout_p > 0:
            p = p / (1.0 - dropout_p)
        out[:, :, :, r0 : rows.stop] = torch.einsum("bkgij,bkjd->bkgid", p, vf[:, :, cols.start : cols.stop])
    out = out.reshape(batch, nheads, seqlen_q, d).permute(0, 2, 1, 3).to(q.dtype)
    return out, lse.reshape(batch, nheads, seqlen_q), probs


def torch_bwd(dout, q, k, v, out, lse, scale: float, wl: int, wr: int, alibi, dropout_p: float, seed: int,
              batch_offset: int = 0):
    """Backward on the padded layout: returns dq, dk, dv in the dtypes of q, k, v.

    dout/out (B, Nq, H, D); lse (B, H, Nq) fp32 from ``torch_fwd``. GQA gradients are summed over
    the query heads that share each k/v head.
    """
    batch, seqlen_q, nheads, d = q.shape
    seqlen_k, nheads_k = k.shape[1], k.shape[2]
    qf, kf, vf, group = _split_heads(q, k, v)
    dof = dout.float().permute(0, 2, 1, 3).reshape(batch, nheads_k, group, seqlen_q, d)
    of = out.float().permute(0, 2, 1, 3).reshape(batch, nheads_k, group, seqlen_q, d)
    delta = (dof * of).sum(-1)
    lse = lse.reshape(batch, nheads_k, group, seqlen_q)
    lse = torch.where(torch.isneginf(lse), torch.full_like(lse, float("inf")), lse)
    dq = torch.empty_like(qf)
    dk = torch.zeros_like(kf)
    dv = torch.zeros_like(vf)
    step = _chunk_rows(batch, nheads, seqlen_q, seqlen_k)
    for r0 in range(0, seqlen_q, step):
        rows = range(r0, min(seqlen_q, r0 + step))
        r1 = rows.stop
        qc, doc = qf[:, :, :, r0:r1], dof[:, :, :, r0:r1]
        cols = _key_range(rows, seqlen_q, seqlen_k, wl, wr)
        if len(cols) == 0:
            dq[:, :, :, r0:r1] = 0.0
            continue
        c0, c1 = cols.start, cols.stop
        s = _scores(qc, kf, scale, alibi, rows, cols, seqlen_q, seqlen_k, wl, wr, nheads_k, group)
        p = torch.exp(s - lse[..., r0:r1, None])
        dp = torch.einsum("bkgid,bkjd->bkgij", doc, vf[:, :, c0:c1])
        if dropout_p > 0:
            keep = _keep(seed, batch_offset, batch, nheads_k, group, rows, cols, dropout_p, q.device)
            p_drop = p.masked_fill(~keep, 0.0) / (1.0 - dropout_p)
            dp = dp.masked_fill(~keep, 0.0) / (1.0 - dropout_p)
        else:
            p_drop = p
        dv[:, :, c0:c1] += torch.einsum("bkgij,bkgid->bkjd", p_drop, doc)
        ds = p * (dp - delta[..., r0:r1, None])
        dq[:, :, :, r0:r1] = torch.einsum("bkgij,bkjd->bkgid", ds, kf[:, :, c0:c1]) * scale
        dk[:, :, c0:c1] += torch.einsum("bkgij,bkgid->bkjd", ds, qc) * scale
    dq = dq.reshape(batch, nheads, seqlen_q, d).permute(0, 2, 1, 3).to(q.dtype)
    return dq, dk.permute(0, 2, 1, 3).to(k.dtype), dv.permute(0, 2, 1, 3).to(v.dtype)
