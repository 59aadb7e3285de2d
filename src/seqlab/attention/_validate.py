"""Argument checking for the public attention functions.

Every check raises ``TypeError`` (wrong kind or dtype) or ``ValueError`` (wrong value or shape)
whose message starts with the argument's name, so bad input never reaches a kernel.
"""

from __future__ import annotations

import torch

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
MAX_HEAD_DIM = 256


def _is_compiling() -> bool:
    try:
        return torch.compiler.is_compiling()
    except AttributeError:  # pragma: no cover - old torch
        return False


def check_tensor(name: str, t, ndim: int | tuple[int, ...]) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if t.dim() not in dims:
        want = " or ".join(str(d) for d in dims)
        raise ValueError(f"{name} must have {want} dimensions, got shape {tuple(t.shape)}")


def check_qkv(q, k, v, *, varlen: bool) -> tuple[int, int, int, int]:
    """Check q/k/v kinds, ranks, dtypes, devices and head layout; return (nheads, nheads_k, headdim, batch).

    Padded layout: q (batch, seqlen_q, nheads, headdim), k/v (batch, seqlen_k, nheads_k, headdim).
    Varlen layout: q (total_q, nheads, headdim), k/v (total_k, nheads_k, headdim); batch is -1.
    """
    nd = 3 if varlen else 4
    check_tensor("q", q, nd)
    check_tensor("k", k, nd)
    check_tensor("v", v, nd)
    if q.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"q has dtype {q.dtype}; supported dtypes are float16, bfloat16 and float32 "
            "(use seqlab.attention.attention_ref for float64)"
        )
    for name, t in (("k", k), ("v", v)):
        if t.dtype != q.dtype:
            raise TypeError(f"{name} has dtype {t.dtype} but q has dtype {q.dtype}; they must match")
        if t.device != q.device:
            raise ValueError(f"{name} is on {t.device} but q is on {q.device}; they must be on one device")
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape, got k {tuple(k.shape)} and v {tuple(v.shape)}")
    if not varlen and k.shape[0] != q.shape[0]:
        raise ValueError(f"k has batch size {k.shape[0]} but q has batch size {q.shape[0]}")
    headdim = q.shape[-1]
    if k.shape[-1] != headdim:
        raise ValueError(f"k has head dim {k.shape[-1]} but q has head dim {headdim}; they must match")
    if headdim % 8 != 0 or not (8 <= headdim <= MAX_HEAD_DIM):
        raise ValueError(
            f"q has head dim {headdim}; supported head dims are the multiples of 8 up to {MAX_HEAD_DIM}"
        )
    nheads, nheads_k = q.shape[-2], k.shape[-2]
    if nheads_k == 0 or nheads % nheads_k != 0:
        raise ValueError(
            f"k has {nheads_k} heads but q has {nheads}: the number of q heads must be divisible by "
            "the number of k/v heads (GQA/MQA)"
        )
    return nheads, nheads_k, headdim, (-1 if varlen else q.shape[0])


def check_dropout(dropout_p) -> float:
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)):
        raise TypeError(f"dropout_p must be a float, got {type(dropout_p).__name__}")
    if not (0.0 <= float(dropout_p) < 1.0):
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    return float(dropout_p)


def check_scale(softmax_scale, headdim: int) -> float:
    if softmax_scale is None:
        return headdim**-0.5
    if isinstance(softmax_scale, bool) or not isinstance(softmax_scale, (int, float)):
        raise TypeError(f"softmax_scale must be a float or None, got {type(softmax_scale).__name__}")
    return float(softmax_scale)


def check_window(window_size, causal: bool) -> tuple[int, int]:
    """Return (left, right) with -1 meaning unbounded; ``causal`` sets right to 0."""
    if not isinstance(causal, bool):
        raise TypeError(f"causal must be a bool, got {type(causal).__name__}")
    try:
        left, right = window_size
    except (TypeError, ValueError):
        raise ValueError(f"window_size must be a pair (left, right), got {window_size!r}") from None
    for side, w in (("left", left), ("right", right)):
        if isinstance(w, bool) or not isinstance(w, int):
            raise TypeError(f"window_size[{side}] must be an int, got {type(w).__name__}")
        if w < -1:
            raise ValueError(f"window_size[{side}] must be -1 (unbounded) or >= 0, got {w}")
    if causal:
        right = 0
    return left, right


def check_alibi(alibi_slopes, nheads: int, batch: int, device) -> torch.Tensor | None:
    """ALiBi slopes as fp32 (nheads,) or (batch, nheads); returned as (batch or 1, nheads) contiguous."""
    if alibi_slopes is None:
        return None
    check_tensor("alibi_slopes", alibi_slopes, (1, 2))
    if alibi_slopes.dtype != torch.float32:
        raise TypeError(f"alibi_slopes must be float32, got {alibi_slopes.dtype}")
    if alibi_slopes.device != device:
        raise ValueError(f"alibi_slopes is on {alibi_slopes.device} but q is on {device}")
    if alibi_slopes.dim() == 1:
        if alibi_slopes.shape[0] != nheads:
            raise ValueError(f"alibi_slopes must have shape (nheads,)=({nheads},), got {tuple(alibi_slopes.shape)}")
        return alibi_slopes.reshape(1, nheads).contiguous()
    if alibi_slopes.shape != (batch, nheads):
        raise ValueError(
            f"alibi_slopes must have shape (nheads,) or (batch, nheads)=({batch}, {nheads}), "
            f"got {tuple(alibi_slopes.shape)}"
        )
    return alibi_slopes.contiguous()


def check_cu_seqlens(name: str, cu, total: int, device, max_seqlen, max_name: str) -> int:
    """Check a cumulative-length vector; return the batch size."""
    check_tensor(name, cu, 1)
    if cu.dtype != torch.int32:
        raise TypeError(f"{name} must be int32, got {cu.dtype}")
    if cu.device != device:
        raise ValueError(f"{name} is on {cu.device} but q is on {device}")
    if cu.numel() < 2:
        raise ValueError(f"{name} must hold batch + 1 >= 2 offsets, got {cu.numel()}")
    if isinstance(max_seqlen, bool) or not isinstance(max_seqlen, int):
        raise TypeError(f"{max_name} must be an int, got {type(max_seqlen).__name__}")
    if not _is_compiling():
        vals = cu.detach().cpu()
        if int(vals[0]) != 0:
            raise ValueError(f"{name} must start at 0, got {int(vals[0])}")
        lens = vals[1:] - vals[:-1]
        if bool((lens < 0).any()):
            raise ValueError(f"{name} must be non-decreasing, got {vals.tolist()}")
        if int(vals[-1]) != total:
            raise ValueError(f"{name}[-1] must equal the total number of tokens {total}, got {int(vals[-1])}")
        if int(lens.max()) > max_seqlen:
            raise ValueError(f"{max_name}={max_seqlen} is smaller than the longest sequence {int(lens.max())}")
    return cu.numel() - 1
