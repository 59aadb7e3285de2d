"""Forward and backward A/B in one process: the TMA-descriptor kernels against the pointer kernels
(forward: ``SEQLAB_ATTN_TMA=auto`` vs ``0``; backward: ``_triton_bwd_tma.ENABLED``), with SDPA-FA2 beside
them; the paper protocol's shapes (hidden 2048, 16k tokens, bf16), head dims 64/128, causal and not, seqlen
512-16k. Each seqlab variant is timed twice, interleaved, and the faster of the two medians kept. Writes
``--out`` (JSON).

    PYTHONPATH=src python benchmarks/attention_tma_ab.py --out $OUT/attention_tma_ab.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
from triton.testing import do_bench

sys.path.insert(0, os.path.dirname(__file__))
from attention_probe_v4 import inputs, tflops, time_fa2, time_seqlab  # noqa: E402
from seqlab.attention import _triton_bwd_tma, flash_attn_func  # noqa: E402
from seqlab.utils.runinfo import run_info  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    t0 = time.time()
    torch.manual_seed(0)
    rows = []
    for d in (64, 128):
        for causal in (False, True):
            for n in (512, 1024, 2048, 4096, 8192, 16384):
                q, k, v = inputs(n, d, grad=False)
                b, _, h, _ = q.shape
                row = dict(d=d, causal=causal, n=n)
                for _rep in range(2):
                    for name, env in (("tma", "auto"), ("pointer", "0")):
                        os.environ["SEQLAB_ATTN_TMA"] = env
                        with torch.no_grad():
                            ms = do_bench(lambda q=q, k=k, v=v, c=causal: flash_attn_func(q, k, v, causal=c),
                                          warmup=25, rep=100, return_mode="median")
                        row[f"{name}_ms"] = min(ms, row.get(f"{name}_ms", float("inf")))
                os.environ["SEQLAB_ATTN_TMA"] = "auto"
                row["fa2_ms"] = time_fa2(q, k, v, causal, "fwd")
                # backward: TMA dQ / dK-dV kernels against the pointer ones (forward on TMA in both)
                qg, kg, vg = (t.detach().requires_grad_(True) for t in (q, k, v))
                for _rep in range(2):
                    for name, flag in (("tma_bwd", True), ("pointer_bwd", False)):
                        _triton_bwd_tma.ENABLED = flag
                        ms = time_seqlab(qg, kg, vg, causal, "bwd")
                        row[f"{name}_ms"] = min(ms, row.get(f"{name}_ms", float("inf")))
                _triton_bwd_tma.ENABLED = True
                row["fa2_bwd_ms"] = time_fa2(qg, kg, vg, causal, "bwd")
                for name in ("tma_bwd", "pointer_bwd", "fa2_bwd"):
                    row[f"{name}_tflops"] = tflops(b, n, h, d, causal, "bwd", row[f"{name}_ms"])
                row["tma_over_pointer_bwd"] = row["pointer_bwd_ms"] / row["tma_bwd_ms"]
                for name in ("tma", "pointer", "fa2"):
                    row[f"{name}_tflops"] = tflops(b, n, h, d, causal, "fwd", row[f"{name}_ms"])
                row["tma_over_pointer"] = row["pointer_ms"] / row["tma_ms"]
                rows.append(row)
                print(f"d{d} causal={causal!s:5} N={n:5}: tma {row['tma_tflops']:4.0f} pointer "
                      f"{row['pointer_tflops']:4.0f} fa2 {row['fa2_tflops']:4.0f} TFLOP/s -> tma/pointer "
                      f"{row['tma_over_pointer']:.3f}, /fa2 {row['fa2_ms'] / row['tma_ms']:.2f} vs "
                      f"{row['fa2_ms'] / row['pointer_ms']:.2f} | bwd tma {row['tma_bwd_tflops']:4.0f} pointer "
                      f"{row['pointer_bwd_tflops']:4.0f} fa2 {row['fa2_bwd_tflops']:4.0f} -> "
                      f"{row['tma_over_pointer_bwd']:.3f}", flush=True)
    with open(args.out, "w") as f:
        json.dump(dict(info=run_info(), rows=rows, seconds=time.time() - t0), f, indent=1)


if __name__ == "__main__":
    main()
