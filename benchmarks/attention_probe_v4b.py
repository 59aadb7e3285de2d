"""v4 probe, part b (one GPU call): does overlapping the next key block's QK^T with the current block's
softmax (FA3's intra-warpgroup pipelining, written by hand: the loop carries the next scores) speed up the
forward on the H100? Three prototypes, non-causal, against the shipped forward in the same process:

* ``tma``      -- part a's TMA-descriptor forward (2-D descriptors), for reference;
* ``tma_pp``   -- the same with the hand-pipelined loop;
* ``ptr_pp``   -- plain pointer loads (the shipped kernel's addressing) with the hand-pipelined loop;
* ``tma3d``    -- 3-D descriptors (batch, seqlen, heads*headdim), which clip at each sequence's end (the
  layout a ragged-length version would need), plain loop.

Shapes: hidden 2048, batch x seqlen = 16k tokens, bf16, N = 8k (N a multiple of the tiles: probe only).
Writes ``$OUT/attention_probe_v4b.json``.

    PYTHONPATH=src python benchmarks/attention_probe_v4b.py --out $OUT/attention_probe_v4b.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import triton
import triton.language as tl
from triton.testing import do_bench

sys.path.insert(0, os.path.dirname(__file__))
from attention_probe_v4 import LOG2E, inputs, tflops, tma_forward  # noqa: E402
from seqlab.attention import flash_attn_func  # noqa: E402
from seqlab.utils.runinfo import run_info  # noqa: E402


@triton.jit
def _softmax_step(s, m_i, l_i, acc, v, qk_scale):
    m_new = tl.maximum(m_i, tl.max(s, 1) * qk_scale)
    p = tl.math.exp2(s * qk_scale - m_new[:, None])
    alpha = tl.math.exp2(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None]
    acc = tl.dot(p.to(v.dtype), v, acc)
    return m_new, l_i, acc


@triton.jit
def _fwd_tma_pp(desc_q, desc_k, desc_v, desc_o, N, qk_scale,
                HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_m = tl.program_id(0)
    b = tl.program_id(1)
    h = tl.program_id(2)
    row0 = b * N
    col = h * HEAD_DIM
    q = desc_q.load([row0 + pid_m * BLOCK_M, col])
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    s = tl.dot(q, desc_k.load([row0, col]).T)
    for start_n in tl.range(BLOCK_N, N, BLOCK_N):
        s_next = tl.dot(q, desc_k.load([row0 + start_n, col]).T)  # issued before this block's softmax
        v = desc_v.load([row0 + start_n - BLOCK_N, col])
        m_i, l_i, acc = _softmax_step(s, m_i, l_i, acc, v, qk_scale)
        s = s_next
    v = desc_v.load([row0 + N - BLOCK_N, col])
    m_i, l_i, acc = _softmax_step(s, m_i, l_i, acc, v, qk_scale)
    desc_o.store([row0 + pid_m * BLOCK_M, col], (acc / l_i[:, None]).to(q.dtype))


@triton.jit
def _fwd_ptr_pp(Q, K, V, O, N, stride_n, qk_scale,
                HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_m = tl.program_id(0)
    b = tl.program_id(1)
    h = tl.program_id(2)
    base = b.to(tl.int64) * N * stride_n + h * HEAD_DIM
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(Q + base + offs_m[:, None] * stride_n + offs_d[None, :])
    k_ptrs = K + base + offs_n[:, None] * stride_n + offs_d[None, :]
    v_ptrs = V + base + offs_n[:, None] * stride_n + offs_d[None, :]
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    s = tl.dot(q, tl.trans(tl.load(k_ptrs)))
    for start_n in range(BLOCK_N, N, BLOCK_N):
        s_next = tl.dot(q, tl.trans(tl.load(k_ptrs + start_n * stride_n)))
        v = tl.load(v_ptrs + (start_n - BLOCK_N) * stride_n)
        m_i, l_i, acc = _softmax_step(s, m_i, l_i, acc, v, qk_scale)
        s = s_next
    v = tl.load(v_ptrs + (N - BLOCK_N) * stride_n)
    m_i, l_i, acc = _softmax_step(s, m_i, l_i, acc, v, qk_scale)
    tl.store(O + base + offs_m[:, None] * stride_n + offs_d[None, :], (acc / l_i[:, None]).to(q.dtype))


@triton.jit
def _fwd_tma3d(desc_q, desc_k, desc_v, desc_o, N, qk_scale,
               HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_m = tl.program_id(0)
    b = tl.program_id(1)
    h = tl.program_id(2)
    col = h * HEAD_DIM
    q = desc_q.load([b, pid_m * BLOCK_M, col]).reshape(BLOCK_M, HEAD_DIM)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    for start_n in tl.range(0, N, BLOCK_N):
        k = desc_k.load([b, start_n, col]).reshape(BLOCK_N, HEAD_DIM)
        s = tl.dot(q, k.T)
        v = desc_v.load([b, start_n, col]).reshape(BLOCK_N, HEAD_DIM)
        m_i, l_i, acc = _softmax_step(s, m_i, l_i, acc, v, qk_scale)
    out = (acc / l_i[:, None]).to(q.dtype)
    desc_o.store([b, pid_m * BLOCK_M, col], out.reshape(1, BLOCK_M, HEAD_DIM))


def run_variant(name, q, k, v, bm, bn, warps, stages):
    from triton.tools.tensor_descriptor import TensorDescriptor

    b, n, h, d = q.shape
    out = torch.empty_like(q)
    grid = (n // bm, b, h)
    scale = d ** -0.5 * LOG2E
    opts = dict(HEAD_DIM=d, BLOCK_M=bm, BLOCK_N=bn, num_warps=warps, num_stages=stages)
    if name == "tma":
        return tma_forward(q, k, v, False, bm, bn, warps, stages, False)
    if name == "tma_pp":
        q2, k2, v2, o2 = (t.view(b * n, h * d) for t in (q, k, v, out))
        descs = [TensorDescriptor.from_tensor(t, blk) for t, blk in
                 ((q2, [bm, d]), (k2, [bn, d]), (v2, [bn, d]), (o2, [bm, d]))]
        _fwd_tma_pp[grid](*descs, n, scale, **opts)
    elif name == "ptr_pp":
        _fwd_ptr_pp[grid](q, k, v, out, n, q.stride(1), scale, **opts)
    elif name == "tma3d":
        q3, k3, v3, o3 = (t.view(b, n, h * d) for t in (q, k, v, out))
        descs = [TensorDescriptor.from_tensor(t, blk) for t, blk in
                 ((q3, [1, bm, d]), (k3, [1, bn, d]), (v3, [1, bn, d]), (o3, [1, bm, d]))]
        _fwd_tma3d[grid](*descs, n, scale, **opts)
    return out


CONFIGS = [(128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3), (128, 128, 8, 2), (128, 64, 4, 4)]
VARIANTS = ("tma", "tma_pp", "ptr_pp", "tma3d")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seqlen", type=int, default=8192)
    args = ap.parse_args(argv)
    t0 = time.time()
    torch.manual_seed(0)
    res = dict(info=run_info(), rows=[])
    for d in (64, 128):
        q, k, v = inputs(args.seqlen, d, grad=False)
        b, n, h, _ = q.shape
        with torch.no_grad():
            ref = flash_attn_func(q, k, v)
            base = do_bench(lambda q=q, k=k, v=v: flash_attn_func(q, k, v), warmup=25, rep=100, return_mode="median")
        row = dict(d=d, n=n, seqlab_ms=base, seqlab_tflops=tflops(b, n, h, d, False, "fwd", base), trials=[])
        for name in VARIANTS:
            for cfg in CONFIGS:
                try:
                    out = run_variant(name, q, k, v, *cfg)
                    err = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
                    t = do_bench(lambda name=name, q=q, k=k, v=v, cfg=cfg: run_variant(name, q, k, v, *cfg),
                                 warmup=25, rep=100, return_mode="median")
                    row["trials"].append(dict(variant=name, cfg=cfg, ms=t, tflops=tflops(b, n, h, d, False, "fwd", t),
                                              rel_err_vs_seqlab=err))
                except Exception as exc:
                    row["trials"].append(dict(variant=name, cfg=cfg, error=f"{type(exc).__name__}: {str(exc)[:200]}"))
        res["rows"].append(row)
        print(f"d{d} N{n}: shipped forward {row['seqlab_tflops']:.0f} TFLOP/s", flush=True)
        for name in VARIANTS:
            ok = [t for t in row["trials"] if t["variant"] == name and "ms" in t and t["rel_err_vs_seqlab"] < 2e-2]
            if ok:
                bt = min(ok, key=lambda t: t["ms"])
                print(f"  {name:7s} best {tuple(bt['cfg'])}: {bt['tflops']:.0f} TFLOP/s (x{base / bt['ms']:.2f}, "
                      f"err {bt['rel_err_vs_seqlab']:.1e})", flush=True)
            else:
                errs = [t.get("error", "bad") for t in row["trials"] if t["variant"] == name][:1]
                print(f"  {name:7s} no valid config: {errs}", flush=True)
        res["seconds"] = time.time() - t0
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
