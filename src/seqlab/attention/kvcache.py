"""Decoding with a KV cache: ``flash_attn_with_kvcache`` (flash-attn 2.x semantics).

New keys/values are written into the cache in place at ``cache_seqlens``; each batch row then attends
over its valid prefix. On CUDA a split-KV kernel ("flash-decoding") spreads one query token over the
whole GPU: the cache is cut into ``num_splits`` chunks processed in parallel and merged by their
log-sum-exp; the query heads that share a kv head are processed together so the cache is read once.

The CUDA path is built for being called once per token per layer: it never reads a device value back
on the host (no synchronisation, capturable in a CUDA graph), appends the new keys/values inside the
attention kernel, and is one kernel launch when ``num_splits`` resolves to 1 (two otherwise).
"""

from __future__ import annotations

import functools
import os

import torch

from ..utils.intmath import cdiv, next_power_of_2
from . import _validate as V
from ._torch_impl import torch_fwd
from .ops import use_triton

_CHECK_ENV = "SEQLAB_KVCACHE_CHECK"
_LOG2E = 1.4426950408889634  # the kernels work in log2 units
# (BLOCK_N, num_warps, num_stages) forced for every shape; set by benchmarks/attention_decode.py --sweep only
_CFG_OVERRIDE: tuple[int, int, int] | None = None


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.lru_cache(maxsize=16)
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count if device_index >= 0 else 8


