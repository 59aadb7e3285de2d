"""flash-attn 2.x compatible functions: code ports by changing ``from flash_attn import ...``.

Layouts: padded (batch, seqlen, nheads, headdim); varlen packs (total_tokens, nheads, headdim) with
int32 ``cu_seqlens`` of shape (batch + 1,). Inputs are float16, bfloat16 or float32 (float32 runs
the kernels with full-precision (IEEE) dot products). The output has q's shape and dtype.
"""

from __future__ import annotations

import torch

from . import _validate as V
from .ops import attention_fwd


def _new_seed(device: torch.device, dropout_p: float) -> torch.Tensor | None:
    # Drawn from the device's default generator, so torch.manual_seed makes dropout reproducible.
    if dropout_p == 0.0:
        return None
    return torch.randint(0, 2**62, (1,), device=device, dtype=torch.int64)


def _common(q, dropout_p, softmax_scale, causal, window_size, deterministic, headdim):
    dropout_p = V.check_dropout(dropout_p)
    scale = V.check_scale(softmax_scale, headdim)
    wl, wr = V.check_window(window_size, causal)
    if not isinstance(deterministic, bool):
        raise TypeError(f"deterministic must be a bool, got {type(deterministic).__name__}")
    return dropout_p, scale, wl, wr


def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                    alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """Exact attention, computed tile by tile without materialising the score matrix.

    Args:
        q: (batch, seqlen_q, nheads, headdim), float16/bfloat16/float32.
        k, v: (batch, seqlen_k, nheads_k, headdim); nheads divisible by nheads_k (GQA/MQA).
        dropout_p: dropout probability on the attention matrix (set 0.0 in evaluation).
        softmax_scale: scale of QK^T before the softmax; default headdim ** -0.5.
        causal: causal mask aligned to the bottom-right corner (query i sees key j when
            j <= i + seqlen_k - seqlen_q).
        window_size: (left, right) sliding window; -1 means unbounded.
        alibi_slopes: fp32 (nheads,) or (batch, nheads); adds ``-slope * |i + seqlen_k - seqlen_q - j|``.
        deterministic: accepted for compatibility; seqlab's backward never uses atomics, so gradients
            are always bitwise reproducible.
        return_attn_probs: debug path, also return ``softmax_lse`` and the attention probabilities.

    Returns:
        out (batch, seqlen_q, nheads, headdim) in q's dtype. With ``return_attn_probs``:
        (out, softmax_lse (batch, nheads, seqlen_q) fp32, probs (batch, nheads, seqlen_q, seqlen_k)
        fp32), where probs are the softmax probabilities with entries removed by dropout set to 0
        (not rescaled), so ``out == (probs / (1 - dropout_p)) @ v`` per head. Rows that see no key
        output 0 and have ``softmax_lse = -inf``.
    """
    nheads, _, headdim, batch = V.check_qkv(q, k, v, varlen=False)
    dropout_p, scale, wl, wr = _common(q, dropout_p, softmax_scale, causal, window_size, deterministic, headdim)
    alibi = V.check_alibi(alibi_slopes, nheads, batch, q.device)
    out, lse, probs = attention_fwd(q, k, v, None, None, q.shape[1], k.shape[1], scale, wl, wr, alibi, dropout_p,
                                _new_seed(q.device, dropout_p), bool(return_attn_probs))
    if return_attn_probs:
        return out, lse, probs
    return out


def flash_attn_qkvpacked_func(qkv, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                              alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """``flash_attn_func`` on packed qkv of shape (batch, seqlen, 3, nheads, headdim)."""
    V.check_tensor("qkv", qkv, 5)
    if qkv.shape[2] != 3:
        raise ValueError(f"qkv must have shape (batch, seqlen, 3, nheads, headdim), got {tuple(qkv.shape)}")
    return flash_attn_func(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], dropout_p, softmax_scale, causal,
                           window_size, alibi_slopes, deterministic, return_attn_probs)


