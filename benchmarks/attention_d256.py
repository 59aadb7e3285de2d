"""Head dim 256 on one GPU: the wide-head kernels of ``seqlab.attention._triton_wide`` against the standard
kernels and PyTorch SDPA's FlashAttention-2 backend, with float64-reference checks, in one process.

Phases (JSON written under --out after each):
  1. compile + check (worker processes, in parallel): every candidate tile config of the wide kernels runs
     fwd+bwd on the protocol's signature (N=512 stands in for all lengths: same specialisation) and on a
     ragged causal GQA case, against a float64 reference; the standard kernels are compiled likewise.
  2. sweep (main process): kernel-level times of each candidate at the protocol's shapes (bf16, hidden
     2048 -> 8 heads, batch x seqlen = 16k tokens), seqlen 512..16k, causal and not; the fastest candidate
     that passed its check is kept per (kernel, causal, seqlen bucket).
  3. checks of the wired path (workers) with the chosen table: ragged lengths, causal, GQA/MQA, window +
     ALiBi, dropout (mask from the debug path), varlen, fp16, head dim 192.
  4. end to end (main process), like ``seqlab.attention.bench``: seqlab with the wide kernels and the
     chosen table, seqlab with the standard kernels (``_triton_wide.ENABLED = False``), SDPA-FA2;
     ``triton.testing.do_bench`` medians (warm-up 25 ms, rep 100 ms), random inputs.

    PYTHONPATH=src python benchmarks/attention_d256.py --out $OUT/attention_d256.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
import traceback

import torch

D, H, TOKENS = 256, 8, 16384
SEQLENS = (512, 1024, 2048, 4096, 8192, 16384)
# D256_DRYRUN=1 (with TRITON_INTERPRET=1): the same phases on the CPU through the interpreter, tiny sizes.
DRY = os.environ.get("D256_DRYRUN") == "1"
DEV = "cpu" if DRY else "cuda"
if DRY:
    H, TOKENS, SEQLENS = 2, 128, (64, 128)
# (BLOCK_M, BLOCK_N, num_warps, num_stages); for wide_dkdv BLOCK_N is the key tile of a program and
# BLOCK_M the query tile of one step.
CANDS = {  # run 1 (results/attention_d256_run1.json) tried 7/6/7 candidates; these are its winners, neighbours
    # and 16-warp variants (4 warpgroups: a quarter of the accumulator each)
    "wide_fwd": [(128, 64, 8, 2), (128, 32, 8, 3), (128, 32, 8, 4), (64, 32, 4, 2), (128, 64, 16, 2),
                 (128, 32, 16, 3)],
    "wide_dq": [(128, 64, 8, 1), (128, 32, 8, 2), (128, 32, 8, 3), (128, 64, 16, 1), (128, 32, 16, 2)],
    "wide_dkdv": [(64, 128, 8, 1), (32, 128, 8, 2), (32, 128, 8, 3), (64, 128, 16, 1), (32, 128, 16, 2)],
}
DEFAULT = {"wide_fwd": (128, 64, 8, 2), "wide_dq": (128, 64, 8, 1), "wide_dkdv": (64, 128, 8, 1)}


def _cfg(t):
    return dict(BLOCK_M=t[0], BLOCK_N=t[1], num_warps=t[2], num_stages=t[3])


def _rel(a, r):
    a, r = a.detach().double(), r.detach()
    if not bool(torch.isfinite(a).all()):
        return float("nan")
    return float((a - r).norm() / r.norm())


def check_case(b, sq, sk, h, hk, d, dtype=torch.bfloat16, causal=False, window=(-1, -1), alibi=False,
               dropout_p=0.0, varlen=None, seed=0):
    """Wired path (flash_attn_func / varlen) against float64 attention_ref; returns rel errors."""
    from seqlab.attention import flash_attn_func, flash_attn_varlen_func
    from seqlab.attention.reference import attention_ref

    torch.manual_seed(seed)
    dev = DEV
    q = torch.randn(b, sq, h, d, device=dev, dtype=dtype, requires_grad=True)
    k = torch.randn(b, sk, hk, d, device=dev, dtype=dtype, requires_grad=True)
    v = torch.randn(b, sk, hk, d, device=dev, dtype=dtype, requires_grad=True)
    g = torch.randn(b, sq, h, d, device=dev, dtype=dtype)
    slopes = torch.rand(h, device=dev) * 0.3 if alibi else None
    kw = dict(causal=causal, window_size=window, alibi_slopes=slopes)
    if varlen is not None:  # lengths per sequence, packed; b must be 1 and sq == sk == sum(varlen)
        cu = torch.tensor([0] + list(torch.tensor(varlen).cumsum(0)), device=dev, dtype=torch.int32)
        out = flash_attn_varlen_func(q[0], k[0], v[0], cu, cu, max(varlen), max(varlen), **kw)[None]
        grads = torch.autograd.grad(out, (q, k, v), g)
        errs = []
        parts = []
        for i in range(len(varlen)):
            s = slice(int(cu[i]), int(cu[i + 1]))
            qd, kd, vd = (x.detach()[:, s].double().requires_grad_() for x in (q, k, v))
            ref = attention_ref(qd, kd, vd, **kw)
            parts.append((ref, torch.autograd.grad(ref, (qd, kd, vd), g[:, s].double())))
        ref_out = torch.cat([p[0] for p in parts], 1)
        ref_grads = [torch.cat([p[1][j] for p in parts], 1) for j in range(3)]
        errs = [_rel(out, ref_out)] + [_rel(a, r) for a, r in zip(grads, ref_grads)]
        return errs
    mask = None
    if dropout_p > 0:
        torch.manual_seed(seed + 1)
        _, _, probs = flash_attn_func(q, k, v, dropout_p=dropout_p, return_attn_probs=True, **kw)  # standard path
        mask = probs > 0
        del probs
        torch.manual_seed(seed + 1)  # same Philox seed: the wide path draws the same mask
    out = flash_attn_func(q, k, v, dropout_p=dropout_p, **kw)
    grads = torch.autograd.grad(out, (q, k, v), g)
    qd, kd, vd = (x.detach().double().requires_grad_() for x in (q, k, v))
    ref = attention_ref(qd, kd, vd, dropout_p=dropout_p, dropout_mask=mask, **kw) if mask is not None \
        else attention_ref(qd, kd, vd, **kw)
    ref_grads = torch.autograd.grad(ref, (qd, kd, vd), g.double())
    return [_rel(out, ref)] + [_rel(a, r) for a, r in zip(grads, ref_grads)]


FEATURE_CASES = {
    "ragged_1000_causal": dict(b=2, sq=1000, sk=1000, h=8, hk=8, d=256, causal=True),
    "ragged_1000_full": dict(b=2, sq=1000, sk=1000, h=8, hk=8, d=256),
    "gqa_777x1029_causal": dict(b=2, sq=777, sk=1029, h=8, hk=2, d=256, causal=True),
    "mqa_d192_window_alibi": dict(b=1, sq=513, sk=513, h=4, hk=1, d=192, window=(100, 20), alibi=True),
    "dropout_600_causal": dict(b=1, sq=600, sk=600, h=4, hk=4, d=256, causal=True, dropout_p=0.2),
    "varlen_causal_gqa": dict(b=1, sq=1000, sk=1000, h=8, hk=2, d=256, causal=True, varlen=[300, 1, 699]),
    "fp16_2049_causal": dict(b=1, sq=2049, sk=2049, h=8, hk=8, d=256, causal=True, dtype=torch.float16),
    "long_4096_causal": dict(b=1, sq=4096, sk=4096, h=8, hk=8, d=256, causal=True),
}

if DRY:
    CANDS = {k: v[:2] for k, v in CANDS.items()}
    FEATURE_CASES = {
        "dropout_causal": dict(b=1, sq=40, sk=40, h=2, hk=2, d=256, causal=True, dropout_p=0.2, dtype=torch.float32),
        "varlen_causal_gqa": dict(b=1, sq=50, sk=50, h=2, hk=1, d=256, causal=True, varlen=[20, 1, 29]),
        "mqa_d192_window_alibi": dict(b=1, sq=33, sk=41, h=2, hk=1, d=192, window=(10, 2), alibi=True),
    }


def _resources():
    """Registers, spills and shared memory of the kernels this process compiled (from the direct-launch cache)."""
    from seqlab.attention import _fast_launch, _triton_kernels, _triton_wide

    names = {id(getattr(m, n)): n for m in (_triton_wide, _triton_kernels) for n in dir(m)
             if n.startswith(("_wide_", "_attn_"))}
    out = []
    for (parts, consts), (ck, _) in list(_fast_launch._cache.items()):
        c = dict(consts)
        out.append(dict(kernel=names.get(parts[0]), **{k: c.get(k) for k in (
            "BLOCK_M", "BLOCK_N", "num_warps", "num_stages", "HAS_RIGHT", "MASK_N", "PART")},
            regs=getattr(ck, "n_regs", None), spills=getattr(ck, "n_spills", None),
            shared=getattr(getattr(ck, "metadata", None), "shared", None)))
    return out


def _worker(spec):
    """One compile/check job in a worker process."""
    try:
        from seqlab.attention import _configs, _triton_wide

        t0 = time.time()
        kind = spec["kind"]
        if kind == "cand":
            _configs.set_override(spec["kernel"], _cfg(spec["cfg"]))
            errs = {
                "proto_full": check_case(1, SEQLENS[0], SEQLENS[0], H, H, D),
                "proto_causal": check_case(1, SEQLENS[0], SEQLENS[0], H, H, D, causal=True),
                "ragged_gqa_causal": check_case(1, 333 if not DRY else 45, 333 if not DRY else 45, H, 2, D,
                                                causal=True, seed=1),
            }
        elif kind == "old":
            _triton_wide.ENABLED = False
            from seqlab.attention import flash_attn_func

            for n in SEQLENS:
                q, k, v = (torch.randn(1, n, H, D, device=DEV, dtype=torch.bfloat16, requires_grad=True)
                           for _ in range(3))
                flash_attn_func(q, k, v, causal=spec["causal"]).sum().backward()
            errs = {}
        else:  # feature check of the wired path with the chosen table
            _triton_wide.set_tuned(spec["table"])
            errs = {spec["name"]: check_case(**FEATURE_CASES[spec["name"]])}
        return dict(spec, errs=errs, seconds=time.time() - t0, resources=_resources())
    except Exception as exc:  # noqa: BLE001 - report and go on
        return dict(spec, error=f"{type(exc).__name__}: {str(exc)[:300]}", tb=traceback.format_exc()[-1500:])


def _passed(errs, tol=2e-2):
    return all(all(e == e and e < tol for e in v) for v in errs.values())


def _bench(fn, warmup=10, rep=40):
    from triton.testing import do_bench

    if DRY:
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3

    return do_bench(fn, warmup=warmup, rep=rep, return_mode="median")


def _sweep_one(n, causal, ok_cands, rows):
    from seqlab.attention import _triton_launch, _triton_wide

    scale = D ** -0.5
    b = TOKENS // n
    wr = 0 if causal else -1
    q, k, v, g = (torch.randn(b, n, H, D, device=DEV, dtype=torch.bfloat16) for _ in range(4))
    base = dict(seqlen=n, causal=causal)

    def add(kernel, cfg, fn, **extra):
        try:
            ms = _bench(fn)
        except Exception as exc:  # noqa: BLE001
            rows.append(dict(base, kernel=kernel, cfg=cfg, ms=None, error=str(exc)[:200], **extra))
            return
        rows.append(dict(base, kernel=kernel, cfg=cfg, ms=ms, **extra))

    args = (q, k, v, None, None, n, n, scale, -1, wr, None, 0.0, None)
    fwd, bwd = _triton_wide.wide_fwd, _triton_wide.wide_bwd
    for c in ok_cands["wide_fwd"]:
        add("wide_fwd", c, lambda c=c: fwd(*args, cfg=_cfg(c), reverse=causal))
    if causal:
        add("wide_fwd", DEFAULT["wide_fwd"], lambda: fwd(*args, cfg=_cfg(DEFAULT["wide_fwd"]), reverse=False),
            reverse=False)
    _triton_wide.ENABLED = False
    add("std_fwd", None, lambda: _triton_launch.triton_fwd(*args, False))
    out, lse, _ = _triton_launch.triton_fwd(*args, False)
    bargs = (g, q, k, v, out, lse, None, None, n, n, scale, -1, wr, None, 0.0, None)
    add("std_bwd", None, lambda: _triton_launch.triton_bwd(*bargs))
    _triton_wide.ENABLED = True
    dq0, kv0 = _cfg(DEFAULT["wide_dq"]), _cfg(DEFAULT["wide_dkdv"])
    for c in ok_cands["wide_dkdv"]:
        add("wide_dkdv", c, lambda c=c: bwd(*bargs, cfg_q=dq0, cfg_kv=_cfg(c), reverse=causal))
    add("wide_dkdv", DEFAULT["wide_dkdv"],
        lambda: bwd(*bargs, cfg_q=dq0, cfg_kv=kv0, reverse=causal, fused_dkdv=False), fused=False)
    for c in ok_cands["wide_dq"]:
        add("wide_dq", c, lambda c=c: bwd(*bargs, cfg_q=_cfg(c), cfg_kv=kv0, reverse=causal))
    if causal:
        add("wide_dq", DEFAULT["wide_dq"], lambda: bwd(*bargs, cfg_q=dq0, cfg_kv=kv0, reverse=False), reverse=False)


def sweep(ok_cands, log):
    """Kernel-level times (ms) at the protocol's shapes; returns rows."""
    rows = []
    for n in SEQLENS:
        for causal in (False, True):
            _sweep_one(n, causal, ok_cands, rows)
            if not DRY:
                torch.cuda.empty_cache()
            done = [r for r in rows if r["seqlen"] == n and r["causal"] == causal]
            best = {}
            for r in done:
                if r.get("ms") and (r["kernel"] not in best or r["ms"] < best[r["kernel"]][0]):
                    best[r["kernel"]] = (r["ms"], r["cfg"])
            log(f"sweep n={n} causal={causal}: " + ", ".join(f"{kk} {vv[0]:.3f}ms {vv[1]}" for kk, vv in
                                                             sorted(best.items())))
    return rows