def _splits_heuristic(pairs: int, n_tiles: int, sms: int) -> int:
    """Splits per (batch row, kv head, m block): about one program per SM, at least one key tile each.

    Fitted to a graph-mode sweep on an H100 (results/attention_decode.json, "sweep" in benchmarks/NOTES.md):
    about ``sms`` programs in all was within a few % of the best split count from batch 1 to 64 and cache 1k
    to 128k; more splits cost partial-result traffic and merge work, fewer leave SMs idle.
    """
    return int(max(1, min(sms // pairs, n_tiles, 256)))


@functools.lru_cache(maxsize=512)
def _plan(device_index, dtype, batch, seqlen_q, nheads_k, group, headdim, cache_len, num_splits, cfg):
    """Launch grid, split count and compile-time parameters for one problem shape (cached)."""

    rows = seqlen_q * group
    interp = _interpreting()
    if interp:
        bm, bn, warps, stages = 16, 32, 4, 1
    else:
        bm = 16 if rows <= 16 else (32 if rows <= 32 else 64)
        bn, warps, stages = cfg if cfg is not None else (64, 4, 3 if headdim <= 128 else 2)
    m_blocks = cdiv(rows, bm)
    if num_splits <= 0:
        num_splits = _splits_heuristic(batch * nheads_k * m_blocks, cdiv(cache_len, bn), _sm_count(device_index))
    block_d = max(16, next_power_of_2(headdim))
    main = dict(HEAD_DIM=headdim, BLOCK_D=block_d, BLOCK_M=bm, BLOCK_N=bn, SPLIT=num_splits > 1,
                UPCAST=interp and dtype != torch.float32, DOT_PREC="ieee" if dtype == torch.float32 else "tf32",
                num_warps=warps, num_stages=stages)
    comb = dict(HEAD_DIM=headdim, BLOCK_D=block_d, BLOCK_S=max(2, min(next_power_of_2(num_splits),
                                                                       8192 // block_d)), num_warps=4)
    part_numel = batch * nheads_k * num_splits * rows * (headdim + 1) if num_splits > 1 else 0
    launched = {}  # compiled kernels of this plan by launch signature, see _launch
    return (m_blocks, batch * nheads_k, num_splits), (rows, batch * nheads_k), num_splits, part_numel, main, comb, \
        launched


# Compiled kernels by launch signature, launched without going through ``JITFunction.run`` (whose argument
# binding and specialisation cost ~40 µs of host time per launch on the benchmark host). The key holds
# everything Triton specialises a compiled kernel on: pointer dtypes (fixed by the flags and the plan), the
# exact values of the specialised ints, and 16-byte alignment of every pointer (the direct path is only
# taken when all are aligned). Taken only while no launch hook (profiler) is registered with Triton.
# SEQLAB_DECODE_FAST_LAUNCH=0 turns it off.
_FAST_LAUNCH = os.environ.get("SEQLAB_DECODE_FAST_LAUNCH", "1") == "1"
_STREAM = None
_KNOBS = None


def _disable_fast_launch() -> None:
    global _FAST_LAUNCH
    _FAST_LAUNCH = False


def _hooks_idle() -> bool:
    enter, leave = _KNOBS.launch_enter_hook, _KNOBS.launch_exit_hook  # None, or a (possibly empty) HookChain
    return (enter is None or not getattr(enter, "calls", True)) and (leave is None or not getattr(leave, "calls", True))


def _triton_decode(q, k_cache, v_cache, k, v, seqlens, fixed_len, n_new, scale, wl, wr, alibi, num_splits, want_lse):
    batch, seqlen_q, nheads, d = q.shape
    cache_len, nheads_k = k_cache.shape[1], k_cache.shape[2]
    group = nheads // nheads_k
    dev = q.get_device()
    grid, grid_c, splits, part_numel, main, comb, launched = _plan(dev, q.dtype, batch, seqlen_q, nheads_k, group, d,
                                                                   cache_len, num_splits, _CFG_OVERRIDE)
    out = torch.empty_like(q) if q.is_contiguous() else torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse = q.new_empty((batch, nheads, seqlen_q), dtype=torch.float32) if want_lse else out
    part = q.new_empty(part_numel, dtype=torch.float32) if part_numel else out
    has_new = k is not None
    kn, vn = (k, v) if has_new else (k_cache, v_cache)
    ptrs = (q, k_cache, v_cache, kn, vn, out, lse, part, seqlens if seqlens is not None else out,
            alibi if alibi is not None else out)
    ints = (*q.stride()[:3], *k_cache.stride()[:3], *v_cache.stride()[:3], *kn.stride()[:3], *vn.stride()[:3],
            alibi.stride(0) if alibi is not None and alibi.shape[0] > 1 else 0, nheads_k, group, seqlen_q)
    args = (*ptrs, *ints, splits, cache_len, n_new, fixed_len, scale * _LOG2E, wl, wr)
    args_c = (part, out, lse, nheads_k, group, seqlen_q, splits)
    key = None
    if dev >= 0 and _FAST_LAUNCH and (q.data_ptr() | k_cache.data_ptr() | v_cache.data_ptr() | kn.data_ptr()
                                      | vn.data_ptr() | out.data_ptr() | lse.data_ptr() | part.data_ptr()
                                      | ptrs[8].data_ptr() | ptrs[9].data_ptr()) % 16 == 0:
        key = (dev, seqlens is not None, has_new, wl >= 0, wr >= 0, alibi is not None, want_lse, ints,
               max(abs(n_new), abs(fixed_len), abs(wl), abs(wr)) < 2**31)
        hit = launched.get(key)
        if hit is not None and _hooks_idle():
            ck, tail, ck_c, tail_c = hit
            stream = _STREAM(dev)
            try:
                ck.run(grid[0], grid[1], grid[2], stream, ck.function, ck.packed_metadata, None, None, None, *args,
                       *tail)
            except (TypeError, AttributeError, ValueError):  # a Triton whose launcher differs: use its own path
                _disable_fast_launch()
            else:
                if ck_c is not None:
                    ck_c.run(grid_c[0], grid_c[1], 1, stream, ck_c.function, ck_c.packed_metadata, None, None, None,
                             *args_c, *tail_c)
                return out, lse
    kern = _kernels(dev >= 0)
    consts = dict(HAS_SEQLENS=seqlens is not None, HAS_NEW=has_new, HAS_LEFT=wl >= 0, HAS_RIGHT=wr >= 0,
                  HAS_ALIBI=alibi is not None, STORE_LSE=want_lse, **main)
    ck = kern._attn_fwd_splitkv[grid](*args, **consts)
    ck_c = consts_c = None
    if splits > 1:
        consts_c = dict(STORE_LSE=want_lse, **comb)
        ck_c = kern._splitkv_combine[grid_c](*args_c, **consts_c)
    if key is not None and hasattr(ck, "packed_metadata") and (ck_c is None or hasattr(ck_c, "packed_metadata")):
        launched[key] = (ck, _tail(kern._attn_fwd_splitkv, args, consts), ck_c,
                         None if ck_c is None else _tail(kern._splitkv_combine, args_c, consts_c))
    return out, lse


def _tail(fn, args, consts):
    """The constexpr arguments that follow ``args`` in ``fn``'s signature (a compiled kernel takes them all)."""
    return tuple(consts[name] for name in fn.arg_names[len(args):])


_KERN = None


def _kernels(cuda: bool):
    """The kernel module (imports Triton on first use), and on CUDA the stream getter and launch hooks used by
    the direct launch path."""
    global _KERN, _STREAM, _KNOBS
    if _KERN is None:
        from . import _triton_decode

        _KERN = _triton_decode
    if cuda and _STREAM is None:
        from triton import knobs
        from triton.runtime import driver

        _STREAM, _KNOBS = driver.active.get_current_stream, knobs.runtime
    return _KERN


@torch.no_grad()
def _torch_decode(q, k_cache, v_cache, k, v, seqlens, n_new, scale, wl, wr, alibi):
    batch, seqlen_q, nheads, _ = q.shape
    if n_new:
        pos = seqlens.long()[:, None] + torch.arange(n_new, device=q.device)[None, :]
        rows = torch.arange(batch, device=q.device)[:, None]
        k_cache[rows, pos] = k
        v_cache[rows, pos] = v
    out = torch.empty_like(q)
    lse = torch.empty(batch, nheads, seqlen_q, dtype=torch.float32, device=q.device)
    for b, n in enumerate((seqlens + n_new).tolist()):
        a = None if alibi is None else (alibi[b : b + 1] if alibi.shape[0] > 1 else alibi)
        o, l, _ = torch_fwd(q[b : b + 1], k_cache[b : b + 1, :n], v_cache[b : b + 1, :n], scale, wl, wr, a, 0.0, 0,
                            False)
        out[b], lse[b] = o[0], l[0]
    return out, lse


def _check_lengths(lo: int, hi: int, n_new: int, cache_len: int) -> None:
    if lo < 0 or hi + n_new > cache_len:
        raise ValueError(f"cache_seqlens + seqlen_new must lie in [0, {cache_len}], got lengths {lo}..{hi} "
                         f"+ {n_new}")


def flash_attn_with_kvcache(q, k_cache, v_cache, k=None, v=None, cache_seqlens=None, softmax_scale=None,
                            causal=False, window_size=(-1, -1), alibi_slopes=None, num_splits=0,
                            return_softmax_lse=False):
    """Attention of new queries over a KV cache, appending new keys/values in place first.

    Args:
        q: (batch, seqlen_q, nheads, headdim), usually seqlen_q = 1 when decoding.
        k_cache, v_cache: (batch, seqlen_cache, nheads_k, headdim) with a contiguous last dimension,
            modified in place when k/v are given.
        k, v: optional (batch, seqlen_new, nheads_k, headdim), written at positions
            ``cache_seqlens[b] : cache_seqlens[b] + seqlen_new`` of each row's cache.
        cache_seqlens: int or int32 (batch,) tensor on q's device: valid cache length of each row before
            appending; None means the whole cache is valid (then k/v cannot be given).
        softmax_scale, causal, window_size, alibi_slopes: as in ``flash_attn_func``; the causal mask is
            aligned to the end of each row's valid keys.
        num_splits: key chunks processed in parallel; 0 picks a number that fills the GPU.
        return_softmax_lse: also return the log-sum-exp (batch, nheads, seqlen_q) fp32.

    Returns:
        out (batch, seqlen_q, nheads, headdim) in q's dtype [, softmax_lse]. No autograd (inference).

    Length checks: ``0 <= cache_seqlens`` and ``cache_seqlens + seqlen_new <= seqlen_cache`` raise
    ``ValueError`` when ``cache_seqlens`` is an int or a CPU tensor. A CUDA tensor is not read back (that
    would synchronise the device once per call); set ``SEQLAB_KVCACHE_CHECK=1`` to check it anyway
    (outside CUDA-graph capture). Unchecked lengths are clamped on the device: a negative length counts
    as 0, and new tokens that would land past the end of the cache are neither written nor attended,
    so nothing outside the cache is ever read or written.
    """
    nheads, nheads_k, headdim, batch = V.check_qkv(q, k_cache, v_cache, varlen=False)
    scale = V.check_scale(softmax_scale, headdim)
    wl, wr = V.check_window(window_size, causal)
    alibi = V.check_alibi(alibi_slopes, nheads, batch, q.device) if alibi_slopes is not None else None
    if isinstance(num_splits, bool) or not isinstance(num_splits, int) or num_splits < 0:
        raise ValueError(f"num_splits must be an int >= 0, got {num_splits!r}")
    if k_cache.stride(-1) != 1 or v_cache.stride(-1) != 1:
        raise ValueError("k_cache and v_cache must have a contiguous last dimension (stride 1)")
    cache_len = k_cache.shape[1]
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
            if t.device != q.device:
                raise ValueError(f"{name} is on {t.device} but q is on {q.device}; they must be on one device")
        n_new = k.shape[1]
        if k.stride(-1) != 1:
            k = k.contiguous()
        if v.stride(-1) != 1:
            v = v.contiguous()
    seqlens, fixed_len = None, cache_len
    if cache_seqlens is None:
        if k is not None:
            raise ValueError("cache_seqlens is required when appending k/v to the cache")
    elif isinstance(cache_seqlens, int) and not isinstance(cache_seqlens, bool):
        _check_lengths(cache_seqlens, cache_seqlens, n_new, cache_len)
        fixed_len = cache_seqlens
    else:
        V.check_tensor("cache_seqlens", cache_seqlens, 1)
        if cache_seqlens.dtype != torch.int32:
            raise TypeError(f"cache_seqlens must be int32, got {cache_seqlens.dtype}")
        if cache_seqlens.shape[0] != batch or cache_seqlens.device != q.device:
            raise ValueError(f"cache_seqlens must have shape ({batch},) on {q.device}, got "
                             f"{tuple(cache_seqlens.shape)} on {cache_seqlens.device}")
        seqlens = cache_seqlens
        if not cache_seqlens.is_cuda or (os.environ.get(_CHECK_ENV, "0") == "1" and not V._is_compiling()
                                         and not torch.cuda.is_current_stream_capturing()):
            lo, hi = torch.aminmax(cache_seqlens)
            _check_lengths(int(lo), int(hi), n_new, cache_len)
    if use_triton(q):
        if q.is_cuda and q.device.index != torch.cuda.current_device():
            with torch.cuda.device(q.device):
                out, lse = _triton_decode(q, k_cache, v_cache, k, v, seqlens, fixed_len, n_new, scale, wl, wr, alibi,
                                          num_splits, return_softmax_lse)
        else:
            out, lse = _triton_decode(q, k_cache, v_cache, k, v, seqlens, fixed_len, n_new, scale, wl, wr, alibi,
                                      num_splits, return_softmax_lse)
    else:
        if seqlens is None:
            seqlens = torch.full((batch,), fixed_len, dtype=torch.int32, device=q.device)
        elif seqlens.is_cuda:  # the torch path reads the lengths on the host anyway
            lo, hi = torch.aminmax(seqlens)
            _check_lengths(int(lo), int(hi), n_new, cache_len)
        out, lse = _torch_decode(q, k_cache, v_cache, k, v, seqlens, n_new, scale, wl, wr, alibi)
    return (out, lse) if return_softmax_lse else out
