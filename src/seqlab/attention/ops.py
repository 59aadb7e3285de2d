"""Attention as registered PyTorch operators (``torch.ops.seqlab.*``).

``flash_fwd``/``flash_bwd`` are ``torch.library.custom_op``s with fake (meta) implementations and
an autograd formula, so ``torch.compile`` traces through them without a graph break. They dispatch
to the Triton kernels for CUDA tensors (and for CPU tensors when ``TRITON_INTERPRET=1``), otherwise
to the chunked PyTorch path; ``use_backend`` overrides the choice.
"""

from __future__ import annotations

import contextlib
import os
from typing import Optional

import torch
from torch import Tensor

from . import _torch_impl
from ._validate import _is_compiling

_BACKENDS = ("auto", "triton", "torch")
_backend_override: list[str] = []


@contextlib.contextmanager
def use_backend(name: str):
    """Force the attention backend inside a ``with`` block: ``"triton"``, ``"torch"`` or ``"auto"``.

    The environment variable ``SEQLAB_ATTENTION_BACKEND`` sets the default.
    """
    if name not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {name!r}")
    _backend_override.append(name)
    try:
        yield
    finally:
        _backend_override.pop()


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def use_triton(t: Tensor) -> bool:
    """Whether the Triton kernels handle tensors on ``t``'s device."""
    choice = _backend_override[-1] if _backend_override else os.environ.get("SEQLAB_ATTENTION_BACKEND", "auto")
    if choice == "torch":
        return False
    if choice == "triton":
        if not (t.is_cuda or _interpreting()):
            raise RuntimeError("the triton attention backend needs CUDA tensors or TRITON_INTERPRET=1")
        return True
    return t.is_cuda or (_interpreting() and t.device.type == "cpu")


def _device_of(t: Tensor):
    """Make ``t``'s GPU current, so kernels launch where the tensors live on multi-GPU hosts."""
    if t.is_cuda and t.device.index != torch.cuda.current_device():
        return torch.cuda.device(t.device)
    return contextlib.nullcontext()


def _alibi_row(alibi: Optional[Tensor], b: int) -> Optional[Tensor]:
    if alibi is None:
        return None
    return alibi[b : b + 1] if alibi.shape[0] > 1 else alibi


def _torch_fwd_any(q, k, v, cu_q, cu_k, max_q, max_k, scale, wl, wr, alibi, dropout_p, seed, return_probs):
    seed_i = int(seed.item()) if seed is not None else 0
    if cu_q is None:
        out, lse, probs = _torch_impl.torch_fwd(q, k, v, scale, wl, wr, alibi, dropout_p, seed_i, return_probs)
        return out, lse, probs if probs is not None else q.new_empty(0, dtype=torch.float32)
    batch, nheads = cu_q.numel() - 1, q.shape[1]
    cq, ck = cu_q.tolist(), cu_k.tolist()
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse = torch.empty(nheads, q.shape[0], dtype=torch.float32, device=q.device)
    probs = (torch.zeros(batch, nheads, max_q, max_k, dtype=torch.float32, device=q.device) if return_probs
             else q.new_empty(0, dtype=torch.float32))
    for b in range(batch):
        qs, ks = slice(cq[b], cq[b + 1]), slice(ck[b], ck[b + 1])
        if qs.stop == qs.start:
            continue
        o, l, p = _torch_impl.torch_fwd(q[qs][None], k[ks][None], v[ks][None], scale, wl, wr, _alibi_row(alibi, b),
                                        dropout_p, seed_i, return_probs, batch_offset=b)
        out[qs] = o[0]
        lse[:, qs] = l[0]
        if return_probs:
            probs[b, :, : qs.stop - qs.start, : ks.stop - ks.start] = p[0]
    return out, lse, probs


