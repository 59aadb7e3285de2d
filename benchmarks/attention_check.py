"""GPU correctness grid + peak-memory scaling for seqlab FlashAttention (issue: FlashAttention core §4).

Judged like flash-attn's own tests: for the output and each gradient, seqlab's max abs error against
a float32 reference must be at most twice the error of a plain PyTorch computation in the input
dtype (bf16/fp16) against the same reference. Also records peak memory of forward+backward against
seqlen for seqlab and for PyTorch's math attention (which materialises the score matrix).

    PYTHONPATH=src python benchmarks/attention_check.py --out results/attention_check.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time

import torch

from seqlab.attention import _triton_fwd_tma as tma
from seqlab.attention import _validate as V
from seqlab.attention import flash_attn_func, flash_attn_varlen_func
from seqlab.attention._configs import _table, device_key, set_override
from seqlab.attention.reference import attention_ref
from seqlab.utils.runinfo import run_info


def _errs(out, grads, out_ref, grads_ref, out_pt, grads_pt):
    names = ("out", "dq", "dk", "dv")
    row = {}
    ok = True
    for n, a, r, p in zip(names, (out, *grads), (out_ref, *grads_ref), (out_pt, *grads_pt)):
        ours = (a.float() - r).abs().max().item()
        pt = (p.float() - r).abs().max().item()
        rel = ((a.float() - r).norm() / r.norm()).item()
        finite = bool(torch.isfinite(a).all())
        passed = finite and ours <= 2 * pt + 1e-5
        ok &= passed
        row[n] = {"max_err": ours, "pt_max_err": pt, "rel_err": rel, "pass": passed}
    row["pass"] = ok
    return row


def check_case(batch, seqlen_q, seqlen_k, nheads, nheads_k, d, dtype, causal=False, window=(-1, -1),
               alibi=False, dropout_p=0.0):
    dev = "cuda"
    q = torch.randn(batch, seqlen_q, nheads, d, device=dev, dtype=dtype, requires_grad=True)
    k = torch.randn(batch, seqlen_k, nheads_k, d, device=dev, dtype=dtype, requires_grad=True)
    v = torch.randn(batch, seqlen_k, nheads_k, d, device=dev, dtype=dtype, requires_grad=True)
    slopes = torch.rand(nheads, device=dev) * 0.5 if alibi else None
    g = torch.randn(batch, seqlen_q, nheads, d, device=dev, dtype=dtype)
    kw = dict(causal=causal, window_size=window, alibi_slopes=slopes)
    mask = None
    if dropout_p > 0:
        out, _, probs = flash_attn_func(q, k, v, dropout_p=dropout_p, return_attn_probs=True, **kw)
        mask = probs > 0
        del probs
    else:
        out = flash_attn_func(q, k, v, **kw)
    grads = torch.autograd.grad(out, (q, k, v), g)
    refs = {}
    for name, upcast in (("ref", True), ("pt", False)):
        qq, kk, vv = (x.detach().clone().requires_grad_() for x in (q, k, v))
        o = attention_ref(qq, kk, vv, dropout_p=dropout_p, dropout_mask=mask, upcast=upcast, **kw)
        gr = torch.autograd.grad(o, (qq, kk, vv), g)
        refs[name] = (o.float(), [x.float() for x in gr])
        del qq, kk, vv, o, gr
    row = _errs(out, grads, *refs["ref"], *refs["pt"])
    row["tma_forward"] = tma.usable(q, k, v, None, *V.check_window(window, causal), slopes, dropout_p, False, False)
    row.update(batch=batch, seqlen_q=seqlen_q, seqlen_k=seqlen_k, nheads=nheads, nheads_k=nheads_k, headdim=d,
               dtype=str(dtype).split(".")[-1], causal=causal, window=list(window), alibi=alibi,
               dropout_p=dropout_p)
    return row


def check_varlen(dtype, d=64, nheads=4):
    dev = "cuda"
    lens = [1, 17, 113, 257, 1000, 2048]
    cu = torch.tensor([0] + list(torch.tensor(lens).cumsum(0)), dtype=torch.int32, device=dev)
    total = sum(lens)
    q, k, v = (torch.randn(total, nheads, d, device=dev, dtype=dtype, requires_grad=True) for _ in range(3))
    out = flash_attn_varlen_func(q, k, v, cu, cu, max(lens), max(lens), causal=True)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), g)
    res = {}
    for name, upcast in (("ref", True), ("pt", False)):
        outs, gq, gk, gv = [], [], [], []
        for s, e in zip(cu[:-1].tolist(), cu[1:].tolist()):
            qq, kk, vv = (x.detach()[s:e][None].clone().requires_grad_() for x in (q, k, v))
            o = attention_ref(qq, kk, vv, causal=True, upcast=upcast)
            a, b, c = torch.autograd.grad(o, (qq, kk, vv), g[s:e][None])
            outs.append(o[0].float()), gq.append(a[0].float()), gk.append(b[0].float()), gv.append(c[0].float())
        res[name] = (torch.cat(outs), [torch.cat(gq), torch.cat(gk), torch.cat(gv)])
    row = _errs(out, grads, *res["ref"], *res["pt"])
    row.update(case="varlen", lens=lens, headdim=d, dtype=str(dtype).split(".")[-1], causal=True)
    return row


def peak_memory(impl, seqlen, batch=1, nheads=8, d=64, dtype=torch.bfloat16):
    torch.cuda.empty_cache()
    gc.collect()
    q, k, v = (torch.randn(batch, seqlen, nheads, d, device="cuda", dtype=dtype, requires_grad=True)
               for _ in range(3))
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    try:
        if impl == "seqlab":
            out = flash_attn_func(q, k, v, causal=True)
        else:
            from torch.nn.attention import SDPBackend, sdpa_kernel

            with sdpa_kernel(SDPBackend.MATH):
                out = torch.nn.functional.scaled_dot_product_attention(
                    q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True).transpose(1, 2)
        out.backward(torch.randn_like(out))
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        return {"impl": impl, "seqlen": seqlen, "peak_bytes": peak, "oom": False}
    except torch.OutOfMemoryError:
        return {"impl": impl, "seqlen": seqlen, "peak_bytes": None, "oom": True}
    finally:
        del q, k, v
        torch.cuda.empty_cache()


EXTRA = [
    dict(batch=2, seqlen_q=1000, seqlen_k=1000, nheads=8, nheads_k=2, d=128, dtype=torch.bfloat16, causal=True),
    dict(batch=2, seqlen_q=1000, seqlen_k=1000, nheads=8, nheads_k=1, d=64, dtype=torch.bfloat16),
    dict(batch=2, seqlen_q=2000, seqlen_k=2000, nheads=4, nheads_k=4, d=64, dtype=torch.bfloat16,
         window=(256, 0)),
    dict(batch=2, seqlen_q=1000, seqlen_k=1100, nheads=4, nheads_k=4, d=96, dtype=torch.bfloat16,
         window=(100, 50)),
    dict(batch=2, seqlen_q=1024, seqlen_k=1024, nheads=4, nheads_k=4, d=128, dtype=torch.bfloat16, alibi=True,
         causal=True),
    dict(batch=2, seqlen_q=1024, seqlen_k=1024, nheads=4, nheads_k=4, d=64, dtype=torch.float16,
         dropout_p=0.17),
    dict(batch=2, seqlen_q=777, seqlen_k=777, nheads=4, nheads_k=4, d=32, dtype=torch.bfloat16, causal=True),
    dict(batch=2, seqlen_q=512, seqlen_k=512, nheads=4, nheads_k=4, d=160, dtype=torch.float16),
]


def _items(args) -> list[dict]:
    """The correctness cases in their fixed order: the grid, the extra cases, every shipped tuned-table entry."""
    items = []
    seqlens = [(1, 1), (113, 113), (257, 1000), (1000, 257), (512, 512), (2048, 2048), (4096, 4096)]
    if not args.quick:
        seqlens += [(8192, 8192), (16384, 16384)]
    for dtype in (torch.bfloat16, torch.float16) if not args.tuned_only else ():
        for d in (64, 128) if args.tma_only else (64, 128, 256):
            for causal in (False, True):
                for sq, sk in seqlens:
                    nheads = max(1, min(8, (2**25) // (sq * sk)))  # keep the fp32 reference in memory
                    batch = 2 if sq * sk <= 4096 * 4096 else 1
                    items.append(dict(kind="grid", kw=dict(batch=batch, seqlen_q=sq, seqlen_k=sk, nheads=nheads,
                                                           nheads_k=nheads, d=d, dtype=dtype, causal=causal)))
    if args.tma_only:
        return items
    items += [dict(kind="extra", kw=kw) for kw in (EXTRA if not args.tuned_only else ())]
    # Every entry of the shipped tuned table, forced on one ragged shape (seqlen not a multiple of any tile),
    # so each tile config a user can get is checked, not only the ones the shapes above happen to select.
    # The TMA forward (on by default on Hopper) would take these shapes and bypass the forced pointer-kernel
    # config, so it is switched off for these; the grid above runs with it on.
    for key, cfg in sorted(_table(device_key()).items()):
        items.append(dict(kind="tuned", key=key, cfg=cfg))
    return items


def _run_item(item) -> dict:
    if item["kind"] != "tuned":
        row = check_case(**item["kw"])
        if item["kind"] == "grid":
            print(f"{row['dtype']} d={row['headdim']} causal={row['causal']} {row['seqlen_q']}x{row['seqlen_k']}: "
                  f"{'pass' if row['pass'] else 'FAIL'} out={row['out']['max_err']:.2e} "
                  f"(pt {row['out']['pt_max_err']:.2e})", flush=True)
        else:
            print(f"extra {item['kw']}: {'pass' if row['pass'] else 'FAIL'}", flush=True)
        return row
    key, cfg = item["key"], item["cfg"]
    kernel, hd, _, masked, _ = key.split("|")
    tma_env = os.environ.get("SEQLAB_ATTN_TMA")
    os.environ["SEQLAB_ATTN_TMA"] = "0"
    set_override(kernel, cfg)
    try:
        row = check_case(2, 1000, 1000, 4, 4, int(hd[1:]), torch.bfloat16, causal=masked == "masked")
    finally:
        set_override(kernel, None)
        if tma_env is None:
            os.environ.pop("SEQLAB_ATTN_TMA")
        else:
            os.environ["SEQLAB_ATTN_TMA"] = tma_env
    row["tuned_config"] = {"key": key, **cfg}
    print(f"tuned {key} {cfg}: {'pass' if row['pass'] else 'FAIL'}", flush=True)
    return row


def _run_parallel(args, items, jobs) -> list[dict]:
    """The cases split over ``jobs`` worker processes (case i to worker i % jobs): Triton compiles each kernel
    variant on the CPU, which is most of this script's time; the workers share the GPU (correctness only)."""
    import subprocess
    import tempfile

    tmp = tempfile.mkdtemp()
    base = [flag for flag, on in (("--quick", args.quick), ("--tuned-only", args.tuned_only),
                                  ("--tma-only", args.tma_only)) if on]
    procs = []
    for i in range(jobs):
        out = os.path.join(tmp, f"worker{i}.json")
        cmd = [sys.executable, os.path.abspath(__file__), *base, "--worker", f"{i}/{jobs}", "--worker-out", out]
        procs.append((subprocess.Popen(cmd), out))
    found = {}
    for proc, out in procs:
        proc.wait()
        if os.path.exists(out):
            with open(out) as f:
                found.update({int(k): v for k, v in json.load(f).items()})
    missing = [i for i in range(len(items)) if i not in found]
    if missing:  # a worker died: say so in the results rather than dropping the cases
        print(f"{len(missing)} cases missing from the workers: {missing[:10]}", flush=True)
        for i in missing:
            found[i] = {"item": str(items[i]), "pass": False, "error": "worker did not report"}
    return [found[i] for i in range(len(items))]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/attention_check.json")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tuned-only", action="store_true", help="only the shipped tuned-table entries")
    ap.add_argument("--tma-only", action="store_true",
                    help="only the grid cases the TMA kernels serve (head dims 64/128), then stop")
    ap.add_argument("--jobs", type=int, default=1,
                    help="worker processes for the case list (compilation is most of the time)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("attention_check needs a CUDA GPU", file=sys.stderr)
        return 2
    t0 = time.time()
    items = _items(args)
    if args.worker:
        i, n = (int(x) for x in args.worker.split("/"))
        done = {}
        for idx in range(i, len(items), n):
            done[idx] = _run_item(items[idx])
            with open(args.worker_out, "w") as f:
                json.dump(done, f)
        return 0
    rows = []

    def dump(partial=True):
        with open(args.out, "w") as f:
            json.dump({"info": run_info(), "partial": partial, "n_cases": len(rows),
                       "n_pass": sum(r["pass"] for r in rows), "cases": rows, "jobs": args.jobs,
                       "seconds": time.time() - t0}, f, indent=1)

    if args.jobs > 1:
        rows += _run_parallel(args, items, args.jobs)
        dump()
    else:
        for item in items:
            rows.append(_run_item(item))
            dump()
    if args.tma_only:
        dump(partial=False)
        print(f"{sum(r['pass'] for r in rows)}/{len(rows)} cases pass "
              f"({sum(bool(r.get('tma_forward')) for r in rows)} on the TMA path)")
        return 0 if all(r["pass"] for r in rows) else 1
    if args.tuned_only:
        dump(partial=False)
        print(f"{sum(r['pass'] for r in rows)}/{len(rows)} tuned entries pass")
        return 0 if all(r["pass"] for r in rows) else 1
    for dtype in (torch.bfloat16, torch.float16):
        rows.append(check_varlen(dtype))
        print(f"varlen {dtype}: {'pass' if rows[-1]['pass'] else 'FAIL'}", flush=True)
    # fp32 inputs: relative error against float64
    q, k, v = (torch.randn(2, 1000, 4, 64, device="cuda", requires_grad=True) for _ in range(3))
    o = flash_attn_func(q, k, v, causal=True)
    r = attention_ref(q.double(), k.double(), v.double(), causal=True)
    fp32_rel = ((o.double() - r).norm() / r.norm()).item()
    print(f"fp32 rel err vs float64: {fp32_rel:.2e}", flush=True)

    mem = []
    for seqlen in [1024, 2048, 4096, 8192, 16384, 32768, 65536]:
        for impl in ("seqlab", "math"):
            if impl == "math" and seqlen > 32768:
                mem.append({"impl": impl, "seqlen": seqlen, "peak_bytes": None, "oom": True, "skipped": True})
                continue
            mem.append(peak_memory(impl, seqlen))
            m = mem[-1]
            print(f"mem {impl} {seqlen}: {m['peak_bytes'] / 2**20 if m['peak_bytes'] else 'OOM'} MiB", flush=True)
    seq = [m for m in mem if m["impl"] == "seqlab" and m["peak_bytes"]]
    growth = [b["peak_bytes"] / a["peak_bytes"] for a, b in zip(seq, seq[1:])]
    result = {
        "info": run_info(),
        "criterion": "max|ours - ref_fp32| <= 2 * max|pytorch_in_dtype - ref_fp32| + 1e-5 for out, dq, dk, dv",
        "n_cases": len(rows),
        "n_pass": sum(r["pass"] for r in rows),
        "cases": rows,
        "fp32_rel_err_vs_float64": fp32_rel,
        "memory": {"batch": 1, "nheads": 8, "headdim": 64, "dtype": "bfloat16", "causal": True, "rows": mem,
                   "seqlab_growth_per_doubling": growth,
                   "linear": all(g < 2.2 for g in growth)},
        "seconds": time.time() - t0,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"\n{result['n_pass']}/{result['n_cases']} cases pass; memory growth per doubling "
          f"{[round(g, 2) for g in growth]}; {result['seconds']:.0f}s")
    return 0 if result["n_pass"] == result["n_cases"] else 1


if __name__ == "__main__":
    raise SystemExit(main())


