"""Probe: a warp-specialised FlashAttention forward in Gluon on Hopper (non-causal, head dim 128, bf16).

The question is whether producer/consumer warp specialisation can lift the forward towards cuDNN, where Triton's
own compiler does not apply it on sm_90 (benchmarks/NOTES.md, v4 item 3). FA3's layout is the model:
- one producer warp issues TMA loads of Q and of a K/V ring, signalled through mbarriers;
- two consumer warpgroups each own 64 rows of the CTA's 128-row query tile and share the K/V ring;
- each runs S = Q Kᵀ (wgmma from shared memory), an online softmax in exp2 with the scale folded in, and
  O += P V (wgmma with P in registers), then releases the ring slot.
- There is no explicit ping-pong barrier between the two consumers: the warp scheduler interleaves one's softmax
  with the other's wgmma.

Scope: the probe only. The sequence length must be a multiple of 128, with no masks, dropout or ragged lengths.

    python3 benchmarks/attention_gluon_probe.py --aot            # compile for sm_90 without a GPU (Triton >= 3.6)
    PYTHONPATH=src python3 benchmarks/attention_gluon_probe.py --out $OUT/gluon_probe.json   # check + time (H100)

On the GPU it checks the output and LSE against a float64 reference on fresh random inputs, then times the
kernel, seqlab's `flash_attn_func` and SDPA with the FA2 and cuDNN backends. It uses `triton.testing.do_bench`
medians at the FlashAttention protocol's shapes (16k tokens, hidden 2048).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import mbarrier, tma, warpgroup_mma, warpgroup_mma_wait
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

HALF_M, BLOCK_N = 64, 128
# name -> (stages, pipe, producer_default, ping): ring depth; FA3's intra-warpgroup overlap; the producer as the
# default partition (both consumers are workers with 240 registers each) instead of consumer 0; explicit ping-pong
VARIANTS = {"ws": (2, False, False, False), "ws_pipe_s3": (3, True, False, False),
            "wsB": (2, False, True, False), "wsB_pipe_s3": (3, True, True, False),
            "wsB_pipe_s3_pp": (3, True, True, True), "ws_pipe_s3_pp": (3, True, False, True)}
LOG2E = 1.4426950408889634


@gluon.jit
def _consumer(q_smem, k_ring, v_ring, q_bar, kv_ready, kv_empty, turn, o_ptr, lse_ptr, row0, n_blocks, qk_scale,
              WG: gl.constexpr, HALF_M: gl.constexpr, BLOCK_N: gl.constexpr, HEAD_D: gl.constexpr,
              STAGES: gl.constexpr, PIPE: gl.constexpr, PING: gl.constexpr):
    """One warpgroup: rows ``row0 + WG*HALF_M ...`` of the tile, over every K/V block of the ring."""
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                       instr_shape=[16, BLOCK_N, 16])
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                       instr_shape=[16, HEAD_D, 16])
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    row_s: gl.constexpr = gl.SliceLayout(1, s_layout)
    row_o: gl.constexpr = gl.SliceLayout(1, o_layout)

    q = q_smem.index(WG)
    mbarrier.wait(q_bar.index(WG), 0)
    acc = gl.zeros([HALF_M, HEAD_D], gl.float32, o_layout)
    if PIPE:
        # FA3's intra-warpgroup overlap: block j's QK^T and block j-1's PV are in flight together, and block j's
        # softmax runs while PV finishes (wgmma groups retire in issue order, so wait(1) = QK^T done)
        mbarrier.wait(kv_ready.index(0), 0)
        qk = warpgroup_mma(q, k_ring.index(0).permute((1, 0)), gl.zeros([HALF_M, BLOCK_N], gl.float32, s_layout),
                           use_acc=False, is_async=True)
        qk = warpgroup_mma_wait(0, deps=[qk]) * qk_scale
        m_i = gl.max(qk, 1)
        p = gl.exp2(qk - m_i[:, None])
        l_i = gl.sum(p, 1)
        for j in range(1, n_blocks):
            s = j % STAGES
            sp = (j - 1) % STAGES
            mbarrier.wait(kv_ready.index(s), (j // STAGES) & 1)
            if PING:  # issue this iteration's two GEMMs only after the other warpgroup issued its own
                mbarrier.wait(turn.index(WG), ((j - 1) & 1) ^ (1 - WG))
            qk = warpgroup_mma(q, k_ring.index(s).permute((1, 0)),
                               gl.zeros([HALF_M, BLOCK_N], gl.float32, s_layout), use_acc=False, is_async=True)
            acc = warpgroup_mma(gl.convert_layout(p.to(gl.bfloat16), p_layout), v_ring.index(sp), acc,
                                is_async=True)
            if PING:
                mbarrier.arrive(turn.index(1 - WG), count=1)
            qk = warpgroup_mma_wait(1, deps=[qk]) * qk_scale
            m_new = gl.maximum(m_i, gl.max(qk, 1))
            alpha = gl.exp2(m_i - m_new)
            p = gl.exp2(qk - m_new[:, None])
            l_i = l_i * alpha + gl.sum(p, 1)
            acc = warpgroup_mma_wait(0, deps=[acc])
            mbarrier.arrive(kv_empty.index(sp), count=1)
            acc = acc * gl.convert_layout(alpha, row_o)[:, None]
            m_i = m_new
        sl = (n_blocks - 1) % STAGES
        acc = warpgroup_mma(gl.convert_layout(p.to(gl.bfloat16), p_layout), v_ring.index(sl), acc, is_async=True)
        acc = warpgroup_mma_wait(0, deps=[acc])
        mbarrier.arrive(kv_empty.index(sl), count=1)
    else:
        m_i = gl.full([HALF_M], float("-inf"), gl.float32, row_s)
        l_i = gl.zeros([HALF_M], gl.float32, row_s)
        for j in range(n_blocks):
            s = j % STAGES
            mbarrier.wait(kv_ready.index(s), (j // STAGES) & 1)
            k = k_ring.index(s)
            v = v_ring.index(s)
            qk = warpgroup_mma(q, k.permute((1, 0)), gl.zeros([HALF_M, BLOCK_N], gl.float32, s_layout),
                               use_acc=False, is_async=True)
            qk = warpgroup_mma_wait(0, deps=[qk])
            qk = qk * qk_scale
            m_new = gl.maximum(m_i, gl.max(qk, 1))
            alpha = gl.exp2(m_i - m_new)
            p = gl.exp2(qk - m_new[:, None])
            l_i = l_i * alpha + gl.sum(p, 1)
            acc = acc * gl.convert_layout(alpha, row_o)[:, None]
            acc = warpgroup_mma(gl.convert_layout(p.to(gl.bfloat16), p_layout), v, acc, is_async=True)
            acc = warpgroup_mma_wait(0, deps=[acc])
            mbarrier.arrive(kv_empty.index(s), count=1)
            m_i = m_new
    acc = acc / gl.convert_layout(l_i, row_o)[:, None]
    # stored from the MMA layout itself: a conversion would need 16 KB of shared memory, which the ring uses
    rows = row0 + WG * HALF_M + gl.arange(0, HALF_M, row_o)
    cols = gl.arange(0, HEAD_D, gl.SliceLayout(0, o_layout))
    gl.store(o_ptr + rows[:, None] * HEAD_D + cols[None, :], acc.to(gl.bfloat16))
    lse_rows = row0 + WG * HALF_M + gl.arange(0, HALF_M, row_s)
    gl.store(lse_ptr + lse_rows, (m_i + gl.log2(l_i)) * 0.6931471805599453)


@gluon.jit
def _producer(q_desc, k_desc, v_desc, q_smem, k_ring, v_ring, q_bar, kv_ready, kv_empty, row0, kv_row0, n_blocks,
              HALF_M: gl.constexpr, BLOCK_N: gl.constexpr, STAGES: gl.constexpr):
    """One warp: both Q halves once, then K/V blocks into the ring as slots free up."""
    for w in gl.static_range(2):
        mbarrier.expect(q_bar.index(w), q_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(q_desc, [row0 + w * HALF_M, 0], q_bar.index(w), q_smem.index(w))
    for j in range(n_blocks):
        s = j % STAGES
        # a fresh barrier's "previous phase" counts as complete, so the first pass over the ring does not wait
        mbarrier.wait(kv_empty.index(s), ((j // STAGES) & 1) ^ 1)
        mbarrier.expect(kv_ready.index(s), k_desc.block_type.nbytes + v_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(k_desc, [kv_row0 + j * BLOCK_N, 0], kv_ready.index(s), k_ring.index(s))
        tma.async_copy_global_to_shared(v_desc, [kv_row0 + j * BLOCK_N, 0], kv_ready.index(s), v_ring.index(s))


@gluon.jit
def _attn_fwd_ws(q_desc, k_desc, v_desc, o_ptr, lse_ptr, qk_scale, N_CTX,
                 HALF_M: gl.constexpr, BLOCK_N: gl.constexpr, HEAD_D: gl.constexpr, STAGES: gl.constexpr,
                 PIPE: gl.constexpr, PRODUCER_DEFAULT: gl.constexpr, PING: gl.constexpr):
    pid_m = gl.program_id(0)
    bh = gl.program_id(1)
    row0 = bh * N_CTX + pid_m * (2 * HALF_M)
    kv_row0 = bh * N_CTX
    n_blocks = N_CTX // BLOCK_N
    q_smem = gl.allocate_shared_memory(gl.bfloat16, [2, HALF_M, HEAD_D], q_desc.layout)
    k_ring = gl.allocate_shared_memory(gl.bfloat16, [STAGES, BLOCK_N, HEAD_D], k_desc.layout)
    v_ring = gl.allocate_shared_memory(gl.bfloat16, [STAGES, BLOCK_N, HEAD_D], v_desc.layout)
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
    # (the partitions' argument tuples are written out in each call: a tuple bound to a name loses its constexprs)
    if PRODUCER_DEFAULT:
        gl.warp_specialize([
            (_producer, (q_desc, k_desc, v_desc, q_smem, k_ring, v_ring, q_bar, kv_ready, kv_empty, row0, kv_row0,
                         n_blocks, HALF_M, BLOCK_N, STAGES)),
            (_consumer, (q_smem, k_ring, v_ring, q_bar, kv_ready, kv_empty, turn, o_ptr, lse_ptr, row0, n_blocks,
                         qk_scale, wg0, HALF_M, BLOCK_N, HEAD_D, STAGES, PIPE, PING)),
            (_consumer, (q_smem, k_ring, v_ring, q_bar, kv_ready, kv_empty, turn, o_ptr, lse_ptr, row0, n_blocks,
                         qk_scale, wg1, HALF_M, BLOCK_N, HEAD_D, STAGES, PIPE, PING)),
        ], [4, 4], [240, 240])
    else:
        gl.warp_specialize([
            (_consumer, (q_smem, k_ring, v_ring, q_bar, kv_ready, kv_empty, turn, o_ptr, lse_ptr, row0, n_blocks,
                         qk_scale, wg0, HALF_M, BLOCK_N, HEAD_D, STAGES, PIPE, PING)),
            (_consumer, (q_smem, k_ring, v_ring, q_bar, kv_ready, kv_empty, turn, o_ptr, lse_ptr, row0, n_blocks,
                         qk_scale, wg1, HALF_M, BLOCK_N, HEAD_D, STAGES, PIPE, PING)),
            (_producer, (q_desc, k_desc, v_desc, q_smem, k_ring, v_ring, q_bar, kv_ready, kv_empty, row0, kv_row0,
                         n_blocks, HALF_M, BLOCK_N, STAGES)),
        ], [4, 1], [232, 40])


def _descs(q, k, v):
    d = q.shape[-1]
    q2, k2, v2 = (t.reshape(-1, d) for t in (q, k, v))
    ql = gl.NVMMASharedLayout.get_default_for([HALF_M, d], gl.bfloat16)
    kl = gl.NVMMASharedLayout.get_default_for([BLOCK_N, d], gl.bfloat16)
    return (TensorDescriptor.from_tensor(q2, [HALF_M, d], ql), TensorDescriptor.from_tensor(k2, [BLOCK_N, d], kl),
            TensorDescriptor.from_tensor(v2, [BLOCK_N, d], kl))


def gluon_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, softmax_scale: float | None = None,
                    variant: str = "ws"):
    """q, k, v: bf16 ``(B, H, N, 128)``, N % 128 == 0 -> (out bf16 ``(B, H, N, 128)``, lse fp32 ``(B, H, N)``)."""
    b, h, n, d = q.shape
    if q.dtype != torch.bfloat16 or d != 128 or n % (2 * HALF_M) or k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"probe scope: bf16 (B, H, N, 128) with N % 128 == 0, got {tuple(q.shape)} {q.dtype}")
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(d)
    o = torch.empty_like(q)
    lse = torch.empty(b, h, n, device=q.device, dtype=torch.float32)
    stages, pipe, producer_default, ping = VARIANTS[variant]
    _attn_fwd_ws[(n // (2 * HALF_M), b * h)](*_descs(q, k, v), o, lse, scale * LOG2E, n, HALF_M, BLOCK_N, d, stages,
                                              pipe, producer_default, ping, num_warps=4)
    return o, lse


def aot() -> int:
    """Compile for sm_90 on any machine (no GPU needed): catches Gluon type and layout errors before device time."""
    from triton.backends.compiler import GPUTarget
    from triton.runtime.jit import mangle_type

    x = torch.empty(4 * 256, 128, dtype=torch.bfloat16)
    qd, kd, _ = _descs(x, x, x)
    sig = {"q_desc": mangle_type(qd), "k_desc": mangle_type(kd), "v_desc": mangle_type(kd), "o_ptr": "*bf16",
           "lse_ptr": "*fp32", "qk_scale": "fp32", "N_CTX": "i32", "HALF_M": "constexpr", "BLOCK_N": "constexpr",
           "HEAD_D": "constexpr", "STAGES": "constexpr", "PIPE": "constexpr", "PRODUCER_DEFAULT": "constexpr",
           "PING": "constexpr"}
    for name, (stages, pipe, producer_default, ping) in VARIANTS.items():
        src = gluon._runtime.GluonASTSource(_attn_fwd_ws, signature=sig, constexprs={
            "HALF_M": HALF_M, "BLOCK_N": BLOCK_N, "HEAD_D": 128, "STAGES": stages, "PIPE": pipe,
            "PRODUCER_DEFAULT": producer_default, "PING": ping})
        kern = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
        ptx = kern.asm["ptx"]
        print(f"{name} (triton {triton.__version__}): cubin {len(kern.asm['cubin'])} bytes; wgmma "
              f"{ptx.count('wgmma.mma_async')}, setmaxnreg {ptx.count('setmaxnreg')}, shared {kern.metadata.shared} B")
    return 0


def check_and_time(out_path: str | None) -> int:
    from triton.testing import do_bench

    torch.manual_seed(0)
    dev = "cuda"
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
              "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "commit": os.environ.get("SEQLAB_GIT_COMMIT"),
              "variants": {k: dict(zip(("stages", "pipe", "producer_default", "ping"), v))
                           for k, v in VARIANTS.items()},
              "check": [], "bench": []}
    for (b, h, n) in [(1, 2, 128), (2, 3, 384), (1, 4, 1024)]:
        q, k, v = (torch.randn(b, h, n, 128, device=dev, dtype=torch.bfloat16) for _ in range(3))
        s = q.double() @ k.double().transpose(-1, -2) / math.sqrt(128)
        ref_lse = torch.logsumexp(s, -1)
        ref = torch.softmax(s, -1) @ v.double()
        for name in VARIANTS:
            o, lse = gluon_attention(q, k, v, variant=name)
            torch.cuda.synchronize()
            err = ((o.double() - ref).norm() / ref.norm()).item()
            lse_err = (lse.double() - ref_lse).abs().max().item()
            ok = math.isfinite(err) and err < 2e-2 and lse_err < 1e-2
            report["check"].append({"variant": name, "shape": [b, h, n, 128], "rel_err": err,
                                    "lse_max_abs_err": lse_err, "ok": ok})
            print(f"check {name} {b}x{h}x{n}: rel err {err:.2e}, lse err {lse_err:.2e} {'ok' if ok else 'FAIL'}",
                  flush=True)
    bad = {c["variant"] for c in report["check"] if not c["ok"]}
    for name in bad:  # a variant that fails the check is not timed
        VARIANTS.pop(name)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    import seqlab.attention as sa

    for n in (2048, 4096, 8192, 16384):
        b, h = 16384 // n, 16
        q, k, v = (torch.randn(b, h, n, 128, device=dev, dtype=torch.bfloat16) for _ in range(3))
        qb, kb, vb = (t.transpose(1, 2).contiguous() for t in (q, k, v))  # seqlab: (B, N, H, D)
        flops = 4 * b * h * n * n * 128
        row = {"seqlen": n, "batch": b, "heads": h}
        impls = {f"gluon_{name}": (lambda q=q, k=k, v=v, name=name: gluon_attention(q, k, v, variant=name))
                 for name in VARIANTS}
        impls["seqlab"] = lambda qb=qb, kb=kb, vb=vb: sa.flash_attn_func(qb, kb, vb)
        for name, backend in (("sdpa_flash", SDPBackend.FLASH_ATTENTION), ("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION)):
            def run(backend=backend, q=q, k=k, v=v):
                with sdpa_kernel(backend):
                    return torch.nn.functional.scaled_dot_product_attention(q, k, v)
            impls[name] = run
        for name, fn in impls.items():
            try:
                ms = do_bench(fn, warmup=50, rep=200)
                row[name] = {"ms": ms, "tflops": flops / ms * 1e-9}
            except Exception as e:  # an anchor that is not available here is recorded, not fatal
                row[name] = {"error": repr(e)[:200]}
        report["bench"].append(row)
        print(n, {k: round(v["tflops"], 1) for k, v in row.items() if isinstance(v, dict) and "tflops" in v},
              flush=True)
    _write(report, out_path)
    return 0


def _write(report, out_path):
    if out_path:
        with open(out_path, "w") as f:
            json.dump(report, f, indent=2)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--aot", action="store_true", help="compile for sm_90 only (no GPU needed)")
    ap.add_argument("--out", default=None, help="JSON path for the check and timings")
    args = ap.parse_args(argv)
    return aot() if args.aot else check_and_time(args.out)


if __name__ == "__main__":
    sys.exit(main())
