"""v5 probe, one GPU call: (A) TMA forward variants against the library's TMA forward (scale folded into the
exp2 argument as one FMA, tile/warps/stages, a globally heaviest-first causal block order), and (B) tiles for
the TMA backward where the library keeps the pointer backward (causal head dim 128; causal seqlen 512).

Everything is timed side by side in this one process (``do_bench`` medians, each variant twice interleaved,
the faster kept; random bf16 inputs; the FlashAttention protocol's shapes: hidden 2048, batch x seqlen = 16k
tokens) and written to ``--out``; every forward variant is also checked against a float64 reference on a
ragged shape. The tables printed last are what the notes quote.

    PYTHONPATH=src python benchmarks/attention_probe_v5.py --out $OUT/attention_probe_v5.json --budget 240

Under ``TRITON_INTERPRET=1`` (no GPU) ``--selftest`` runs only the correctness part on small shapes.
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

from seqlab.attention import _triton_bwd_tma, flash_attn_func
from seqlab.attention import _triton_kernels as kern
from seqlab.attention._fast_launch import launch
from seqlab.attention._triton_fwd_tma import _desc, _key_range, _load_pair
from seqlab.attention.reference import attention_ref
from seqlab.utils.intmath import cdiv

INTERP = os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _update_folded(s, m_i, l_i, acc, v, qk_scale, MASKED: tl.constexpr):
    """Online-softmax step on raw scores ``s``; the running max is kept in scaled log2 units, so the scale
    enters once per row (the max) and once per element as part of the FMA s * scale - m."""
    m_new = tl.maximum(m_i, tl.max(s, 1) * qk_scale)
    if MASKED:
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
def _fwd_v5(
    desc_q, desc_k, desc_v, desc_o, LSE,
    stride_lb, stride_lh, nheads, group, seqlen_q, seqlen_k, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
    MASK_N: tl.constexpr, UPCAST: tl.constexpr, GLOBAL_ORDER: tl.constexpr,
):
    if GLOBAL_ORDER:  # grid (batch * heads, query blocks): every head's heaviest block before any lighter one
        bh = tl.program_id(0)
        pid_m = tl.num_programs(1) - 1 - tl.program_id(1)
        b = bh // nheads
        h = bh % nheads
    else:
        pid_m = tl.program_id(0)
        if CAUSAL:
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
        m_i, l_i, acc = _update_folded(s, m_i, l_i, acc, v, qk_scale, False)
    offs_n0 = tl.arange(0, BLOCK_N)
    for start_n in range(full_hi, hi, BLOCK_N):
        k, v = _load_pair(desc_k, desc_v, b, start_n, col, BLOCK_N, HEAD_DIM, UPCAST)
        s = tl.dot(q, tl.trans(k))
        offs_n = start_n + offs_n0
        keep = (offs_n < seqlen_k)[None, :]
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None] + diag)
        s = tl.where(keep, s, float("-inf"))
        m_i, l_i, acc = _update_folded(s, m_i, l_i, acc, v, qk_scale, True)
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    out = acc / l_safe[:, None]
    desc_o.store([b, m0, h * HEAD_DIM], out.to(desc_o.dtype).reshape(1, BLOCK_M, HEAD_DIM))
    lse = tl.where(l_i == 0.0, float("-inf"), (m_i + tl.math.log2(l_safe)) * 0.6931471805599453)
    tl.store(LSE + b.to(tl.int64) * stride_lb + h * stride_lh + offs_m, lse, mask=offs_m < seqlen_q)


def fwd_v5(q, k, v, scale, causal, cfg, global_order=False):
    batch, seqlen_q, nheads, d = q.shape
    seqlen_k, nheads_k = k.shape[1], k.shape[2]
    out = torch.empty_like(q)
    lse = torch.empty(batch, nheads, seqlen_q, dtype=torch.float32, device=q.device)
    bm, bn, warps, stages = cfg
    nm = cdiv(seqlen_q, bm)
    grid = (batch * nheads, nm, 1) if global_order else (nm, batch, nheads)
    args = (_desc(q, bm), _desc(k, bn), _desc(v, bn), _desc(out, bm), lse, lse.stride(0), lse.stride(1),
            nheads, nheads // nheads_k, seqlen_q, seqlen_k, scale * kern.LOG2E)
    consts = dict(HEAD_DIM=d, BLOCK_M=bm, BLOCK_N=bn, CAUSAL=causal, MASK_N=seqlen_k % bn != 0, UPCAST=INTERP,
                  GLOBAL_ORDER=global_order, num_warps=warps, num_stages=stages)
    launch(_fwd_v5, grid, args, consts, -1 if INTERP else q.get_device())
    return out, lse


def rel_err(a, r):
    return ((a.double() - r).norm() / r.norm()).item()


def check_fwd(d, causal, cfg, glob, shape=(2, 1000, 4), dtype=torch.bfloat16):
    b, n, h = shape
    dev = "cpu" if INTERP else "cuda"
    q, k, v = (torch.randn(b, n, h, d, device=dev, dtype=dtype) for _ in range(3))
    out, lse = fwd_v5(q, k, v, d ** -0.5, causal, cfg, glob)
    ref = attention_ref(q.double(), k.double(), v.double(), causal=causal)
    s = torch.einsum("bqhd,bkhd->bhqk", q.double(), k.double()) * d ** -0.5
    if causal:
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool, device=dev).triu(1), float("-inf"))
    lse_ref = torch.logsumexp(s, -1)
    return rel_err(out, ref), (lse.double() - lse_ref).abs().max().item()


# ---------------------------------------------------------------------------------------------- timing
def bench(fn, grads=None):
    from triton.testing import do_bench

    return do_bench(fn, warmup=25, rep=100, grad_to_none=grads, return_mode="median")


def shape(n, d):
    return max(1, 16384 // n), n, 2048 // d, d


def tflops(b, n, h, d, causal, mode, ms):
    f = 4 * b * h * n * n * d * (0.5 if causal else 1.0) * {"fwd": 1.0, "bwd": 2.5}[mode]
    return f / ms * 1e-9


def fa2(q, k, v, causal, mode):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    qt, kt, vt = (t.detach().transpose(1, 2).contiguous().requires_grad_(mode == "bwd") for t in (q, k, v))

    def f():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)

    if mode == "fwd":
        with torch.no_grad():
            return bench(f)
    out = f()
    g = torch.randn_like(out)
    return bench(lambda: out.backward(g, retain_graph=True), [qt, kt, vt])


FWD_CASES = {  # (d, causal): [(name, cfg, global_order)]; "lib" = the library's TMA forward as shipped
    (64, True): [("lib", None, False), ("fold 128x64/4/3", (128, 64, 4, 3), False),
                 ("fold 128x64/4/4", (128, 64, 4, 4), False), ("fold 128x64/4/2", (128, 64, 4, 2), False),
                 ("fold 128x64/8/3", (128, 64, 8, 3), False), ("fold 128x128/8/3", (128, 128, 8, 3), False),
                 ("fold 128x128/8/2", (128, 128, 8, 2), False), ("fold 64x64/4/3", (64, 64, 4, 3), False),
                 ("fold 128x32/4/3", (128, 32, 4, 3), False), ("fold 64x128/4/3", (64, 128, 4, 3), False),
                 ("fold+global 128x64/4/3", (128, 64, 4, 3), True), ("fold+global 128x64/8/3", (128, 64, 8, 3), True)],
    (128, True): [("lib", None, False), ("fold 128x128/8/3", (128, 128, 8, 3), False),
                  ("fold 128x64/8/3", (128, 64, 8, 3), False), ("fold+global 128x128/8/3", (128, 128, 8, 3), True)],
    (64, False): [("lib", None, False), ("fold 128x64/4/4", (128, 64, 4, 4), False),
                  ("fold 128x64/4/3", (128, 64, 4, 3), False), ("fold 128x128/8/3", (128, 128, 8, 3), False)],
    (128, False): [("lib", None, False), ("fold 128x128/8/3", (128, 128, 8, 3), False)],
}

BWD_CASES = {  # (d, seqlens): dq candidates, dkdv candidates (BLOCK_M, BLOCK_N, warps, stages), causal only
    (128, (512, 1024, 2048, 4096, 8192, 16384)): (
        [(128, 64, 8, 3), (128, 64, 8, 2), (64, 64, 4, 3), (128, 32, 4, 3), (64, 32, 4, 3)],
        [(64, 128, 8, 3), (64, 128, 8, 2), (32, 128, 8, 3), (32, 64, 4, 3), (64, 64, 4, 3), (32, 128, 4, 3)]),
    (64, (512, 1024)): (
        [(64, 32, 4, 3), (128, 32, 4, 3), (64, 64, 4, 3), (128, 64, 4, 3)],
        [(32, 64, 4, 3), (64, 64, 4, 3), (32, 128, 4, 3), (64, 128, 8, 3)]),
}


def dump(path, payload):
    if path:
        with open(path, "w") as f:
            json.dump(payload, f, indent=1)


def probe_fwd(rows, deadline, save):
    for (d, causal), variants in FWD_CASES.items():
        for n in (512, 1024, 2048, 4096, 8192, 16384):
            if time.time() > deadline:
                print(f"fwd d{d} causal={causal} N={n}: skipped (budget)", flush=True)
                continue
            b, _, h, _ = shape(n, d)
            q, k, v = (torch.randn(b, n, h, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
            ms = {}
            fns = {}
            for name, cfg, glob in variants:
                if cfg is None:
                    fns[name] = lambda q=q, k=k, v=v, c=causal: flash_attn_func(q, k, v, causal=c)  # noqa: E731
                else:
                    fns[name] = (lambda q=q, k=k, v=v, c=causal, cfg=cfg, glob=glob:
                                 fwd_v5(q, k, v, q.shape[-1] ** -0.5, c, cfg, glob))
            with torch.no_grad():
                for _rep in range(2):
                    for name, fn in fns.items():
                        ms[name] = min(bench(fn), ms.get(name, float("inf")))
            ms["fa2"] = fa2(q, k, v, causal, "fwd")
            row = dict(pass_="fwd", d=d, causal=causal, n=n, ms=ms,
                       tflops={kk: tflops(b, n, h, d, causal, "fwd", vv) for kk, vv in ms.items()})
            rows.append(row)
            save()
            best = min((kk for kk in ms if kk != "fa2"), key=ms.get)
            print(f"fwd d{d} causal={causal!s:5} N={n:5}: lib/FA2 {ms['fa2'] / ms['lib']:.3f}; best {best} "
                  f"{ms['fa2'] / ms[best]:.3f}; " + " ".join(f"[{kk}] {ms['lib'] / vv:.3f}" for kk, vv in ms.items()
                                                           if kk not in ("lib", "fa2")), flush=True)


def probe_bwd(rows, deadline, save):
    real_tiles, real_pref = _triton_bwd_tma._tiles, _triton_bwd_tma.preferred
    force = {}

    def tiles(kernel, q, causal, seqlen, interpreting):
        if kernel in force:
            bm, bn, w, s = force[kernel]
            return bm, bn, dict(num_warps=w, num_stages=s)
        return real_tiles(kernel, q, causal, seqlen, interpreting)

    try:
        _triton_bwd_tma._tiles = tiles
        for (d, seqlens), (dq_c, kv_c) in BWD_CASES.items():
            for n in seqlens:
                if time.time() > deadline:
                    print(f"bwd d{d} N={n}: skipped (budget)", flush=True)
                    continue
                b, _, h, _ = shape(n, d)
                q, k, v = (torch.randn(b, n, h, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                           for _ in range(3))
                out = flash_attn_func(q, k, v, causal=True)
                g = torch.randn_like(out)
                variants = [("pointer", None, None), ("tma table tiles", None, None)]
                variants += [(f"tma dq {c}", "dq", c) for c in dq_c] + [(f"tma dkdv {c}", "dkdv", c) for c in kv_c]
                ms = {}
                for _rep in range(2):
                    for name, kernel, cfg in variants:
                        force.clear()
                        if kernel is not None:
                            force[kernel] = cfg
                        _triton_bwd_tma.preferred = (lambda *a: False) if name == "pointer" else (lambda *a: True)
                        t = bench(lambda out=out, g=g: out.backward(g, retain_graph=True), [q, k, v])
                        ms[name] = min(t, ms.get(name, float("inf")))
                force.clear()
                _triton_bwd_tma.preferred = real_pref
                ms["fa2"] = fa2(q, k, v, True, "bwd")
                # best combination (the two kernels run one after the other: their gains add)
                base = ms["tma table tiles"]
                best_dq = min(dq_c, key=lambda c: ms[f"tma dq {c}"])
                best_kv = min(kv_c, key=lambda c: ms[f"tma dkdv {c}"])
                est = base + (ms[f"tma dq {best_dq}"] - base) + (ms[f"tma dkdv {best_kv}"] - base)
                row = dict(pass_="bwd", d=d, causal=True, n=n, ms=ms, best_dq=best_dq, best_dkdv=best_kv,
                           est_best_ms=est)
                if time.time() < deadline:  # measure the combination
                    force.update(dq=best_dq, dkdv=best_kv)
                    _triton_bwd_tma.preferred = lambda *a: True
                    row["best_combo_ms"] = min(bench(lambda out=out, g=g: out.backward(g, retain_graph=True), [q, k, v])
                                               for _ in range(2))
                    force.clear()
                    _triton_bwd_tma.preferred = real_pref
                rows.append(row)
                save()
                combo = row.get("best_combo_ms", est)
                print(f"bwd d{d} causal N={n:5}: pointer/FA2 {ms['fa2'] / ms['pointer']:.3f}, tma-table/FA2 "
                      f"{ms['fa2'] / base:.3f}, best dq {best_dq} dkdv {best_kv} -> combo/FA2 {ms['fa2'] / combo:.3f} "
                      f"(combo/pointer {ms['pointer'] / combo:.3f})", flush=True)
    finally:
        _triton_bwd_tma._tiles, _triton_bwd_tma.preferred = real_tiles, real_pref


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--budget", type=float, default=300.0, help="seconds; later cases are skipped past it")
    ap.add_argument("--selftest", action="store_true", help="correctness of the variants only (small shapes)")
    args = ap.parse_args(argv)
    t0 = time.time()
    torch.manual_seed(0)
    checks = []
    seen = set()
    shape_c = (1, 77, 2) if INTERP else (2, 1000, 4)
    for (d, causal), variants in FWD_CASES.items():
        for _name, cfg, glob in variants:
            if cfg is None:
                continue
            key = (d, causal, (32, 32, 4, 1) if INTERP else cfg, glob)
            if key in seen:
                continue
            seen.add(key)
            err, lse_err = check_fwd(d, causal, key[2], glob, shape_c)
            checks.append(dict(d=d, causal=causal, cfg=list(key[2]), global_order=glob, rel_err=err, lse_err=lse_err,
                               pass_=err < 1.5e-2 and lse_err < 1e-2))
            print(f"check d{d} causal={causal} {key[2]} global={glob}: rel err {err:.2e} lse {lse_err:.1e}",
                  flush=True)
    if args.selftest or INTERP:
        return 0 if all(c["pass_"] for c in checks) else 1
    from seqlab.utils.runinfo import run_info

    rows = []
    info = run_info()
    deadline = t0 + args.budget

    def save():
        dump(args.out, dict(info=info, checks=checks, rows=rows, seconds=time.time() - t0))

    probe_fwd(rows, deadline, save)
    probe_bwd(rows, deadline, save)
    save()
    print(f"probe done in {time.time() - t0:.0f}s; checks {sum(c['pass_'] for c in checks)}/{len(checks)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
