"""Direct launch of cached compiled kernels (``seqlab.attention._fast_launch``) against Triton's own path.

For each case, forward + backward run with the direct path off, then three times with it on (the first call
compiles and caches, the second launches directly, the third too with all tensors at new addresses); out,
dq, dk, dv must be bitwise equal, and the direct path must actually have been taken. Writes JSON.

    PYTHONPATH=src python benchmarks/attention_fast_launch_check.py --out results/attention_fast_launch_check.json
"""

from __future__ import annotations

import argparse
import json

import torch

from seqlab.attention import _fast_launch as FL
from seqlab.attention import flash_attn_func, flash_attn_varlen_func
from seqlab.utils.runinfo import run_info

CASES = [
    dict(b=2, n=1000, h=4, hk=4, d=64, causal=False),
    dict(b=2, n=1000, h=4, hk=4, d=128, causal=True),
    dict(b=1, n=4096, h=8, hk=2, d=128, causal=True),
    dict(b=2, n=777, h=4, hk=1, d=96, causal=False, window=(100, 50)),
    dict(b=2, n=512, h=4, hk=4, d=256, causal=True),
    dict(b=2, n=1024, h=4, hk=4, d=64, causal=True, alibi=True),
    dict(b=2, n=1024, h=4, hk=4, d=64, causal=False, dropout=0.1),
    dict(b=3, n=300, h=4, hk=2, d=64, causal=True, varlen=True),
]


def run_case(c, dtype):
    torch.manual_seed(0)
    shape_q, shape_k = (c["b"], c["n"], c["h"], c["d"]), (c["b"], c["n"], c["hk"], c["d"])
    q = torch.randn(shape_q, device="cuda", dtype=dtype)
    k = torch.randn(shape_k, device="cuda", dtype=dtype)
    v = torch.randn(shape_k, device="cuda", dtype=dtype)
    g = torch.randn(shape_q, device="cuda", dtype=dtype)
    slopes = torch.rand(c["h"], device="cuda") * 0.5 if c.get("alibi") else None
    kw = dict(causal=c["causal"], window_size=c.get("window", (-1, -1)), alibi_slopes=slopes,
              dropout_p=c.get("dropout", 0.0))

    def once():
        qq, kk, vv = (t.clone().requires_grad_() for t in (q, k, v))
        torch.manual_seed(1)  # same dropout seed every call
        if c.get("varlen"):
            lens = torch.tensor([c["n"], c["n"] // 2 + 1, 7][: c["b"]], dtype=torch.int32, device="cuda")
            cu = torch.nn.functional.pad(lens.cumsum(0, dtype=torch.int32), (1, 0))
            tot = int(cu[-1])
            o = flash_attn_varlen_func(qq.reshape(-1, c["h"], c["d"])[:tot], kk.reshape(-1, c["hk"], c["d"])[:tot],
                                       vv.reshape(-1, c["hk"], c["d"])[:tot], cu, cu, int(lens.max()), int(lens.max()),
                                       **kw)
            o.backward(g.reshape(-1, c["h"], c["d"])[:tot])
        else:
            o = flash_attn_func(qq, kk, vv, **kw)
            o.backward(g)
        return [o.detach(), qq.grad, kk.grad, vv.grad]

    FL.set_enabled(False)
    ref = once()
    FL.set_enabled(True)
    before = dict(FL.stats)
    once()
    got = once()
    # A third direct call with every tensor at a new address (the first results are still alive), so cached
    # TMA descriptors must be looked up by address, not reused.
    spacer = torch.empty(1 << 20, device="cuda")
    got2 = once()
    del spacer
    direct = FL.stats["direct"] - before["direct"]
    moved = got2[0].data_ptr() != got[0].data_ptr()
    equal = all(torch.equal(a, b) for a, b in zip(ref, got)) and all(torch.equal(a, b) for a, b in zip(ref, got2))
    finite = all(bool(torch.isfinite(t).all()) for t in got + got2)
    return dict(case={k: v for k, v in c.items()}, dtype=str(dtype).split(".")[-1], bitwise_equal=equal,
                finite=finite, direct_launches=direct, moved=moved, passed=equal and finite and direct >= 6)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/attention_fast_launch_check.json")
    ap.add_argument("--jobs", type=int, default=1,
                    help="compile the cases' kernels in this many worker processes first (the check itself then "
                         "runs in this process on Triton's on-disk cache)")
    ap.add_argument("--warm-case", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.warm_case is not None:
        for dt in (torch.bfloat16, torch.float16):
            run_case(CASES[args.warm_case], dt)
        return 0
    if args.jobs > 1:
        import os
        import subprocess
        import sys

        todo = list(range(len(CASES)))
        while todo:
            batch, todo = todo[:args.jobs], todo[args.jobs:]
            procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--warm-case", str(i)])
                     for i in batch]
            for proc in procs:
                proc.wait()
    if not FL.enabled():
        print("direct launch is not enabled on this Triton version; nothing to check")
    rows = [run_case(c, dt) for c in CASES for dt in (torch.bfloat16, torch.float16)]
    for r in rows:
        print(("pass" if r["passed"] else "FAIL"), r["dtype"], r["case"], "direct launches:", r["direct_launches"])
    res = {"info": run_info(), "enabled": FL.enabled(), "n_pass": sum(r["passed"] for r in rows), "n": len(rows),
           "rows": rows}
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    print(f"{res['n_pass']}/{res['n']} pass")
    return 0 if res["n_pass"] == res["n"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
