"""Tune the Triton attention tile configs on this GPU and write the table seqlab ships.

For each head dim (64, 128, 256), masked or not (causal), and kernel (fwd, dkdv, dq), every candidate
config is timed at the paper protocol's shapes (hidden 2048, 16k tokens, bf16) for the seqlen buckets
of ``SEQLEN_BUCKETS`` (or ``--seqlens``); the fastest per bucket is kept. ``--merge`` starts from an
existing table, so one bucket can be (re)tuned without redoing the others. Output:
``src/seqlab/attention/configs/<device>.json`` (pass ``--out``), read at launch time by
``seqlab.attention._configs``. Candidates that do not fit in shared memory or registers are skipped.

    PYTHONPATH=src python benchmarks/attention_tune.py --out $OUT/nvidia-h100-80gb-hbm3.json
"""

from __future__ import annotations

import argparse
import json
import os
import time

# The table holds tiles for the general pointer kernels; the TMA kernels (Hopper) would take most tuned shapes
# and ignore the forced forward config, so they are off while tuning.
os.environ.setdefault("SEQLAB_ATTN_TMA", "0")
os.environ.setdefault("SEQLAB_ATTN_TMA_BWD", "0")

import torch  # noqa: E402
from triton.testing import do_bench  # noqa: E402

from seqlab.attention import flash_attn_func  # noqa: E402
from seqlab.attention._configs import SEQLEN_BUCKETS, config_key, device_key, heuristic, set_override  # noqa: E402
from seqlab.utils.runinfo import run_info  # noqa: E402

CANDIDATES = {
    "fwd": [(128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3), (128, 128, 8, 2), (64, 64, 4, 3), (128, 32, 4, 4),
            (64, 128, 4, 3), (128, 64, 4, 4)],
    # (32, 128, 4, 3), (64, 128, 8, 3) / (128, 64, 8, 3), (128, 64, 4, 4): added after the v4 probe
    # (results/attention_probe_v4.json), where they beat the shipped entries at 16k by 2-9%.
    "dkdv": [(64, 128, 8, 2), (64, 64, 4, 2), (64, 64, 8, 3), (32, 128, 4, 2), (32, 64, 4, 3), (128, 128, 8, 2),
             (64, 128, 4, 3), (32, 128, 4, 3), (64, 128, 8, 3)],
    "dq": [(128, 64, 8, 2), (64, 64, 4, 2), (64, 64, 8, 3), (128, 32, 4, 3), (64, 32, 4, 3), (128, 128, 8, 2),
           (128, 64, 4, 3), (128, 64, 8, 3), (128, 64, 4, 4)],
}


def _as_cfg(t):
    return dict(BLOCK_M=t[0], BLOCK_N=t[1], num_warps=t[2], num_stages=t[3])


def time_kernel(kernel, d, causal, seqlen):
    batch, nheads = max(1, 16384 // seqlen), 2048 // d
    q, k, v = (torch.randn(batch, seqlen, nheads, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))
    g = torch.randn_like(q)
    if kernel == "fwd":
        with torch.no_grad():
            return do_bench(lambda: flash_attn_func(q, k, v, causal=causal), warmup=10, rep=40,
                            return_mode="median")
    out = flash_attn_func(q, k, v, causal=causal)
    return do_bench(lambda: out.backward(g, retain_graph=True), warmup=10, rep=40, grad_to_none=[q, k, v],
                    return_mode="median")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--headdims", type=int, nargs="*", default=[64, 128, 256])
    ap.add_argument("--seqlens", type=int, nargs="*", default=list(SEQLEN_BUCKETS),
                    help="buckets to tune (each must be one of SEQLEN_BUCKETS)")
    ap.add_argument("--kernels", nargs="*", default=["fwd", "dkdv", "dq"], choices=["fwd", "dkdv", "dq"])
    ap.add_argument("--merge", default=None, help="existing table (JSON) whose other entries are kept")
    args = ap.parse_args(argv)
    bad = [n for n in args.seqlens if n not in SEQLEN_BUCKETS]
    if bad:
        ap.error(f"--seqlens {bad} are not in SEQLEN_BUCKETS {SEQLEN_BUCKETS}")
    t0 = time.time()
    table, trials = {}, []
    if args.merge:
        with open(args.merge) as f:
            table.update(json.load(f)["configs"])
    for d in args.headdims:
        for causal in (False, True):
            for kernel in args.kernels:
                cands = CANDIDATES[kernel]
                if d == 256:  # large tiles cannot fit
                    cands = [c for c in cands if c[0] * c[1] <= 64 * 64] + [(32, 32, 8, 1), (64, 32, 8, 2)]
                best = {n: (float("inf"), None) for n in args.seqlens}
                for cand in cands:
                    set_override(kernel, _as_cfg(cand))
                    for n in args.seqlens:
                        try:
                            ms = time_kernel(kernel, d, causal, n)
                        except Exception as exc:  # out of shared memory / registers: skip the candidate
                            trials.append(dict(kernel=kernel, d=d, causal=causal, seqlen=n, cfg=cand,
                                               error=str(exc)[:120]))
                            break
                        trials.append(dict(kernel=kernel, d=d, causal=causal, seqlen=n, cfg=cand, ms=ms))
                        if ms < best[n][0]:
                            best[n] = (ms, cand)
                    set_override(kernel, None)
                for n, (ms, cand) in best.items():
                    if cand is not None:
                        table[config_key(kernel, d, torch.bfloat16, causal, n)] = _as_cfg(cand)
                    default = heuristic(kernel, d, torch.bfloat16)
                    print(f"d={d} causal={causal} {kernel:4s} N={n:5d}: best {cand} {ms:.3f} ms "
                          f"(heuristic {tuple(default.values())})", flush=True)
                with open(args.out, "w") as f:
                    json.dump({"info": run_info(), "device_key": device_key(), "configs": table, "trials": trials,
                               "seconds": time.time() - t0}, f, indent=1)
    print(f"tuned {len(table)} entries in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
