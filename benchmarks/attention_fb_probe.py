"""Why seqlab's forward+backward at long sequences sometimes reads 10-15% below its forward and backward
timed alone (GPU only).

In the v6 runs, forward+backward TFLOP/s at 8k/16k was 0.86-0.92x of what the separately timed forward and
backward imply (1 / (f/fwd + b/bwd) with the protocol's 1 : 2.5 FLOP split) in a few cells, where SDPA's stays
at 0.93-1.06x. This times the benchmark's three modes five times each per cell, interleaved, recording every
repetition of ``do_bench`` (not only the median), the caching allocator's device allocations and retries
during each timing, and the same forward+backward with ``_fast_launch``'s replay table off.

    PYTHONPATH=src python benchmarks/attention_fb_probe.py --out $OUT/attention_fb_probe.json
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from seqlab.attention import _fast_launch, flash_attn_func
from seqlab.attention.bench import _sdpa_fn, protocol_inputs
from seqlab.utils.runinfo import run_info

CELLS = [(128, False, 16384), (128, True, 16384), (64, False, 16384), (128, False, 8192)]


def _timed(fn, grad_to_none):
    from triton.testing import do_bench

    before = torch.cuda.memory_stats()
    times = do_bench(fn, warmup=25, rep=100, grad_to_none=grad_to_none, return_mode="all")
    after = torch.cuda.memory_stats()
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in ("num_device_alloc", "num_device_free",
                                                             "num_alloc_retries")}
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "n": len(times),
            "p90_ms": sorted(times)[int(0.9 * (len(times) - 1))], **delta}


def run_cell(d, causal, n) -> dict:
    q, k, v, g = protocol_inputs(d, n, "bnhd")
    qt, kt, vt, gt = protocol_inputs(d, n, "bhnd")
    b, h = q.shape[0], q.shape[2]
    fa2 = _sdpa_fn("sdpa_flash", causal)
    flops_fwd = 4 * b * h * n * n * d / (2 if causal else 1)
    seq = lambda: flash_attn_func(q, k, v, causal=causal)  # noqa: E731
    res = {"d": d, "causal": causal, "seqlen": n, "rounds": []}
    for _ in range(5):
        rnd = {}
        with torch.no_grad():
            rnd["seqlab_fwd"] = _timed(seq, None)
        outs = [seq()]
        rnd["seqlab_bwd"] = _timed(lambda o=outs: o[0].backward(g, retain_graph=True), [q, k, v])
        outs.clear()
        rnd["seqlab_fwd_bwd"] = _timed(lambda: seq().backward(g), [q, k, v])
        _fast_launch.PLANS = False
        rnd["seqlab_fwd_bwd_no_plans"] = _timed(lambda: seq().backward(g), [q, k, v])
        _fast_launch.PLANS = True
        rnd["sdpa_flash_fwd_bwd"] = _timed(lambda: fa2(qt, kt, vt).backward(gt), [qt, kt, vt])
        for key, r in rnd.items():
            mult = {"fwd": 1.0, "bwd": 2.5}.get(key.split("_")[-1], 3.5)
            if "fwd_bwd" in key:
                mult = 3.5
            r["tflops"] = mult * flops_fwd / (r["median_ms"] * 1e-3) / 1e12
        f, bw = rnd["seqlab_fwd"]["median_ms"], rnd["seqlab_bwd"]["median_ms"]
        rnd["seqlab_fwd_bwd_over_sum"] = rnd["seqlab_fwd_bwd"]["median_ms"] / (f + bw)
        res["rounds"].append(rnd)
        print(d, causal, n, {k: (round(v["median_ms"], 3), v["num_device_alloc"]) if isinstance(v, dict) else
                             round(v, 3) for k, v in rnd.items()}, flush=True)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/attention_fb_probe.json")
    args = ap.parse_args(argv)
    report = {"info": run_info(), "cells": [run_cell(*c) for c in CELLS]}
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
