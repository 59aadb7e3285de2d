"""Warp-specialised forward in Gluon for Hopper (sm_90): the FA3 layout, written with Triton's Gluon dialect.

Per CTA: a 128-row query tile of one (batch, head), split between two consumer warpgroups of 64 rows. A
producer partition streams K/V blocks of 128 keys through a 3-slot shared-memory ring with TMA and mbarriers.
The consumers each have 240 registers (``setmaxnreg``). Each consumer overlaps block j's QKᵀ with block j-1's PV
(FA3's intra-warpgroup overlap). The two consumers take turns issuing their GEMMs (ping-pong), so that one
warpgroup's softmax runs while the other's GEMMs do.

Measured in ``benchmarks/attention_gluon_probe.py`` (H100, bf16, head dim 128, non-causal,
``results/attention_gluon_probe.json``): 570-619 TFLOP/s at 4k-16k, against 598-608 for SDPA-cuDNN and 481-510 for
the Triton TMA forward.

Scope: the TMA forward's common case (``_triton_fwd_tma.usable``), further limited to:
- head dim 64 or 128;
- contiguous (B, N, H, D) tensors;
- compute capability 9.x;
- a Triton whose Gluon has the Hopper API used here (3.6; 3.9 compiles it too).
By default it is taken only where it measured faster (``preferred``: head dim 128, non-causal from 1k keys,
causal from 4k). ``SEQLAB_ATTN_GLUON=all`` takes it everywhere in scope and ``=0`` turns it off. A failed
launch warns once and falls back to the Triton kernel. Ragged lengths: Q/K/V are 2-D (B·N, H·D) descriptors,
so a tile may read rows of the next sequence. Those keys are masked like causal ones, and rows past the end are
not stored.
"""

from __future__ import annotations

import functools
import inspect
import os

import torch

try:
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.hopper import mbarrier, tma, warpgroup_mma, warpgroup_mma_wait
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    # the API this file is written against: warp_specialize(functions_and_args, warps, regs) (Triton 3.6-3.9);
    # the TMA load was renamed async_copy_global_to_shared -> async_load (3.9 keeps the old name as an error)
    _API_OK = list(inspect.signature(gl.warp_specialize).parameters)[:3] == [
        "functions_and_args", "worker_num_warps", "worker_num_regs"]
    _tma_load = tma.async_load if hasattr(tma, "async_load") else tma.async_copy_global_to_shared
except Exception:  # no Gluon, or a different Gluon API
    _API_OK = False

# head dim -> (rows per consumer warpgroup, keys per block, ring slots); the d128 tiles are FA3's and the
# probe's (results/attention_gluon_probe.json). At d64 both shapes tried lose to the Triton TMA forward
# (results/attention_gluon_d64_probe.json: 64x128x3 0.74-0.98x, 128x64x4 0.72-0.90x), so d64 is not dispatched
# (``preferred``); the better one is kept for SEQLAB_ATTN_GLUON=all.
TILES = {128: (64, 128, 3), 64: (64, 128, 3)}
HALF_M, BLOCK_N, STAGES = TILES[128]
HEAD_DIMS = (64, 128)
LOG2E = 1.4426950408889634


def mode() -> str:
    """``SEQLAB_ATTN_GLUON``: ``auto`` (default: where :func:`preferred`), ``all`` (every case it covers: head dim
    64 too, any length), or ``0`` (off)."""
    return os.environ.get("SEQLAB_ATTN_GLUON", "auto")


@functools.lru_cache(maxsize=16)
def _hopper(device_index: int) -> bool:
    return torch.cuda.get_device_capability(device_index)[0] == 9


def preferred(d: int, causal: bool, seqlen: int) -> bool:
    """Where this kernel beat the Triton TMA forward in the first benchmark run with it on for every case
    (results/attention_bench_gluon_all.json, H100): head dim 128 from 1k keys (non-causal: +12-18% at 1k-16k;
    at 512 0.75x) and causal from 4k (+2-4%; 2k a tie, 512 0.86x). At head dim 64 it lost at every length (0.49-0.97x):
    64-row warpgroup tiles against the tuned 128-row Triton tiles. A rule read off one run."""
    if d != 128:
        return False
    return seqlen >= (4096 if causal else 1024)


_BROKEN: list[str] = []  # set when a launch failed (e.g. a Triton whose Gluon API moved): fall back for good