def choose(rows):
    """Fastest candidate per (kernel, causal, seqlen) among the default-order, fused rows."""
    table = {}
    for kernel in CANDS:
        for n in SEQLENS:
            for causal in (False, True):
                cands = [r for r in rows if r["kernel"] == kernel and r["seqlen"] == n and r["causal"] == causal
                         and r.get("ms") and r.get("reverse", True) and r.get("fused", True)]
                if cands:
                    best = min(cands, key=lambda r: r["ms"])
                    table[f"{kernel}|{'masked' if causal else 'full'}|n{n}"] = _cfg(best["cfg"])
    return table


def end_to_end(log, seqlens, save_rows, impls=("seqlab", "seqlab_std", "sdpa_flash")):
    from seqlab.attention import _triton_wide
    from seqlab.attention.bench import bench_case

    rows = []
    for n in seqlens:
        for causal in (False, True):
            for impl in impls:
                _triton_wide.ENABLED = impl != "seqlab_std"
                r = bench_case("seqlab" if impl.startswith("seqlab") else impl, TOKENS // n, n, H, D, causal)
                for x in r:
                    x["impl"] = impl
                rows += r
            _triton_wide.ENABLED = True
            cell = {(x["impl"], x["mode"]): x.get("tflops") for x in rows if x["seqlen"] == n and
                    x["causal"] == causal}
            msg = []
            for mode in ("fwd", "bwd", "fwd_bwd"):
                fa = cell.get(("sdpa_flash", mode))
                new, old = cell.get(("seqlab", mode)), cell.get(("seqlab_std", mode))
                if fa and new and old:
                    msg.append(f"{mode} new {new:.0f} ({new / fa:.2f}x) std {old:.0f} ({old / fa:.2f}x) FA2 {fa:.0f}")
            log(f"e2e n={n} causal={causal}: " + " | ".join(msg))
            save_rows(rows)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--workers", type=int, default=12)
    ap.add_argument("--skip-sweep", action="store_true", help="use the shipped _TUNED table, skip phases 1-2")
    ap.add_argument("--e2e-seqlens", type=int, nargs="*", default=list(SEQLENS))
    ap.add_argument("--repeat-short", action="store_true", help="time the 512 / 1k cells a second time")
    args = ap.parse_args(argv)
    from seqlab.utils.runinfo import run_info

    t0 = time.time()
    result = {"info": run_info(), "protocol": {"headdim": D, "nheads": H, "tokens": TOKENS, "dtype": "bfloat16"},
              "candidates": {k: [list(c) for c in v] for k, v in CANDS.items()}}

    def log(msg):
        print(f"[{time.time() - t0:6.1f}s] {msg}", flush=True)

    def save():
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1, default=str)

    ctx = mp.get_context("spawn")
    from seqlab.attention import _triton_wide

    with ctx.Pool(args.workers) as pool:
        if not args.skip_sweep:
            specs = [dict(kind="cand", kernel=k, cfg=c) for k, v in CANDS.items() for c in v]
            specs += [dict(kind="old", causal=c) for c in (False, True)]
            compiled = []
            for r in pool.imap_unordered(_worker, specs):
                compiled.append(r)
                status = "ok" if "errs" in r and _passed(r["errs"]) else f"FAIL {r.get('error') or r.get('errs')}"
                log(f"compile+check {r['kind']} {r.get('kernel', '')} {r.get('cfg', r.get('causal'))}: "
                    f"{status} ({r.get('seconds', 0):.0f}s)")
            result["compile_checks"] = compiled
            save()
            ok = {k: [tuple(r["cfg"]) for r in compiled if r["kind"] == "cand" and r["kernel"] == k and "errs" in r
                      and _passed(r["errs"])] for k in CANDS}
            rows = sweep(ok, log)
            result["sweep"] = rows
            table = choose(rows)
            result["chosen"] = table
            _triton_wide.set_tuned(table)
            save()
            log(f"chosen: {json.dumps(table)}")
        table = dict(_triton_wide._TUNED)
        specs = [dict(kind="feature", name=name, table=table) for name in FEATURE_CASES]
        checks = []
        for r in pool.imap_unordered(_worker, specs):
            checks.append(r)
            status = "ok" if "errs" in r and _passed(r["errs"]) else "FAIL"
            log(f"check {r['name']}: {status} {r.get('errs') or r.get('error')}")
        result["feature_checks"] = checks
        save()
        pool.close()
        pool.join()  # workers gone (CPU and GPU quiet) before anything is timed end to end
    time.sleep(3)
    if not DRY:
        def save_rows(rows):
            result["e2e"] = rows
            save()

        end_to_end(log, args.e2e_seqlens, save_rows)
        if args.repeat_short:  # the short cells are the noisiest (host-bound at N = 512): a second pass
            first = result["e2e"]

            def save_again(rows):
                result["e2e"] = first + [dict(r, repeat=2) for r in rows]
                save()

            end_to_end(log, [n for n in args.e2e_seqlens if n <= 1024], save_again,
                       impls=("seqlab", "sdpa_flash", "seqlab_std"))
    result["seconds"] = time.time() - t0
    save()
    log("done")


if __name__ == "__main__":
    main()
