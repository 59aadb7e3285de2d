"""Decoding with a KV cache: ``flash_attn_with_kvcache`` (flash-attn 2.x semantics).

New keys/values are written into the cache in place at ``cache_seqlens``; each batch row then attends
over its valid prefix. On CUDA a split-KV kernel ("flash-decoding") spreads one query token over the
whole GPU: the cache is cut into ``num_splits`` chunks processed in parallel and merged by their
log-sum-exp; the query heads that share a kv head are processed together so the cache is read once.
"""

from __future__ import annotations

import contextlib
import functools

import torch

from . import _validate as V
from ._torch_impl import torch_fwd
from .ops import use_triton


@functools.lru_cache(maxsize=16)
def _sm_count(device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 8


def _splits_heuristic(batch: int, nheads_k: int, m_blocks: int, cache_len: int, device) -> int:
    sms = _sm_count(device)
    base = batch * nheads_k * m_blocks
    want = -(-2 * sms // base)  # enough programs for two waves
    return int(max(1, min(want, -(-cache_len // 256), 128)))


def _triton_decode(q, k_cache, v_cache, seqlens_k, scale, wl, wr, alibi, num_splits):
    import triton

    from . import _triton_decode as kern
    from ._triton_launch import _block_d, interpreting

    batch, seqlen_q, nheads, d = q.shape
    nheads_k = k_cache.shape[2]
    group = nheads // nheads_k
    rows = seqlen_q * group
    if interpreting():
        bm, bn, warps, stages = 16, 32, 4, 1
    else:
        bm = 16 if rows <= 16 else (32 if rows <= 32 else 64)
        bn = 32 if d > 128 else 64
        warps, stages = 4, 3
    m_blocks = triton.cdiv(rows, bm)
    if num_splits <= 0:
        num_splits = _splits_heuristic(batch, nheads_k, m_blocks, k_cache.shape[1], q.device)
    out_p = torch.empty(batch, nheads_k, num_splits, rows, d, dtype=torch.float32, device=q.device)
    lse_p = torch.empty(batch, nheads_k, num_splits, rows, dtype=torch.float32, device=q.device)
    q = q if q.stride(-1) == 1 else q.contiguous()
    kern._attn_fwd_splitkv[(m_blocks, batch * nheads_k, num_splits)](
        q, k_cache, v_cache, out_p, lse_p, seqlens_k, alibi if alibi is not None else lse_p,
        q.stride(0), q.stride(1), q.stride(2),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        out_p.stride(0), out_p.stride(1), out_p.stride(2), out_p.stride(3),
        lse_p.stride(0), lse_p.stride(1), lse_p.stride(2),
        alibi.stride(0) if alibi is not None and alibi.shape[0] > 1 else 0,
        nheads_k, group, seqlen_q, num_splits, k_cache.shape[1], scale * kern.LOG2E, wl, wr,
        HEAD_DIM=d, BLOCK_D=_block_d(d), BLOCK_M=bm, BLOCK_N=bn,
        HAS_LEFT=wl >= 0, HAS_RIGHT=wr >= 0, HAS_ALIBI=alibi is not None,
        UPCAST=interpreting() and q.dtype != torch.float32,
        DOT_PREC="ieee" if q.dtype == torch.float32 else "tf32", num_warps=warps, num_stages=stages,
    )
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse = torch.empty(batch, nheads, seqlen_q, dtype=torch.float32, device=q.device)
    block_r = 16
    kern._splitkv_combine[(triton.cdiv(rows, block_r), batch * nheads_k)](
        out_p, lse_p, out, lse,
        out_p.stride(0), out_p.stride(1), out_p.stride(2), out_p.stride(3),
        lse_p.stride(0), lse_p.stride(1), lse_p.stride(2),
        out.stride(0), out.stride(1), out.stride(2), lse.stride(0), lse.stride(1),
        nheads_k, group, rows, num_splits,
        HEAD_DIM=d, BLOCK_D=_block_d(d), BLOCK_R=block_r, num_warps=4,
    )
    return out, lse


def _torch_decode(q, k_cache, v_cache, seqlens_k, scale, wl, wr, alibi):
    batch, seqlen_q, nheads, _ = q.shape
    out = torch.empty_like(q)
    lse = torch.empty(batch, nheads, seqlen_q, dtype=torch.float32, device=q.device)
    for b, n in enumerate(seqlens_k.tolist()):
        a = None if alibi is None else (alibi[b : b + 1] if alibi.shape[0] > 1 else alibi)
        o, l, _ = torch_fwd(q[b : b + 1], k_cache[b : b + 1, :n], v_cache[b : b + 1, :n], scale, wl, wr, a, 0.0, 0,
                            False)
        out[b], lse[b] = o[0], l[0]
    return out, lse


@torch.no_grad()
def flash_attn_with_kvcache(q, k_cache, v_cache, k=None, v=None, cache_seqlens=None, softmax_scale=None,
                            causal=False, window_size=(-1, -1), alibi_slopes=None, num_splits=0,
                            return_softmax_lse=False):
    """Attention of new queries over a KV cache, appending new keys/values in place first.

    Args:
        q: (batch, seqlen_q, nheads, headdim), usually seqlen_q = 1 when decoding.
        k_cache, v_cache: (batch, seqlen_cache, nheads_k, headdim), modified in place when k/v are given.
        k, v: optional (batch, seqlen_new, nheads_k, headdim), written at positions
            ``cache_seqlens[b] : cache_seqlens[b] + seqlen_new`` of each row's cache.
        cache_seqlens: int or int32 (batch,) tensor: valid cache length of each row before appending;
            None means the whole cache is valid (then k/v cannot be given).
        softmax_scale, causal, window_size, alibi_slopes: as in ``flash_attn_func``; the causal mask is
            aligned to the end of each row's valid keys.
        num_splits: key chunks processed in parallel; 0 picks a number that fills the GPU.
        return_softmax_lse: also return the log-sum-exp (batch, nheads, seqlen_q) fp32.

    Returns:
        out (batch, seqlen_q, nheads, headdim) in q's dtype [, softmax_lse]. No autograd (inference).
    """
    nheads, nheads_k, headdim, batch = V.check_qkv(q, k_cache, v_cache, varlen=False)
    scale = V.check_scale(softmax_scale, headdim)
    wl, wr = V.check_window(window_size, causal)
    alibi = V.check_alibi(alibi_slopes, nheads, batch, q.device)
    if isinstance(num_splits, bool) or not isinstance(num_splits, int) or num_splits < 0:
        raise ValueError(f"num_splits must be an int >= 0, got {num_splits!r}")
    cache_len = k_cache.shape[1]
    if cache_seqlens is None:
        if k is not None or v is not None:
            raise ValueError("cache_seqlens is required when appending k/v to the cache")
        seqlens = torch.full((batch,), cache_len, dtype=torch.int32, device=q.device)
    elif isinstance(cache_seqlens, int) and not isinstance(cache_seqlens, bool):
        seqlens = torch.full((batch,), cache_seqlens, dtype=torch.int32, device=q.device)
    else:
        V.check_tensor("cache_seqlens", cache_seqlens, 1)
        if cache_seqlens.dtype != torch.int32:
            raise TypeError(f"cache_seqlens must be int32, got {cache_seqlens.dtype}")
        if cache_seqlens.shape[0] != batch or cache_seqlens.device != q.device:
            raise ValueError(f"cache_seqlens must have shape ({batch},) on {q.device}")
        seqlens = cache_seqlens
    if (k is None) != (v is None):
        raise ValueError("k and v must be given together")
    n_new = 0
    if k is not None:
        for name, t in (("k", k), ("v", v)):
            V.check_tensor(name, t, 4)
            if t.shape[0] != batch or t.shape[2:] != k_cache.shape[2:] or t.dtype != k_cache.dtype:
                raise ValueError(f"{name} must have shape (batch, seqlen_new, nheads_k, headdim) = "
                                 f"({batch}, *, {nheads_k}, {headdim}) and dtype {k_cache.dtype}, "
                                 f"got {tuple(t.shape)} {t.dtype}")
        n_new = k.shape[1]
    # The bounds check needs the lengths on the host; it is skipped while a CUDA graph is captured
    # (decoding loops are usually replayed as graphs), where a device sync is not allowed.
    capturing = q.is_cuda and torch.cuda.is_current_stream_capturing()
    if not (V._is_compiling() or capturing):
        lo, hi = int(seqlens.min()), int(seqlens.max())
        if lo < 0 or hi + n_new > cache_len:
            raise ValueError(f"cache_seqlens + seqlen_new must lie in [0, {cache_len}], got lengths {lo}..{hi} "
                             f"+ {n_new}")
    if n_new:
        pos = seqlens.long()[:, None] + torch.arange(n_new, device=q.device)[None, :]
        rows = torch.arange(batch, device=q.device)[:, None]
        k_cache[rows, pos] = k
        v_cache[rows, pos] = v
    seqlens_k = (seqlens + n_new).to(torch.int32)
    if use_triton(q):
        with torch.cuda.device(q.device) if q.is_cuda else contextlib.nullcontext():
            out, lse = _triton_decode(q, k_cache, v_cache, seqlens_k, scale, wl, wr, alibi, num_splits)
    else:
        out, lse = _torch_decode(q, k_cache, v_cache, seqlens_k, scale, wl, wr, alibi)
    return (out, lse) if return_softmax_lse else out