def _torch_bwd_any(dout, q, k, v, out, lse, cu_q, cu_k, scale, wl, wr, alibi, dropout_p, seed):
    seed_i = int(seed.item()) if seed is not None else 0
    if cu_q is None:
        return _torch_impl.torch_bwd(dout, q, k, v, out, lse, scale, wl, wr, alibi, dropout_p, seed_i)
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    cq, ck = cu_q.tolist(), cu_k.tolist()
    for b in range(cu_q.numel() - 1):
        qs, ks = slice(cq[b], cq[b + 1]), slice(ck[b], ck[b + 1])
        if qs.stop == qs.start or ks.stop == ks.start:
            continue
        g = _torch_impl.torch_bwd(dout[qs][None], q[qs][None], k[ks][None], v[ks][None], out[qs][None],
                                  lse[:, qs][None], scale, wl, wr, _alibi_row(alibi, b), dropout_p, seed_i,
                                  batch_offset=b)
        dq[qs], dk[ks], dv[ks] = g[0][0], g[1][0], g[2][0]
    return dq, dk, dv


def _fwd_impl(q, k, v, cu_q, cu_k, max_q, max_k, scale, wl, wr, alibi, dropout_p, seed, return_probs):
    args = (q, k, v, cu_q, cu_k, max_q, max_k, scale, wl, wr, alibi, dropout_p, seed, return_probs)
    if use_triton(q):
        from ._triton_launch import triton_fwd

        with _device_of(q):
            return triton_fwd(*args)
    return _torch_fwd_any(*args)


def _bwd_impl(dout, q, k, v, out, lse, cu_q, cu_k, max_q, max_k, scale, wl, wr, alibi, dropout_p, seed):
    if use_triton(q):
        from ._triton_launch import triton_bwd

        with _device_of(q):
            return triton_bwd(dout, q, k, v, out, lse, cu_q, cu_k, max_q, max_k, scale, wl, wr, alibi, dropout_p,
                              seed)
    return _torch_bwd_any(dout, q, k, v, out, lse, cu_q, cu_k, scale, wl, wr, alibi, dropout_p, seed)