def disable(err: BaseException) -> None:
    """Stop using this kernel in this process after ``err``, with one warning; callers fall back to Triton."""
    import warnings

    _BROKEN.append(repr(err)[:300])
    warnings.warn(f"seqlab: the Gluon attention forward failed ({_BROKEN[-1]}); using the Triton kernels from now "
                  "on (SEQLAB_ATTN_GLUON=0 silences this)", RuntimeWarning, stacklevel=3)


def usable(q, k, v, causal: bool, interpreting: bool) -> bool:
    """Whether this forward takes a call the TMA forward already accepted (Gluon has no interpreter)."""
    if not _API_OK or _BROKEN or mode() == "0" or interpreting or q.device.type != "cuda":
        return False
    if mode() != "all" and not preferred(q.shape[-1], causal, max(q.shape[1], k.shape[1])):
        return False
    if q.shape[-1] not in HEAD_DIMS or not _hopper(q.get_device()):
        return False
    return all(t.is_contiguous() for t in (q, k, v))


if _API_OK:
    @gluon.jit
    def _scores(qk, j, n_full, row0_q, seqlen_k, diag, qk_scale, s_layout: gl.constexpr, HALF_M: gl.constexpr,
                BLOCK_N: gl.constexpr, CAUSAL: gl.constexpr):
        """Scaled scores of key block j; blocks from ``n_full`` on get the length (and causal) mask."""
        qk = qk * qk_scale
        if j >= n_full:
            cols = j * BLOCK_N + gl.arange(0, BLOCK_N, gl.SliceLayout(0, s_layout))
            keep = (cols < seqlen_k)[None, :]
            if CAUSAL:
                rows = row0_q + gl.arange(0, HALF_M, gl.SliceLayout(1, s_layout))
                keep = keep & (cols[None, :] <= rows[:, None] + diag)
            qk = gl.where(keep, qk, float("-inf"))
        return qk

    @gluon.jit
    def _consumer(q_smem, k_ring, v_ring, q_bar, kv_ready, kv_empty, turn, o_ptr, lse_ptr, stride_ob, stride_on,
                  stride_lb, stride_lh, b, h, m0, n_blocks, n_full, seqlen_q, seqlen_k, diag, qk_scale,
                  WG: gl.constexpr, HALF_M: gl.constexpr, BLOCK_N: gl.constexpr, HEAD_D: gl.constexpr,
                  STAGES: gl.constexpr, CAUSAL: gl.constexpr):
        s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                           instr_shape=[16, BLOCK_N, 16])
        o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                           instr_shape=[16, HEAD_D, 16])
        p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
        row_s: gl.constexpr = gl.SliceLayout(1, s_layout)
        row_o: gl.constexpr = gl.SliceLayout(1, o_layout)
        dtype: gl.constexpr = q_smem.dtype
        row0_q = m0 + WG * HALF_M
        q = q_smem.index(WG)
        mbarrier.wait(q_bar.index(WG), 0)
        acc = gl.zeros([HALF_M, HEAD_D], gl.float32, o_layout)
        m_i = gl.full([HALF_M], float("-inf"), gl.float32, row_s)
        l_i = gl.zeros([HALF_M], gl.float32, row_s)
        p = gl.zeros([HALF_M, BLOCK_N], gl.float32, s_layout)
        if n_blocks > 0:
            mbarrier.wait(kv_ready.index(0), 0)
            qk = warpgroup_mma(q, k_ring.index(0).permute((1, 0)), gl.zeros([HALF_M, BLOCK_N], gl.float32, s_layout),
                               use_acc=False, is_async=True)
            qk = warpgroup_mma_wait(0, deps=[qk])
            qk = _scores(qk, 0, n_full, row0_q, seqlen_k, diag, qk_scale, s_layout, HALF_M, BLOCK_N, CAUSAL)
            m_i = gl.max(qk, 1)
            m_use = gl.where(m_i == float("-inf"), 0.0, m_i)
            p = gl.exp2(qk - m_use[:, None])
            l_i = gl.sum(p, 1)
        for j in range(1, n_blocks):
            s = j % STAGES
            sp = (j - 1) % STAGES
            mbarrier.wait(kv_ready.index(s), (j // STAGES) & 1)
            # ping-pong: issue this iteration's two GEMMs after the other warpgroup issued its own
            mbarrier.wait(turn.index(WG), ((j - 1) & 1) ^ (1 - WG))
            qk = warpgroup_mma(q, k_ring.index(s).permute((1, 0)),
                               gl.zeros([HALF_M, BLOCK_N], gl.float32, s_layout), use_acc=False, is_async=True)
            acc = warpgroup_mma(gl.convert_layout(p.to(dtype), p_layout), v_ring.index(sp), acc, is_async=True)
            mbarrier.arrive(turn.index(1 - WG), count=1)
            qk = warpgroup_mma_wait(1, deps=[qk])  # groups retire in order: QK^T done, PV may still run
            qk = _scores(qk, j, n_full, row0_q, seqlen_k, diag, qk_scale, s_layout, HALF_M, BLOCK_N, CAUSAL)
            m_new = gl.maximum(m_i, gl.max(qk, 1))
            m_use = gl.where(m_new == float("-inf"), 0.0, m_new)
            alpha = gl.exp2(m_i - m_use)
            p = gl.exp2(qk - m_use[:, None])
            l_i = l_i * alpha + gl.sum(p, 1)
            acc = warpgroup_mma_wait(0, deps=[acc])
            mbarrier.arrive(kv_empty.index(sp), count=1)
            acc = acc * gl.convert_layout(alpha, row_o)[:, None]
            m_i = m_new
        if n_blocks > 0:
            sl = (n_blocks - 1) % STAGES
            acc = warpgroup_mma(gl.convert_layout(p.to(dtype), p_layout), v_ring.index(sl), acc, is_async=True)
            acc = warpgroup_mma_wait(0, deps=[acc])
            mbarrier.arrive(kv_empty.index(sl), count=1)
        l_safe = gl.where(l_i == 0.0, 1.0, l_i)
        out = acc / gl.convert_layout(l_safe, row_o)[:, None]
        rows = row0_q + gl.arange(0, HALF_M, row_o)
        cols = gl.arange(0, HEAD_D, gl.SliceLayout(0, o_layout))
        ptrs = o_ptr + b.to(gl.int64) * stride_ob + rows.to(gl.int64)[:, None] * stride_on + h * HEAD_D + cols[None, :]
        gl.store(ptrs, out.to(dtype), mask=(rows < seqlen_q)[:, None])
        lse = gl.where(l_i == 0.0, float("-inf"), (m_i + gl.log2(l_safe)) * 0.6931471805599453)
        lrows = row0_q + gl.arange(0, HALF_M, row_s)
        gl.store(lse_ptr + b.to(gl.int64) * stride_lb + h * stride_lh + lrows, lse, mask=lrows < seqlen_q)

    @gluon.jit
    def _producer(q_desc, k_desc, v_desc, q_smem, k_ring, v_ring, q_bar, kv_ready, kv_empty, q_row, kv_row, q_col,
                  kv_col, n_blocks, HALF_M: gl.constexpr, BLOCK_N: gl.constexpr, STAGES: gl.constexpr):
        for w in gl.static_range(2):
            mbarrier.expect(q_bar.index(w), q_desc.block_type.nbytes)
            _tma_load(q_desc, [q_row + w * HALF_M, q_col], q_bar.index(w), q_smem.index(w))
        for j in range(n_blocks):
            s = j % STAGES
            # a fresh barrier's "previous phase" counts as complete: the first pass over the ring does not wait
            mbarrier.wait(kv_empty.index(s), ((j // STAGES) & 1) ^ 1)
            mbarrier.expect(kv_ready.index(s), k_desc.block_type.nbytes + v_desc.block_type.nbytes)
            _tma_load(k_desc, [kv_row + j * BLOCK_N, kv_col], kv_ready.index(s),
                                            k_ring.index(s))
            _tma_load(v_desc, [kv_row + j * BLOCK_N, kv_col], kv_ready.index(s),
                                            v_ring.index(s))

    @gluon.jit
    def _attn_fwd_gluon(q_desc, k_desc, v_desc, o_ptr, lse_ptr, stride_ob, stride_on, stride_lb, stride_lh, group,
                        seqlen_q, seqlen_k, qk_scale, HALF_M: gl.constexpr, BLOCK_N: gl.constexpr,
                        HEAD_D: gl.constexpr, STAGES: gl.constexpr, CAUSAL: gl.constexpr):
        pid_m = gl.program_id(0)
        if CAUSAL:  # heaviest query tiles first
            pid_m = gl.num_programs(0) - 1 - pid_m
        b = gl.program_id(1)
        h = gl.program_id(2)
        m0 = pid_m * (2 * HALF_M)
        diag = seqlen_k - seqlen_q
        hi = seqlen_k
        full_hi = (seqlen_k // BLOCK_N) * BLOCK_N
        if CAUSAL:
            hi = gl.minimum(hi, m0 + 2 * HALF_M + diag)
            full_hi = gl.minimum(full_hi, ((m0 + diag + 1) // BLOCK_N) * BLOCK_N)
        hi = gl.maximum(hi, 0)
        full_hi = gl.maximum(gl.minimum(full_hi, hi), 0)
        n_blocks = (hi + BLOCK_N - 1) // BLOCK_N
        n_full = full_hi // BLOCK_N
        dtype: gl.constexpr = q_desc.dtype
        q_smem = gl.allocate_shared_memory(dtype, [2, HALF_M, HEAD_D], q_desc.layout)
        k_ring = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HEAD_D], k_desc.layout)
        v_ring = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HEAD_D], v_desc.layout)
        q_bar = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
        turn = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
        kv_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        kv_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        for i in gl.static_range(2):
            mbarrier.init(q_bar.index(i), count=1)
            mbarrier.init(turn.index(i), count=1)
        for i in gl.static_range(STAGES):
            mbarrier.init(kv_ready.index(i), count=1)
            mbarrier.init(kv_empty.index(i), count=2)  # both consumer warpgroups release a slot
        wg0: gl.constexpr = 0
        wg1: gl.constexpr = 1
        # (argument tuples written out in the call: a tuple bound to a name loses its constexprs)
        gl.warp_specialize([
            (_producer, (q_desc, k_desc, v_desc, q_smem, k_ring, v_ring, q_bar, kv_ready, kv_empty,
                         b * seqlen_q + m0, b * seqlen_k, h * HEAD_D, (h // group) * HEAD_D, n_blocks,
                         HALF_M, BLOCK_N, STAGES)),
            (_consumer, (q_smem, k_ring, v_ring, q_bar, kv_ready, kv_empty, turn, o_ptr, lse_ptr, stride_ob,
                         stride_on, stride_lb, stride_lh, b, h, m0, n_blocks, n_full, seqlen_q, seqlen_k, diag,
                         qk_scale, wg0, HALF_M, BLOCK_N, HEAD_D, STAGES, CAUSAL)),
            (_consumer, (q_smem, k_ring, v_ring, q_bar, kv_ready, kv_empty, turn, o_ptr, lse_ptr, stride_ob,
                         stride_on, stride_lb, stride_lh, b, h, m0, n_blocks, n_full, seqlen_q, seqlen_k, diag,
                         qk_scale, wg1, HALF_M, BLOCK_N, HEAD_D, STAGES, CAUSAL)),
        ], [4, 4], [240, 240])


def _gl_dtype(dtype: torch.dtype):
    return gl.bfloat16 if dtype == torch.bfloat16 else gl.float16


def descriptors(q, k, v, half_m: int = HALF_M, block_n: int = BLOCK_N):
    """2-D TMA descriptors over (B·N, H·D) with (half_m, D) blocks for Q and (block_n, D) blocks for K/V."""
    d = q.shape[-1]
    dt = _gl_dtype(q.dtype)
    ql = gl.NVMMASharedLayout.get_default_for([half_m, d], dt)
    kl = gl.NVMMASharedLayout.get_default_for([block_n, d], dt)
    q2 = q.view(q.shape[0] * q.shape[1], q.shape[2] * d)
    k2 = k.view(k.shape[0] * k.shape[1], k.shape[2] * d)
    v2 = v.view(v.shape[0] * v.shape[1], v.shape[2] * d)
    return (TensorDescriptor.from_tensor(q2, [half_m, d], ql), TensorDescriptor.from_tensor(k2, [block_n, d], kl),
            TensorDescriptor.from_tensor(v2, [block_n, d], kl))


def gluon_fwd(q, k, v, scale: float, causal: bool, tiles: tuple[int, int, int] | None = None):
    """q (B, Nq, H, D), k/v (B, Nk, Hk, D) contiguous fp16/bf16 on a Hopper GPU -> out (q's shape and dtype),
    lse (B, H, Nq) fp32 (natural log), as ``_triton_fwd_tma.tma_fwd``."""
    from ._triton_fwd_tma import outputs

    batch, seqlen_q, nheads, d = q.shape
    seqlen_k, nheads_k = k.shape[1], k.shape[2]
    out, lse, done = outputs(q, scale, "Gluon")
    if done:
        return out, lse
    half_m, block_n, stages = tiles or TILES[d]
    grid = ((seqlen_q + 2 * half_m - 1) // (2 * half_m), batch, nheads)
    _attn_fwd_gluon[grid](*descriptors(q, k, v, half_m, block_n), out, lse, out.stride(0), out.stride(1),
                          lse.stride(0), lse.stride(1), nheads // nheads_k, seqlen_q, seqlen_k, scale * LOG2E,
                          half_m, block_n, d, stages, causal, num_warps=4)
    return out, lse
