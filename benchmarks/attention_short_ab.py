"""Short-sequence A/B (seqlen 512/1k, the benchmark protocol's shapes): seqlab's forward with the TMA kernel
and with the pointer kernel, its backward with the TMA and the pointer kernels, forward+backward with each
backward, and SDPA-FA2, in three interleaved rounds in one process; plus host time per call (mean wall time
of 200 calls without synchronising). Written after the v5 final benchmark showed d128 causal 512 cells far
below the same cells in the run before it, to separate kernel time from host time.

    PYTHONPATH=src python benchmarks/attention_short_ab.py --out $OUT/attention_short_ab.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from seqlab.attention import _triton_bwd_tma, flash_attn_func
from seqlab.attention.bench import _sdpa_fn, _time_mode, protocol_inputs
from seqlab.utils.runinfo import run_info
from seqlab.utils.timing import host_us

CELLS = [(128, True, 512), (128, True, 1024), (64, True, 512), (64, True, 1024), (128, False, 512),
         (64, False, 512)]


def _set(tma_fwd: bool, tma_bwd: bool):
    os.environ["SEQLAB_ATTN_TMA"] = "auto" if tma_fwd else "0"
    _triton_bwd_tma.ENABLED = tma_bwd


def warm(d, causal, n):
    """Compile every kernel variant this cell uses (run in parallel worker processes first)."""
    q, k, v, g = protocol_inputs(d, n, "bnhd")
    for tf, tb in ((True, True), (False, False)):
        _set(tf, tb)
        flash_attn_func(q, k, v, causal=causal).backward(g)
    torch.cuda.synchronize()


def run_cell(d, causal, n) -> dict:
    q, k, v, g = protocol_inputs(d, n, "bnhd")
    qt, kt, vt, gt = protocol_inputs(d, n, "bhnd")
    seq = lambda q, k, v: flash_attn_func(q, k, v, causal=causal)  # noqa: E731
    fa2 = _sdpa_fn("sdpa_flash", causal)
    variants = {  # name: (fn, tensors, mode, tma fwd, tma bwd)
        "fwd tma": (seq, (q, k, v, g), "fwd", True, True),
        "fwd pointer": (seq, (q, k, v, g), "fwd", False, True),
        "bwd default": (seq, (q, k, v, g), "bwd", True, True),
        "bwd pointer": (seq, (q, k, v, g), "bwd", True, False),
        "fwd_bwd default": (seq, (q, k, v, g), "fwd_bwd", True, True),
        "fwd_bwd bwd-pointer": (seq, (q, k, v, g), "fwd_bwd", True, False),
        "fa2 fwd": (fa2, (qt, kt, vt, gt), "fwd", True, True),
        "fa2 bwd": (fa2, (qt, kt, vt, gt), "bwd", True, True),
        "fa2 fwd_bwd": (fa2, (qt, kt, vt, gt), "fwd_bwd", True, True),
    }
    ms = {name: [] for name in variants}
    for _round in range(3):
        for name, (fn, (a, b, c, gg), mode, tf, tb) in variants.items():
            _set(tf, tb)
            ms[name].append(_time_mode(fn, mode, a, b, c, gg, 25, 100))
    _set(True, True)
    host = {}
    with torch.no_grad():
        host["seqlab fwd"] = host_us(lambda: seq(q, k, v))
        host["fa2 fwd"] = host_us(lambda: fa2(qt, kt, vt))
    host["seqlab fwd_bwd"] = host_us(lambda: seq(q, k, v).backward(g), 100)
    host["fa2 fwd_bwd"] = host_us(lambda: fa2(qt, kt, vt).backward(gt), 100)
    med = {name: statistics.median(vals) for name, vals in ms.items()}
    row = dict(d=d, causal=causal, n=n, ms=ms, median_ms=med, host_us=host)
    print(f"d{d} causal={causal!s:5} N={n:4} | fwd/FA2 tma {med['fa2 fwd'] / med['fwd tma']:.2f} pointer "
          f"{med['fa2 fwd'] / med['fwd pointer']:.2f} | bwd/FA2 default {med['fa2 bwd'] / med['bwd default']:.2f} "
          f"pointer {med['fa2 bwd'] / med['bwd pointer']:.2f} | fwd_bwd/FA2 default "
          f"{med['fa2 fwd_bwd'] / med['fwd_bwd default']:.2f} bwd-pointer "
          f"{med['fa2 fwd_bwd'] / med['fwd_bwd bwd-pointer']:.2f} | host us " +
          " ".join(f"{kk} {vv:.0f}" for kk, vv in host.items()) +
          " | ms rounds fwd tma " + "/".join(f"{x:.3f}" for x in ms["fwd tma"]), flush=True)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--warm", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.warm:
        d, c, n = args.warm.split(",")
        warm(int(d), c == "1", int(n))
        return 0
    t0 = time.time()
    procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--out", os.devnull, "--warm",
                               f"{d},{int(c)},{n}"]) for d, c, n in CELLS]
    for p in procs:
        p.wait()
    print(f"warm-up (parallel compile) {time.time() - t0:.0f}s", flush=True)
    rows = []
    for d, causal, n in CELLS:
        rows.append(run_cell(d, causal, n))
        with open(args.out, "w") as f:
            json.dump(dict(info=run_info(), rows=rows, seconds=time.time() - t0), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