@torch.library.custom_op("seqlab::flash_fwd", mutates_args=())
def flash_fwd(
    q: Tensor, k: Tensor, v: Tensor, cu_seqlens_q: Optional[Tensor], cu_seqlens_k: Optional[Tensor],
    max_seqlen_q: int, max_seqlen_k: int, softmax_scale: float, window_left: int, window_right: int,
    alibi_slopes: Optional[Tensor], dropout_p: float, seed: Optional[Tensor], return_probs: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Forward attention on validated inputs; returns (out, lse, probs).

    Padded layout (``cu_seqlens_q is None``): q (B, Nq, H, D), lse (B, H, Nq). Varlen layout:
    q (total_q, H, D), lse (H, total_q). probs is (B, H, max_seqlen_q, max_seqlen_k) fp32 when
    ``return_probs`` else empty. ``alibi_slopes`` is fp32 (B or 1, H); ``seed`` an int64 (1,) tensor.
    """
    return _fwd_impl(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale, window_left,
                     window_right, alibi_slopes, dropout_p, seed, return_probs)


@flash_fwd.register_fake
def _flash_fwd_fake(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale,
                    window_left, window_right, alibi_slopes, dropout_p, seed, return_probs):
    out = q.new_empty(q.shape)
    if cu_seqlens_q is not None:
        batch, nheads = cu_seqlens_q.shape[0] - 1, q.shape[1]
        lse = q.new_empty((nheads, q.shape[0]), dtype=torch.float32)
    else:
        batch, nheads = q.shape[0], q.shape[2]
        lse = q.new_empty((batch, nheads, q.shape[1]), dtype=torch.float32)
    shape = (batch, nheads, max_seqlen_q, max_seqlen_k) if return_probs else (0,)
    return out, lse, q.new_empty(shape, dtype=torch.float32)


@torch.library.custom_op("seqlab::flash_bwd", mutates_args=())
def flash_bwd(
    dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
    cu_seqlens_q: Optional[Tensor], cu_seqlens_k: Optional[Tensor], max_seqlen_q: int, max_seqlen_k: int,
    softmax_scale: float, window_left: int, window_right: int, alibi_slopes: Optional[Tensor],
    dropout_p: float, seed: Optional[Tensor],
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients (dq, dk, dv) of ``flash_fwd``; recomputes scores from the saved log-sum-exp."""
    return _bwd_impl(dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale,
                     window_left, window_right, alibi_slopes, dropout_p, seed)


@flash_bwd.register_fake
def _flash_bwd_fake(dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                    softmax_scale, window_left, window_right, alibi_slopes, dropout_p, seed):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup_context(ctx, inputs, output):
    (q, k, v, cu_q, cu_k, max_q, max_k, scale, wl, wr, alibi, dropout_p, seed, _) = inputs
    out, lse, _ = output
    ctx.save_for_backward(q, k, v, out, lse, cu_q, cu_k, alibi, seed)
    ctx.params = (max_q, max_k, scale, wl, wr, dropout_p)


def _backward(ctx, dout, dlse, dprobs):
    q, k, v, out, lse, cu_q, cu_k, alibi, seed = ctx.saved_tensors
    max_q, max_k, scale, wl, wr, dropout_p = ctx.params
    dq, dk, dv = flash_bwd(dout.contiguous(), q, k, v, out, lse, cu_q, cu_k, max_q, max_k, scale, wl, wr,
                           alibi, dropout_p, seed)
    return (dq, dk, dv) + (None,) * 11


flash_fwd.register_autograd(_backward, setup_context=_setup_context)


class _FlashAttnFn(torch.autograd.Function):
    """Eager twin of the ``flash_fwd`` custom op. ``torch.library`` dispatch costs tens of microseconds per
    call, which at short sequence lengths is as long as the kernels, so eager code takes this path and
    only compiled graphs go through the registered ops."""

    @staticmethod
    def forward(ctx, q, k, v, cu_q, cu_k, max_q, max_k, scale, wl, wr, alibi, dropout_p, seed, return_probs):
        out, lse, probs = _fwd_impl(q, k, v, cu_q, cu_k, max_q, max_k, scale, wl, wr, alibi, dropout_p, seed,
                                    return_probs)
        ctx.save_for_backward(q, k, v, out, lse, cu_q, cu_k, alibi, seed)
        ctx.params = (max_q, max_k, scale, wl, wr, dropout_p)
        ctx.mark_non_differentiable(lse, probs)
        return out, lse, probs

    @staticmethod
    def backward(ctx, dout, dlse, dprobs):
        q, k, v, out, lse, cu_q, cu_k, alibi, seed = ctx.saved_tensors
        max_q, max_k, scale, wl, wr, dropout_p = ctx.params
        dq, dk, dv = _bwd_impl(dout.contiguous(), q, k, v, out, lse, cu_q, cu_k, max_q, max_k, scale, wl, wr, alibi,
                               dropout_p, seed)
        return (dq, dk, dv) + (None,) * 11


def attention_fwd(q: Tensor, k: Tensor, v: Tensor, cu_seqlens_q: Optional[Tensor], cu_seqlens_k: Optional[Tensor],
                  max_seqlen_q: int, max_seqlen_k: int, softmax_scale: float, window_left: int, window_right: int,
                  alibi_slopes: Optional[Tensor], dropout_p: float, seed: Optional[Tensor],
                  return_probs: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Differentiable ``flash_fwd`` (same arguments and results): the registered op under ``torch.compile``,
    the lighter autograd function in eager mode. Both run the same kernels."""
    args = (q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale, window_left,
            window_right, alibi_slopes, dropout_p, seed, return_probs)
    if _is_compiling():
        return flash_fwd(*args)
    return _FlashAttnFn.apply(*args)
