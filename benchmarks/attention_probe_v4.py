"""v4 probe, one GPU call: (A) causal query-block order, (B) deeper-pipelined backward tiles, (C) a forward
prototype that loads Q/K/V through TMA tensor descriptors (optionally warp-specialised).

Everything is timed side by side in this one process (``do_bench`` medians, random bf16 inputs, the
FlashAttention protocol's shapes: hidden 2048, batch x seqlen = 16k tokens) and written to
``$OUT/attention_probe_v4.json``; the table printed last is what the notes quote.

    PYTHONPATH=src python benchmarks/attention_probe_v4.py --out $OUT/attention_probe_v4.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import triton
import triton.language as tl
from triton.testing import do_bench

from seqlab.attention import _triton_launch as launch_mod
from seqlab.attention import flash_attn_func
from seqlab.attention._configs import get_config, set_override
from seqlab.utils.runinfo import run_info

LOG2E = 1.4426950408889634


def proto_shape(n, d):
    return max(1, 16384 // n), n, 2048 // d, d


def tflops(b, n, h, d, causal, mode, ms):
    f = 4 * b * h * n * n * d * (0.5 if causal else 1.0) * {"fwd": 1.0, "bwd": 2.5, "fwd_bwd": 3.5}[mode]
    return f / ms * 1e-9


def inputs(n, d, grad=True):
    b, n, h, d = proto_shape(n, d)
    q, k, v = (torch.randn(b, n, h, d, device="cuda", dtype=torch.bfloat16, requires_grad=grad) for _ in range(3))
    return q, k, v


def time_seqlab(q, k, v, causal, mode):
    if mode == "fwd":
        with torch.no_grad():
            return do_bench(lambda: flash_attn_func(q, k, v, causal=causal), warmup=25, rep=100, return_mode="median")
    out = flash_attn_func(q, k, v, causal=causal)
    g = torch.randn_like(out)
    return do_bench(lambda: out.backward(g, retain_graph=True), warmup=25, rep=100, grad_to_none=[q, k, v],
                    return_mode="median")


def time_fa2(q, k, v, causal, mode):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    qt, kt, vt = (t.detach().transpose(1, 2).contiguous().requires_grad_(True) for t in (q, k, v))

    def f():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)

    if mode == "fwd":
        with torch.no_grad():
            return do_bench(f, warmup=25, rep=100, return_mode="median")
    out = f()
    g = torch.randn_like(out)
    return do_bench(lambda: out.backward(g, retain_graph=True), warmup=25, rep=100, grad_to_none=[qt, kt, vt],
                    return_mode="median")


# ---------------------------------------------------------------- (C) TMA-descriptor forward prototype
@triton.jit
def _fwd_tma(desc_q, desc_k, desc_v, desc_o, N, qk_scale,
             HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
             WS: tl.constexpr):
    # Q/K/V/O viewed as 2-D (batch * seqlen, heads * head_dim); N a multiple of BLOCK_M (probe only).
    pid_m = tl.program_id(0)
    if CAUSAL:
        pid_m = tl.num_programs(0) - 1 - pid_m
    b = tl.program_id(1)
    h = tl.program_id(2)
    row0 = b * N
    m0 = pid_m * BLOCK_M
    col = h * HEAD_DIM
    q = desc_q.load([row0 + m0, col])
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    hi = N
    if CAUSAL:
        hi = m0
    for start_n in tl.range(0, hi, BLOCK_N, warp_specialize=WS):
        k = desc_k.load([row0 + start_n, col])
        s = tl.dot(q, k.T)
        m_new = tl.maximum(m_i, tl.max(s, 1) * qk_scale)
        p = tl.math.exp2(s * qk_scale - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        v = desc_v.load([row0 + start_n, col])
        acc = tl.dot(p.to(v.dtype), v, acc)
        m_i = m_new
    if CAUSAL:
        offs_m = m0 + tl.arange(0, BLOCK_M)
        for start_n in range(m0, m0 + BLOCK_M, BLOCK_N):
            k = desc_k.load([row0 + start_n, col])
            s = tl.dot(q, k.T) * qk_scale
            offs_n = start_n + tl.arange(0, BLOCK_N)
            s = tl.where(offs_m[:, None] >= offs_n[None, :], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            p = tl.math.exp2(s - m_new[:, None])
            alpha = tl.math.exp2(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None]
            v = desc_v.load([row0 + start_n, col])
            acc = tl.dot(p.to(v.dtype), v, acc)
            m_i = m_new
    out = acc / l_i[:, None]
    desc_o.store([row0 + m0, col], out.to(q.dtype))


def tma_forward(q, k, v, causal, bm, bn, warps, stages, ws):
    from triton.tools.tensor_descriptor import TensorDescriptor

    b, n, h, d = q.shape
    out = torch.empty_like(q)
    q2, k2, v2, o2 = (t.view(b * n, h * d) for t in (q, k, v, out))
    dq = TensorDescriptor.from_tensor(q2, [bm, d])
    dk = TensorDescriptor.from_tensor(k2, [bn, d])
    dv = TensorDescriptor.from_tensor(v2, [bn, d])
    do = TensorDescriptor.from_tensor(o2, [bm, d])
    grid = (n // bm, b, h)
    _fwd_tma[grid](dq, dk, dv, do, n, d ** -0.5 * LOG2E, HEAD_DIM=d, BLOCK_M=bm, BLOCK_N=bn, CAUSAL=causal,
                   WS=ws, num_warps=warps, num_stages=stages)
    return out


TMA_CONFIGS = [(128, 64, 4, 3, False), (128, 64, 8, 3, False), (128, 128, 8, 2, False), (128, 128, 8, 3, False),
               (128, 64, 4, 4, False), (128, 64, 8, 4, False), (128, 64, 8, 3, True), (128, 128, 8, 2, True)]

BWD_CANDIDATES = {
    "dkdv": [(32, 128, 4, 3), (32, 128, 4, 4), (32, 128, 4, 5), (32, 64, 4, 4), (64, 64, 4, 3), (64, 128, 8, 3)],
    "dq": [(128, 64, 4, 4), (128, 32, 4, 4), (128, 32, 4, 5), (64, 64, 4, 3), (128, 64, 8, 3)],
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget-s", type=float, default=520.0, help="skip remaining sections after this")
    args = ap.parse_args(argv)
    t0 = time.time()
    torch.manual_seed(0)
    res = dict(info=run_info(), order=[], bwd=[], tma=[])

    def save():
        res["seconds"] = time.time() - t0
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    ms = do_bench(lambda: a @ a, warmup=25, rep=100, return_mode="median")
    res["matmul_tflops"] = 2 * 8192 ** 3 / ms * 1e-9
    print(f"matmul {res['matmul_tflops']:.0f} TFLOP/s", flush=True)

    # (A) causal order: reversed (heaviest first) vs natural, forward and backward; FA2 beside them.
    for d in (64, 128):
        for n in (2048, 4096, 8192, 16384):
            q, k, v = inputs(n, d)
            b, _, h, _ = q.shape
            for mode in ("fwd", "bwd"):
                row = dict(d=d, n=n, mode=mode)
                for rev in (False, True, False, True):
                    launch_mod.REVERSE_CAUSAL = rev
                    t = time_seqlab(q, k, v, True, mode)
                    row.setdefault(f"rev={rev}", []).append(t)
                launch_mod.REVERSE_CAUSAL = True
                row["fa2_ms"] = time_fa2(q, k, v, True, mode)
                for rev in (False, True):
                    best = min(row[f"rev={rev}"])
                    row[f"ratio_rev={rev}"] = row["fa2_ms"] / best
                res["order"].append(row)
                print(f"A d{d} n{n} {mode}: natural {min(row['rev=False']):.3f} reversed {min(row['rev=True']):.3f} "
                      f"fa2 {row['fa2_ms']:.3f} -> {row['ratio_rev=False']:.2f}x / {row['ratio_rev=True']:.2f}x",
                      flush=True)
            save()

    # (C) TMA forward prototype vs the shipped forward (N = 8k, batch 2), correctness against the shipped kernel.
    for d in (64, 128):
        for causal in (False, True):
            if time.time() - t0 > args.budget_s:
                break
            q, k, v = inputs(8192, d, grad=False)
            b, n, h, _ = q.shape
            with torch.no_grad():
                ref = flash_attn_func(q, k, v, causal=causal)
                base = do_bench(lambda q=q, k=k, v=v, c=causal: flash_attn_func(q, k, v, causal=c), warmup=25, rep=100,
                                return_mode="median")
            row = dict(d=d, causal=causal, n=n, seqlab_ms=base, seqlab_tflops=tflops(b, n, h, d, causal, "fwd", base),
                       configs=[])
            for cfg in TMA_CONFIGS:
                try:
                    out = tma_forward(q, k, v, causal, *cfg)
                    err = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
                    t = do_bench(lambda q=q, k=k, v=v, c=causal, cfg=cfg: tma_forward(q, k, v, c, *cfg), warmup=25,
                                 rep=100, return_mode="median")
                    row["configs"].append(dict(cfg=cfg, ms=t, tflops=tflops(b, n, h, d, causal, "fwd", t),
                                               rel_err_vs_seqlab=err))
                except Exception as exc:  # out of shared memory, unsupported warp specialisation, ...
                    row["configs"].append(dict(cfg=cfg, error=f"{type(exc).__name__}: {str(exc)[:200]}"))
            ok = [c for c in row["configs"] if "ms" in c and c["rel_err_vs_seqlab"] < 2e-2]
            if ok:
                best = min(ok, key=lambda c: c["ms"])
                row["best"] = best
                print(f"C d{d} causal={causal}: seqlab {row['seqlab_tflops']:.0f} TFLOP/s, TMA best {best['cfg']} "
                      f"{best['tflops']:.0f} TFLOP/s (x{base / best['ms']:.2f}, err {best['rel_err_vs_seqlab']:.1e})",
                      flush=True)
            else:
                print(f"C d{d} causal={causal}: no valid TMA config: {row['configs'][:2]}", flush=True)
            res["tma"].append(row)
            save()

    # (B) backward tiles with more pipeline stages at 16k (batch 1), each kernel against the shipped entry.
    for d in (64, 128):
        for causal in (False, True):
            if time.time() - t0 > args.budget_s:
                break
            q, k, v = inputs(16384, d)
            b, n, h, _ = q.shape
            shipped = {kn: get_config(kn, d, torch.bfloat16, causal, n) for kn in ("dkdv", "dq")}
            base = time_seqlab(q, k, v, causal, "bwd")
            row = dict(d=d, causal=causal, n=n, shipped=shipped, shipped_ms=base, trials=[])
            for kn, cands in BWD_CANDIDATES.items():
                for c in cands:
                    set_override(kn, dict(BLOCK_M=c[0], BLOCK_N=c[1], num_warps=c[2], num_stages=c[3]))
                    try:
                        t = time_seqlab(q, k, v, causal, "bwd")
                        row["trials"].append(dict(kernel=kn, cfg=c, ms=t, speedup=base / t))
                    except Exception as exc:
                        row["trials"].append(dict(kernel=kn, cfg=c, error=str(exc)[:160]))
                    set_override(kn, None)
            good = [t for t in row["trials"] if "ms" in t]
            for kn in ("dkdv", "dq"):
                ks = [t for t in good if t["kernel"] == kn]
                if ks:
                    bt = min(ks, key=lambda t: t["ms"])
                    print(f"B d{d} causal={causal} {kn}: shipped {base:.3f} ms, best {bt['cfg']} {bt['ms']:.3f} ms "
                          f"(x{bt['speedup']:.3f})", flush=True)
            res["bwd"].append(row)
            save()
    save()
    print(f"done in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