def flash_attn_kvpacked_func(q, kv, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                             alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """``flash_attn_func`` with packed kv of shape (batch, seqlen_k, 2, nheads_k, headdim)."""
    V.check_tensor("kv", kv, 5)
    if kv.shape[2] != 2:
        raise ValueError(f"kv must have shape (batch, seqlen_k, 2, nheads_k, headdim), got {tuple(kv.shape)}")
    return flash_attn_func(q, kv[:, :, 0], kv[:, :, 1], dropout_p, softmax_scale, causal, window_size,
                           alibi_slopes, deterministic, return_attn_probs)


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                           softmax_scale=None, causal=False, window_size=(-1, -1), alibi_slopes=None,
                           deterministic=False, return_attn_probs=False):
    """Attention over a batch of sequences of different lengths, packed without padding.

    Args:
        q: (total_q, nheads, headdim); k, v: (total_k, nheads_k, headdim).
        cu_seqlens_q, cu_seqlens_k: int32 (batch + 1,), starting at 0, non-decreasing, ending at
            total_q / total_k; sequence b is rows ``cu[b]:cu[b+1]``.
        max_seqlen_q, max_seqlen_k: ints >= the longest sequence.
        Other arguments as in ``flash_attn_func``; causal/window alignment is per sequence.

    Returns:
        out (total_q, nheads, headdim); with ``return_attn_probs`` also softmax_lse (nheads, total_q)
        fp32 and probs (batch, nheads, max_seqlen_q, max_seqlen_k) fp32 (zero outside each sequence).
    """
    nheads, _, headdim, _ = V.check_qkv(q, k, v, varlen=True)
    batch = V.check_cu_seqlens("cu_seqlens_q", cu_seqlens_q, q.shape[0], q.device, max_seqlen_q, "max_seqlen_q")
    batch_k = V.check_cu_seqlens("cu_seqlens_k", cu_seqlens_k, k.shape[0], q.device, max_seqlen_k, "max_seqlen_k")
    if batch_k != batch:
        raise ValueError(f"cu_seqlens_k describes {batch_k} sequences but cu_seqlens_q describes {batch}")
    dropout_p, scale, wl, wr = _common(q, dropout_p, softmax_scale, causal, window_size, deterministic, headdim)
    alibi = V.check_alibi(alibi_slopes, nheads, batch, q.device)
    out, lse, probs = attention_fwd(q, k, v, cu_seqlens_q, cu_seqlens_k, int(max_seqlen_q), int(max_seqlen_k), scale,
                                wl, wr, alibi, dropout_p, _new_seed(q.device, dropout_p), bool(return_attn_probs))
    if return_attn_probs:
        return out, lse, probs
    return out


def flash_attn_varlen_qkvpacked_func(qkv, cu_seqlens, max_seqlen, dropout_p=0.0, softmax_scale=None, causal=False,
                                     window_size=(-1, -1), alibi_slopes=None, deterministic=False,
                                     return_attn_probs=False):
    """``flash_attn_varlen_func`` on packed qkv of shape (total, 3, nheads, headdim)."""
    V.check_tensor("qkv", qkv, 4)
    if qkv.shape[1] != 3:
        raise ValueError(f"qkv must have shape (total, 3, nheads, headdim), got {tuple(qkv.shape)}")
    return flash_attn_varlen_func(qkv[:, 0], qkv[:, 1], qkv[:, 2], cu_seqlens, cu_seqlens, max_seqlen, max_seqlen,
                                  dropout_p, softmax_scale, causal, window_size, alibi_slopes, deterministic,
                                  return_attn_probs)


def flash_attn_varlen_kvpacked_func(q, kv, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                                    softmax_scale=None, causal=False, window_size=(-1, -1), alibi_slopes=None,
                                    deterministic=False, return_attn_probs=False):
    """``flash_attn_varlen_func`` with packed kv of shape (total_k, 2, nheads_k, headdim)."""
    V.check_tensor("kv", kv, 4)
    if kv.shape[1] != 2:
        raise ValueError(f"kv must have shape (total_k, 2, nheads_k, headdim), got {tuple(kv.shape)}")
    return flash_attn_varlen_func(q, kv[:, 0], kv[:, 1], cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                                  dropout_p, softmax_scale, causal, window_size, alibi_slopes, deterministic,
                                  return_attn_probs)
