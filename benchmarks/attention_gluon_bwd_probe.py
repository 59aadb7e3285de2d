"""Probe: a warp-specialised dK/dV kernel in Gluon for Hopper (non-causal, head dim 128, bf16, no GQA).

The backward now sets the forward+backward gap to cuDNN (benchmarks/NOTES.md, v7). This probe asks whether the
structure that lifted the forward also lifts dK/dV, which is about 2/3 of the backward's FLOPs.
- A CTA owns 128 keys; each of two consumer warpgroups keeps 64 keys and their V rows in shared memory, with dK
  and dV accumulators in registers.
- A producer partition streams 64-row blocks of Q and dO through a TMA ring.
- Per query block, the transposed form (keys × queries): Sᵀ = K Qᵀ, Pᵀ = exp2(Sᵀ·scale − lse), dPᵀ = V dOᵀ,
  dV += Pᵀ dO, dSᵀ = Pᵀ ⊙ (dPᵀ − δ), dK += dSᵀ Q. Pᵀ and dSᵀ enter their GEMMs from registers.
- dQ and δ come from seqlab's Triton dQ kernel, unchanged.

    python3 benchmarks/attention_gluon_bwd_probe.py --aot          # compile for sm_90 without a GPU
    PYTHONPATH=src python3 benchmarks/attention_gluon_bwd_probe.py --out $OUT/gluon_bwd_probe.json   # H100

On the GPU it first checks dK/dV against float64 autograd, on fresh random inputs. It then times three backwards
with `triton.testing.do_bench` medians at the FlashAttention protocol's shapes (d128, 16k tokens):
- seqlab's backward (Triton dQ + Triton dK/dV);
- the Triton dQ followed by this dK/dV;
- SDPA's FA2 and cuDNN backwards.
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
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared,
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

HALF_N, BLOCK_M, STAGES = 64, 64, 3
LOG2E = 1.4426950408889634
_tma_load = tma.async_load if hasattr(tma, "async_load") else tma.async_copy_global_to_shared


@gluon.jit
def _dkdv_consumer(k_smem, v_smem, q_ring, do_ring, kv_bar, ready, empty, ds_smem, lse_ptr, delta_ptr, dk_ptr,
                   dv_ptr, dq_ptr, stats_base, row_k, row_q, col, stride_row, n_blocks, qk_scale, sm_scale,
                   WG: gl.constexpr, HALF_N: gl.constexpr, BLOCK_M: gl.constexpr, HEAD_D: gl.constexpr,
                   STAGES: gl.constexpr, FUSED_DQ: gl.constexpr):
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                       instr_shape=[16, BLOCK_M, 16])
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                       instr_shape=[16, HEAD_D, 16])
    a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    col_s: gl.constexpr = gl.SliceLayout(0, s_layout)
    dtype: gl.constexpr = k_smem.dtype
    k = k_smem.index(WG)
    v = v_smem.index(WG)
    mbarrier.wait(kv_bar.index(WG), 0)
    dk = gl.zeros([HALF_N, HEAD_D], gl.float32, o_layout)
    dv = gl.zeros([HALF_N, HEAD_D], gl.float32, o_layout)
    for i in range(n_blocks):
        s = i % STAGES
        mbarrier.wait(ready.index(s), (i // STAGES) & 1)
        q = q_ring.index(s)
        do = do_ring.index(s)
        st = warpgroup_mma(k, q.permute((1, 0)), gl.zeros([HALF_N, BLOCK_M], gl.float32, s_layout),
                           use_acc=False, is_async=True)
        dpt = warpgroup_mma(v, do.permute((1, 0)), gl.zeros([HALF_N, BLOCK_M], gl.float32, s_layout),
                            use_acc=False, is_async=True)
        offs_m = i * BLOCK_M + gl.arange(0, BLOCK_M, col_s)
        lse = gl.load(lse_ptr + stats_base + offs_m) * 1.4426950408889634  # the forward stores natural-log LSE
        delta = gl.load(delta_ptr + stats_base + offs_m)
        st = warpgroup_mma_wait(1, deps=[st])
        pt = gl.exp2(st * qk_scale - lse[None, :])
        dv = warpgroup_mma(gl.convert_layout(pt.to(dtype), a_layout), do, dv, is_async=True)
        dpt = warpgroup_mma_wait(1, deps=[dpt])
        dst = pt * (dpt - delta[None, :])
        dsb = dst.to(dtype)
        dk = warpgroup_mma(gl.convert_layout(dsb, a_layout), q, dk, is_async=True)
        if FUSED_DQ:
            # dQ_i += dS_i K_j (queries x keys @ keys x D): dS^T goes through shared memory to be read transposed
            ds = ds_smem.index(WG)
            ds.store(dsb)
            fence_async_shared()
            dq = warpgroup_mma(ds.permute((1, 0)), k, gl.zeros([BLOCK_M, HEAD_D], gl.float32, o_layout),
                               use_acc=False, is_async=True)
            dk, dv, dq = warpgroup_mma_wait(0, deps=[dk, dv, dq])
            mbarrier.arrive(empty.index(s), count=1)
            qrows = row_q + i * BLOCK_M + gl.arange(0, BLOCK_M, gl.SliceLayout(1, o_layout))
            qcols = col + gl.arange(0, HEAD_D, gl.SliceLayout(0, o_layout))
            gl.atomic_add(dq_ptr + qrows.to(gl.int64)[:, None] * stride_row + qcols[None, :], dq * sm_scale,
                          sem="relaxed")
        else:
            dk, dv = warpgroup_mma_wait(0, deps=[dk, dv])
            mbarrier.arrive(empty.index(s), count=1)
    rows = row_k + WG * HALF_N + gl.arange(0, HALF_N, gl.SliceLayout(1, o_layout))
    cols = col + gl.arange(0, HEAD_D, gl.SliceLayout(0, o_layout))
    offs = rows.to(gl.int64)[:, None] * stride_row + cols[None, :]
    gl.store(dk_ptr + offs, (dk * sm_scale).to(dtype))
    gl.store(dv_ptr + offs, dv.to(dtype))


@gluon.jit
def _dkdv_producer(k_desc, v_desc, q_desc, do_desc, k_smem, v_smem, q_ring, do_ring, kv_bar, ready, empty,
                   row_k, row_q, col, n_blocks, HALF_N: gl.constexpr, BLOCK_M: gl.constexpr,
                   STAGES: gl.constexpr):
    for w in gl.static_range(2):
        mbarrier.expect(kv_bar.index(w), k_desc.block_type.nbytes + v_desc.block_type.nbytes)
        _tma_load(k_desc, [row_k + w * HALF_N, col], kv_bar.index(w), k_smem.index(w))
        _tma_load(v_desc, [row_k + w * HALF_N, col], kv_bar.index(w), v_smem.index(w))
    for i in range(n_blocks):
        s = i % STAGES
        mbarrier.wait(empty.index(s), ((i // STAGES) & 1) ^ 1)
        mbarrier.expect(ready.index(s), q_desc.block_type.nbytes + do_desc.block_type.nbytes)
        _tma_load(q_desc, [row_q + i * BLOCK_M, col], ready.index(s), q_ring.index(s))
        _tma_load(do_desc, [row_q + i * BLOCK_M, col], ready.index(s), do_ring.index(s))


@gluon.jit
def _attn_bwd_dkdv_gluon(q_desc, k_desc, v_desc, do_desc, lse_ptr, delta_ptr, dk_ptr, dv_ptr, dq_ptr, stride_lb,
                         stride_lh, nheads, seqlen, stride_row, qk_scale, sm_scale, HALF_N: gl.constexpr,
                         BLOCK_M: gl.constexpr, HEAD_D: gl.constexpr, STAGES: gl.constexpr,
                         FUSED_DQ: gl.constexpr):
    pid_n = gl.program_id(0)
    b = gl.program_id(1)
    h = gl.program_id(2)
    row_k = b * seqlen + pid_n * (2 * HALF_N)
    row_q = b * seqlen
    col = h * HEAD_D
    n_blocks = seqlen // BLOCK_M
    stats_base = b.to(gl.int64) * stride_lb + h * stride_lh
    dtype: gl.constexpr = q_desc.dtype
    k_smem = gl.allocate_shared_memory(dtype, [2, HALF_N, HEAD_D], k_desc.layout)
    v_smem = gl.allocate_shared_memory(dtype, [2, HALF_N, HEAD_D], v_desc.layout)
    q_ring = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_M, HEAD_D], q_desc.layout)
    do_ring = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_M, HEAD_D], do_desc.layout)
    kv_bar = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
    ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    ds_smem = gl.allocate_shared_memory(dtype, [2, HALF_N, BLOCK_M],
                                        gl.NVMMASharedLayout.get_default_for([HALF_N, BLOCK_M], dtype))
    for i in gl.static_range(2):
        mbarrier.init(kv_bar.index(i), count=1)
    for i in gl.static_range(STAGES):
        mbarrier.init(ready.index(i), count=1)
        mbarrier.init(empty.index(i), count=2)
    wg0: gl.constexpr = 0
    wg1: gl.constexpr = 1
    gl.warp_specialize([
        (_dkdv_producer, (k_desc, v_desc, q_desc, do_desc, k_smem, v_smem, q_ring, do_ring, kv_bar, ready, empty,
                          row_k, row_q, col, n_blocks, HALF_N, BLOCK_M, STAGES)),
        (_dkdv_consumer, (k_smem, v_smem, q_ring, do_ring, kv_bar, ready, empty, ds_smem, lse_ptr, delta_ptr,
                          dk_ptr, dv_ptr, dq_ptr, stats_base, row_k, row_q, col, stride_row, n_blocks, qk_scale,
                          sm_scale, wg0, HALF_N, BLOCK_M, HEAD_D, STAGES, FUSED_DQ)),
        (_dkdv_consumer, (k_smem, v_smem, q_ring, do_ring, kv_bar, ready, empty, ds_smem, lse_ptr, delta_ptr,
                          dk_ptr, dv_ptr, dq_ptr, stats_base, row_k, row_q, col, stride_row, n_blocks, qk_scale,
                          sm_scale, wg1, HALF_N, BLOCK_M, HEAD_D, STAGES, FUSED_DQ)),
    ], [4, 4], [240, 240])


def _descs(q, k, v, do):
    d = q.shape[-1]
    lay = gl.NVMMASharedLayout.get_default_for([64, d], gl.bfloat16)
    return [TensorDescriptor.from_tensor(t.view(t.shape[0] * t.shape[1], t.shape[2] * d), [64, d], lay)
            for t in (q, k, v, do)]


def gluon_dkdv(q, k, v, do, lse, delta, scale, dq_acc=None):
    """q/k/v/do bf16 (B, N, H, 128) contiguous, N % 128 == 0; lse, delta fp32 (B, H, N) -> dk, dv. With ``dq_acc``
    (fp32 (B, N, H, 128), zeroed) the kernel also accumulates dQ into it (5 GEMMs instead of 4 + the dQ kernel's 3)."""
    b, n, h, d = q.shape
    dk, dv = torch.empty_like(k), torch.empty_like(v)
    qd, kd, vd, dod = _descs(q, k, v, do)
    fused = dq_acc is not None
    _attn_bwd_dkdv_gluon[(n // (2 * HALF_N), b, h)](qd, kd, vd, dod, lse, delta, dk, dv, dq_acc if fused else dk,
                                                    lse.stride(0), lse.stride(1), h, n, h * d, scale * LOG2E, scale,
                                                    HALF_N, BLOCK_M, d, STAGES, fused, num_warps=4)
    return dk, dv


def gluon_bwd_fused(q, k, v, out, do, lse, scale):
    """The 5-GEMM backward: delta and the dQ conversion in torch, dK/dV/dQ in the Gluon kernel."""
    delta = (do.float() * out.float()).sum(-1).transpose(1, 2).contiguous()
    dq_acc = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    dk, dv = gluon_dkdv(q, k, v, do, lse, delta, scale, dq_acc)
    return dq_acc.to(q.dtype), dk, dv


def aot() -> int:
    from triton.backends.compiler import GPUTarget
    from triton.runtime.jit import mangle_type

    x = torch.empty(2, 256, 4, 128, dtype=torch.bfloat16)
    dsc = _descs(x, x, x, x)
    sig = {"q_desc": mangle_type(dsc[0]), "k_desc": mangle_type(dsc[1]), "v_desc": mangle_type(dsc[2]),
           "do_desc": mangle_type(dsc[3]), "lse_ptr": "*fp32", "delta_ptr": "*fp32", "dk_ptr": "*bf16",
           "dv_ptr": "*bf16", "dq_ptr": "*fp32", "stride_lb": "i32", "stride_lh": "i32", "nheads": "i32",
           "seqlen": "i32", "stride_row": "i32", "qk_scale": "fp32", "sm_scale": "fp32", "HALF_N": "constexpr",
           "BLOCK_M": "constexpr", "HEAD_D": "constexpr", "STAGES": "constexpr", "FUSED_DQ": "constexpr"}
    src = gluon._runtime.GluonASTSource(_attn_bwd_dkdv_gluon, signature=sig, constexprs={
        "HALF_N": HALF_N, "BLOCK_M": BLOCK_M, "HEAD_D": 128, "STAGES": STAGES, "FUSED_DQ": True})
    kern = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
    ptx = kern.asm["ptx"]
    print(f"triton {triton.__version__}: cubin {len(kern.asm['cubin'])} B, wgmma {ptx.count('wgmma.mma_async')}, "
          f"shared {kern.metadata.shared} B")
    return 0


def _dq_and_delta(q, k, v, out, do, lse, scale):
    """seqlab's Triton dQ kernel (it also writes delta = rowsum(dO·O)), as in _triton_bwd_tma.tma_bwd."""
    from seqlab.attention import _triton_bwd_tma as tb
    from seqlab.attention import _triton_kernels as kern
    from seqlab.attention._fast_launch import launch_tma
    from seqlab.utils.intmath import cdiv

    b, n, h, d = q.shape
    dq = torch.empty_like(q)
    delta = torch.empty(lse.shape, dtype=torch.float32, device=q.device)
    scalars = (lse.stride(0), lse.stride(1), 1, n, n, scale * kern.LOG2E, scale)
    bm, bn, opts = tb._tiles("dq", q, False, n, False)
    launch_tma(tb._attn_bwd_dq_tma, (cdiv(n, bm), b, h), ((q, bm), (k, bn), (v, bn), (do, bm), (out, bm), (dq, bm)),
               (lse, delta, *scalars), dict(HEAD_DIM=d, BLOCK_M=bm, BLOCK_N=bn, CAUSAL=False, MASK_N=n % bn != 0,
                                            UPCAST=False, **opts), tb._desc, q.get_device())
    return dq, delta


def check_and_time(out_path: str | None) -> int:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from triton.testing import do_bench

    from seqlab.attention import _triton_bwd_tma as tb
    from seqlab.attention import _triton_launch as tl_launch

    torch.manual_seed(0)
    dev = "cuda"
    rep = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
           "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "commit": os.environ.get("SEQLAB_GIT_COMMIT"), "check": [], "bench": []}
    scale = 1.0 / math.sqrt(128)
    for (b, n, h) in [(1, 128, 2), (2, 384, 3), (1, 1024, 4)]:
        q, k, v, do = (torch.randn(b, n, h, 128, device=dev, dtype=torch.bfloat16) for _ in range(4))
        out, lse = tl_launch._gluon_fwd.gluon_fwd(q, k, v, scale, False)
        _, delta = _dq_and_delta(q, k, v, out, do, lse, scale)
        dk, dv = gluon_dkdv(q, k, v, do, lse, delta, scale)
        dq5, dk5, dv5 = gluon_bwd_fused(q, k, v, out, do, lse, scale)
        torch.cuda.synchronize()
        qd, kd, vd = (t.double().transpose(1, 2).requires_grad_() for t in (q, k, v))
        o = torch.softmax(qd @ kd.transpose(-1, -2) * scale, -1) @ vd
        o.backward(do.double().transpose(1, 2))
        row = {"shape": [b, n, h, 128]}
        ok = True
        for name, got, ref in (("dk", dk, kd.grad), ("dv", dv, vd.grad), ("dq_fused", dq5, qd.grad),
                               ("dk_fused", dk5, kd.grad), ("dv_fused", dv5, vd.grad)):
            err = ((got.double().transpose(1, 2) - ref).norm() / ref.norm()).item()
            row[name] = err
            ok &= math.isfinite(err) and err < 2e-2
        row["ok"] = ok
        rep["check"].append(row)
        print("check", row, flush=True)
    if not all(r["ok"] for r in rep["check"]):
        _write(rep, out_path)
        return 1
    for n in (2048, 4096, 8192, 16384):
        b, h = 16384 // n, 16
        q, k, v, do = (torch.randn(b, n, h, 128, device=dev, dtype=torch.bfloat16) for _ in range(4))
        out, lse = tl_launch._gluon_fwd.gluon_fwd(q, k, v, scale, False)
        flops = 2.5 * 4 * b * h * n * n * 128
        row = {"seqlen": n, "batch": b, "heads": h}

        t = (q, k, v, out, do, lse)

        def ours(t=t):
            q, k, v, out, do, lse = t
            _, delta = _dq_and_delta(q, k, v, out, do, lse, scale)
            return gluon_dkdv(q, k, v, do, lse, delta, scale)

        def seqlab_bwd(t=t):
            q, k, v, out, do, lse = t
            return tb.tma_bwd(do, q, k, v, out, lse, scale, False)

        def fused(t=t):
            q, k, v, out, do, lse = t
            return gluon_bwd_fused(q, k, v, out, do, lse, scale)

        impls = {"triton_dq+gluon_dkdv": ours, "gluon_fused_dq": fused, "seqlab_bwd": seqlab_bwd}
        leaves = tuple(x.transpose(1, 2).detach().requires_grad_() for x in (q, k, v))
        grad_out = do.transpose(1, 2)
        for name, be in (("sdpa_flash", SDPBackend.FLASH_ATTENTION), ("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION)):
            with sdpa_kernel(be):
                o = torch.nn.functional.scaled_dot_product_attention(*leaves)
            impls[name] = (lambda o=o, leaves=leaves, g=grad_out:
                           torch.autograd.grad(o, leaves, g, retain_graph=True))
        for name, fn in impls.items():
            try:
                ms = do_bench(fn, warmup=30, rep=150)
                row[name] = {"ms": ms, "tflops": flops / ms * 1e-9}
            except Exception as e:
                row[name] = {"error": repr(e)[:200]}
        rep["bench"].append(row)
        print(n, {k: round(v["tflops"], 1) for k, v in row.items() if isinstance(v, dict) and "tflops" in v},
              flush=True)
    _write(rep, out_path)
    return 0


def _write(rep, path):
    if path:
        with open(path, "w") as f:
            json.dump(rep, f, indent=2)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--aot", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    return aot() if args.aot else check_and_time(args.out)


if __name__ == "__main__":
    sys.exit(main())
