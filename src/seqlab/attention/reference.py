"""Plain-PyTorch attention used as the ground truth by tests, benchmarks and the demo.

``attention_ref`` materialises the full (batch, nheads, seqlen_q, seqlen_k) score matrix, so it is
only for checking: it runs in whatever dtype it is given (float64 included), on any device.
"""

from __future__ import annotations

import torch


def local_mask(
    seqlen_q: int,
    seqlen_k: int,
    window_left: int,
    window_right: int,
    device=None,
    row_offset: int = 0,
    sq: torch.Tensor | int | None = None,
    sk: torch.Tensor | int | None = None,
) -> torch.Tensor | None:
    """Boolean mask, True where a score is masked out by the (bottom-right aligned) window.

    Query row ``i`` may see key ``j`` when ``i + sk - sq - left <= j <= i + sk - sq + right`` (a bound of
    -1 is unbounded). ``sq``/``sk`` default to the full lengths and may be (batch, 1, 1, 1) tensors
    for per-sequence lengths. Returns (rows, seqlen_k) or broadcastable (batch, 1, rows, seqlen_k),
    or None when nothing is masked.
    """
    if window_left < 0 and window_right < 0:
        return None
    sq = seqlen_q if sq is None else sq
    sk = seqlen_k if sk is None else sk
    i = torch.arange(row_offset, seqlen_q, device=device).view(-1, 1)
    j = torch.arange(seqlen_k, device=device).view(1, -1)
    diag = i + sk - sq
    masked = torch.zeros((), dtype=torch.bool, device=device)
    if window_right >= 0:
        masked = masked | (j > diag + window_right)
    if window_left >= 0:
        masked = masked | (j < diag - window_left)
    return masked


def alibi_bias(
    alibi_slopes: torch.Tensor, seqlen_q: int, seqlen_k: int, row_offset: int = 0, sq=None, sk=None
) -> torch.Tensor:
    """ALiBi bias ``-slope * |i + sk - sq - j|`` of shape (batch or 1, nheads, rows, seqlen_k), fp32."""
    slopes = alibi_slopes if alibi_slopes.dim() == 2 else alibi_slopes.unsqueeze(0)
    sq = seqlen_q if sq is None else sq
    sk = seqlen_k if sk is None else sk
    i = torch.arange(row_offset, seqlen_q, device=slopes.device).view(-1, 1)
    j = torch.arange(seqlen_k, device=slopes.device).view(1, -1)
    dist = (i + sk - sq - j).abs().to(torch.float32)
    return -slopes.to(torch.float32)[:, :, None, None] * dist


def attention_ref(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    dropout_p: float = 0.0,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
    alibi_slopes: torch.Tensor | None = None,
    *,
    dropout_mask: torch.Tensor | None = None,
    query_padding_mask: torch.Tensor | None = None,
    key_padding_mask: torch.Tensor | None = None,
    upcast: bool = False,
    return_attn: bool = False,
):
    """Exact attention by materialising the score matrix.

    Args:
        q: (batch, seqlen_q, nheads, headdim), any floating dtype (float64 for a ground truth).
        k, v: (batch, seqlen_k, nheads_k, headdim); nheads divisible by nheads_k (GQA/MQA).
        dropout_p: dropout probability; needs ``dropout_mask`` to be reproducible, else a fresh
            ``torch.rand`` mask is drawn.
        softmax_scale: defaults to headdim ** -0.5.
        causal: bottom-right aligned causal mask (flash-attn >= 2.1 convention).
        window_size: (left, right) sliding window, -1 = unbounded.
        alibi_slopes: fp32 (nheads,) or (batch, nheads); adds ``-slope * |i + sk - sq - j|``.
        dropout_mask: bool (batch, nheads, seqlen_q, seqlen_k), True = kept.
        query_padding_mask, key_padding_mask: bool (batch, seqlen), True = valid token (valid tokens
            first); lengths then come per sequence and padded query rows output 0.
        upcast: compute in float32 (float64 stays float64) and cast the output back.
        return_attn: also return the (dropout-free) attention probabilities.

    Returns:
        out (batch, seqlen_q, nheads, headdim) in q's dtype; with ``return_attn`` also
        attn (batch, nheads, seqlen_q, seqlen_k). Rows that see no key output 0.
    """
    dtype_og = q.dtype
    if upcast and q.dtype != torch.float64:
        q, k, v = q.float(), k.float(), v.float()
    batch, seqlen_q, nheads, headdim = q.shape
    seqlen_k, nheads_k = k.shape[1], k.shape[2]
    if nheads != nheads_k:
        k = k.repeat_interleave(nheads // nheads_k, dim=2)
        v = v.repeat_interleave(nheads // nheads_k, dim=2)
    scale = headdim**-0.5 if softmax_scale is None else softmax_scale
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * scale
    sq = sk = None
    if query_padding_mask is not None:
        sq = query_padding_mask.sum(-1).view(-1, 1, 1, 1)
    if key_padding_mask is not None:
        sk = key_padding_mask.sum(-1).view(-1, 1, 1, 1)
    if alibi_slopes is not None:
        scores = scores + alibi_bias(alibi_slopes, seqlen_q, seqlen_k, sq=sq, sk=sk).to(scores.dtype)
    left, right = window_size
    if causal:
        right = 0
    masked = local_mask(seqlen_q, seqlen_k, left, right, q.device, sq=sq, sk=sk)
    if key_padding_mask is not None:
        kp = ~key_padding_mask.view(batch, 1, 1, seqlen_k)
        masked = kp if masked is None else (masked | kp)
    if masked is not None:
        scores = scores.masked_fill(masked, float("-inf"))
    attn = torch.softmax(scores, dim=-1)
    if masked is not None:  # rows with every key masked: 0, not NaN
        attn = attn.masked_fill(torch.all(masked, dim=-1, keepdim=True), 0.0)
    if query_padding_mask is not None:
        attn = attn.masked_fill(~query_padding_mask.view(batch, 1, seqlen_q, 1), 0.0)
    attn_drop = attn
    if dropout_p > 0.0:
        if dropout_mask is None:
            dropout_mask = torch.rand_like(attn) >= dropout_p
        attn_drop = attn.masked_fill(~dropout_mask, 0.0) / (1.0 - dropout_p)
    out = torch.einsum("bhqk,bkhd->bqhd", attn_drop, v)
    if query_padding_mask is not None:
        out = out.masked_fill(~query_padding_mask.view(batch, seqlen_q, 1, 1), 0.0)
    out = out.to(dtype_og)
    if return_attn:
        return out, attn.to(dtype_og)
    return out


def attention_flops(batch: int, nheads: int, seqlen_q: int, seqlen_k: int, headdim: int, causal: bool,
                    mode: str = "fwd") -> float:
    """FLOPs as the FlashAttention papers count them: forward 4·B·H·Nq·Nk·D (halved when causal),
    backward 2.5× forward, ``fwd_bwd`` 3.5× forward."""
    f = 4.0 * batch * nheads * seqlen_q * seqlen_k * headdim / (2 if causal else 1)
    return f * {"fwd": 1.0, "bwd": 2.5, "fwd_bwd": 3.5}[mode]

