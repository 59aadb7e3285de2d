"""Forward kernel that loads Q/K/V and stores O through TMA tensor descriptors (Hopper and newer).

The common training case only: padded layout (batch, seqlen, heads, head_dim) with each token's heads
contiguous, head dim 64, 128 or 256, fp16/bf16, no dropout, no ALiBi, full or causal attention (bottom-right
aligned, like the pointer kernel), GQA/MQA. Everything else takes ``_triton_kernels._attn_fwd``.

Each tensor is described as 3-D (batch, seqlen, heads * head_dim): the copy engine zero-fills rows past a
sequence's end on loads and clips them on stores, so ragged lengths need no row masks; keys past the end are
masked in the last key block. Measured on the H100 (``benchmarks/attention_probe_v4*.py``): 0-5% faster
than the pointer kernel (most at head dim 128 and under causal masking); ``SEQLAB_ATTN_TMA=0`` turns it off.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import torch
import triton
import triton.language as tl

from ..utils.intmath import cdiv
from . import _triton_kernels as kern
from ._fast_launch import launch_tma

try:
    from triton.tools.tensor_descriptor import TensorDescriptor
except ImportError:  # older Triton
    TensorDescriptor = None

# (BLOCK_M, BLOCK_N, num_warps, num_stages) per (head dim, causal): the fastest in the v4 probes, causal head
# dim 64 from the v5 probe (``benchmarks/attention_probe_v5.py``, results/attention_probe_v5.json: 8 warps
# +5-8% at seqlen 4k-16k over 4 warps; at seqlen <= 2048 64-row query tiles, +6-10% at 512-2k), head dim 256
# from the v6 probe (``benchmarks/attention_probe_v6_d256.py``, results/attention_probe_v6_d256.json: 64x64
# tiles, 4 warps, 3 stages beat the wide-head forward by 5-20% at every length; non-causal above 8k
# 128x64/8 warps/2 stages by another 5%).
CONFIGS = {
    (64, False): (128, 64, 4, 4),
    (64, True): (128, 64, 8, 3),
    (128, False): (128, 128, 8, 3),
    (128, True): (128, 128, 8, 3),
    (256, False): (64, 64, 4, 3),
    (256, True): (64, 64, 4, 3),
}
SHORT_CAUSAL_D64 = (64, 64, 4, 3)
LONG_FULL_D256 = (128, 64, 8, 2)
HEAD_DIMS = (64, 128, 256)


def config_for(d: int, causal: bool, seqlen: int) -> tuple[int, int, int, int]:
    """The forward tile config for head dim ``d`` and ``seqlen = max(seqlen_q, seqlen_k)``."""
    if causal and d == 64 and seqlen <= 2048:
        return SHORT_CAUSAL_D64
    if not causal and d == 256 and seqlen > 8192:
        return LONG_FULL_D256
    return CONFIGS[(d, causal)]


@functools.lru_cache(maxsize=16)
def _capable(device_index: int) -> bool:
    return torch.cuda.get_device_capability(device_index)[0] >= 9


def mode() -> str:
    """``SEQLAB_ATTN_TMA``: ``auto`` (default: on for Hopper+ GPUs), ``0`` (off), ``1`` (also under the
    Triton interpreter, for tests)."""
    return os.environ.get("SEQLAB_ATTN_TMA", "auto")


def _desc_ok(t: torch.Tensor) -> bool:
    # 3-D view (B, N, H*D): heads and head dim contiguous, the other strides 16-byte multiples.
    b, n, h, d = t.shape
    sb, sn, sh, sd = t.stride()
    es = t.element_size()
    return (sd == 1 and (sh == d or h == 1) and t.data_ptr() % 16 == 0 and (sb * es) % 16 == 0
            and (sn * es) % 16 == 0)


def usable(q, k, v, cu_q, wl, wr, alibi, dropout_p, return_probs, interpreting: bool) -> bool:
    """Whether the TMA forward covers this call (the caller has already validated the inputs)."""
    choice = mode()
    if choice == "0" or TensorDescriptor is None or (interpreting and choice != "1"):
        return False
    if cu_q is not None or alibi is not None or dropout_p > 0.0 or return_probs:
        return False
    if wl >= 0 or wr not in (-1, 0):
        return False
    if q.dtype not in (torch.float16, torch.bfloat16) or q.shape[-1] not in HEAD_DIMS:
        return False
    if not interpreting and (q.device.type != "cuda" or not _capable(q.get_device())):
        return False
    return all(_desc_ok(t) for t in (q, k, v))


if TensorDescriptor is not None:
    _DESC_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TensorDescriptor)
                      if f.default is not dataclasses.MISSING}


def _desc(t: torch.Tensor, rows: int) -> TensorDescriptor:
    """3-D descriptor (B, N, H*D) with (1, rows, D) blocks. Built without the dataclass's own checks (about
    3 us each, 16 per training step): ``_desc_ok`` has checked alignment and strides, and the block shape
    is a power of two by construction."""
    b, n, h, d = t.shape
    stride = t.stride()
    desc = object.__new__(TensorDescriptor)
    desc.__dict__.update(_DESC_DEFAULTS)
    desc.base = t
    desc.shape = [b, n, h * d]
    desc.strides = [stride[0], stride[1], 1]
    desc.block_shape = [1, rows, d]
    return desc


@triton.jit
def _load_pair(desc_a, desc_b, b, row, col, ROWS: tl.constexpr, HEAD_DIM: tl.constexpr, UPCAST: tl.constexpr):
    """Two (ROWS, HEAD_DIM) tiles at the same place of two (B, N, H*D) descriptors (upcast under the
    interpreter, where bf16 dots are not supported)."""
    x = desc_a.load([b, row, col]).reshape(ROWS, HEAD_DIM)
    y = desc_b.load([b, row, col]).reshape(ROWS, HEAD_DIM)
    if UPCAST:
        x = x.to(tl.float32)
        y = y.to(tl.float32)
    return x, y


@triton.jit
def _key_range(m0, seqlen_k, diag, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
               MASK_N: tl.constexpr):
    """(full_hi, hi) for query rows [m0, m0 + BLOCK_M): keys [0, full_hi) are seen by every row and need no
    mask, [full_hi, hi) need the length/causal mask; full_hi is a multiple of BLOCK_N."""
    hi = seqlen_k
    full_hi = seqlen_k
    if MASK_N:
        full_hi = (seqlen_k // BLOCK_N) * BLOCK_N
    if CAUSAL:
        hi = tl.minimum(hi, m0 + BLOCK_M + diag)
        full_hi = tl.minimum(full_hi, ((m0 + diag + 1) // BLOCK_N) * BLOCK_N)
    hi = tl.maximum(hi, 0)
    full_hi = tl.maximum(tl.minimum(full_hi, hi), 0)
    return full_hi, hi


@triton.jit
def _tile_update(s, m_i, l_i, acc, v, qk_scale, MASKED: tl.constexpr):
    """One online-softmax step on raw scores ``s`` = QK^T. The running max ``m_i`` is kept in scaled log2
    units, so the scale enters once per row (on the row max; ``qk_scale > 0``, which the launcher ensures)
    and once per element inside the FMA ``s * qk_scale - m`` (v5 probe: +2-6% at head dim 64, one
    multiply per score less)."""
    m_new = tl.maximum(m_i, tl.max(s, 1) * qk_scale)
    if MASKED:  # a row may have seen only masked keys so far
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
    else:
        m_use = m_new
    p = tl.math.exp2(s * qk_scale - m_use[:, None])
    alpha = tl.math.exp2(m_i - m_use)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None]
    acc = tl.dot(p.to(v.dtype), v, acc)
    return m_new, l_i, acc


@triton.jit
def _attn_fwd_tma(
    desc_q, desc_k, desc_v, desc_o, LSE,
    stride_lb, stride_lh, group, seqlen_q, seqlen_k, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
    MASK_N: tl.constexpr, UPCAST: tl.constexpr,
):
    pid_m = tl.program_id(0)
    if CAUSAL:  # heaviest query blocks first
        pid_m = tl.num_programs(0) - 1 - pid_m
    b = tl.program_id(1)
    h = tl.program_id(2)
    hk = h // group
    m0 = pid_m * BLOCK_M
    diag = seqlen_k - seqlen_q
    q = desc_q.load([b, m0, h * HEAD_DIM]).reshape(BLOCK_M, HEAD_DIM)
    if UPCAST:
        q = q.to(tl.float32)
    offs_m = m0 + tl.arange(0, BLOCK_M)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    full_hi, hi = _key_range(m0, seqlen_k, diag, BLOCK_M, BLOCK_N, CAUSAL, MASK_N)
    col = hk * HEAD_DIM
    for start_n in range(0, full_hi, BLOCK_N):
        k, v = _load_pair(desc_k, desc_v, b, start_n, col, BLOCK_N, HEAD_DIM, UPCAST)
        s = tl.dot(q, tl.trans(k))
        m_i, l_i, acc = _tile_update(s, m_i, l_i, acc, v, qk_scale, False)
    offs_n0 = tl.arange(0, BLOCK_N)
    for start_n in range(full_hi, hi, BLOCK_N):
        k, v = _load_pair(desc_k, desc_v, b, start_n, col, BLOCK_N, HEAD_DIM, UPCAST)
        s = tl.dot(q, tl.trans(k))
        offs_n = start_n + offs_n0
        keep = (offs_n < seqlen_k)[None, :]
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None] + diag)
        s = tl.where(keep, s, float("-inf"))
        m_i, l_i, acc = _tile_update(s, m_i, l_i, acc, v, qk_scale, True)
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    out = acc / l_safe[:, None]
    desc_o.store([b, m0, h * HEAD_DIM], out.to(desc_o.dtype).reshape(1, BLOCK_M, HEAD_DIM))
    lse = tl.where(l_i == 0.0, float("-inf"), (m_i + tl.math.log2(l_safe)) * 0.6931471805599453)
    tl.store(LSE + b.to(tl.int64) * stride_lb + h * stride_lh + offs_m, lse, mask=offs_m < seqlen_q)


def outputs(q, scale: float, kernel: str):
    """Empty out (q's shape and dtype) and lse (B, H, Nq) fp32 for a forward that folds ``scale`` into its running
    max (so it must be positive); ``done`` is True when there is nothing to compute (lse already -inf)."""
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse = torch.empty(q.shape[0], q.shape[2], q.shape[1], dtype=torch.float32, device=q.device)
    if out.numel() == 0:
        return out, lse.fill_(float("-inf")), True
    if not scale > 0.0:
        raise ValueError(f"the {kernel} forward needs a positive softmax scale, got {scale}")
    return out, lse, False


def tma_fwd(q, k, v, scale: float, causal: bool, interpreting: bool = False, config=None):
    """q (B, Nq, H, D), k/v (B, Nk, Hk, D) fp16/bf16 -> out (q's shape and dtype), lse (B, H, Nq) fp32."""
    batch, seqlen_q, nheads, d = q.shape
    seqlen_k, nheads_k = k.shape[1], k.shape[2]
    out, lse, done = outputs(q, scale, "TMA")
    if done:
        return out, lse
    bm, bn, warps, stages = config or ((32, 32, 4, 1) if interpreting
                                       else config_for(d, causal, max(seqlen_q, seqlen_k)))
    grid = (cdiv(seqlen_q, bm), batch, nheads)
    descs = ((q, bm), (k, bn), (v, bn), (out, bm))
    args = (lse, lse.stride(0), lse.stride(1), nheads // nheads_k, seqlen_q, seqlen_k, scale * kern.LOG2E)
    consts = dict(HEAD_DIM=d, BLOCK_M=bm, BLOCK_N=bn, CAUSAL=causal, MASK_N=seqlen_k % bn != 0,
                  UPCAST=interpreting, num_warps=warps, num_stages=stages)
    launch_tma(_attn_fwd_tma, grid, descs, args, consts, _desc, -1 if interpreting else q.get_device())
    return out, lse
