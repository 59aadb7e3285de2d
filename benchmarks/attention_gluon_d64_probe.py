"""Probe: head dim 64 on the Gluon forward with two tile shapes, against the Triton TMA forward and SDPA-cuDNN.

The v7 benchmark with the Gluon kernel on everywhere lost at d64 with FA3's d128 tiles (64-row warpgroups,
128-key blocks). This probe tries 128-row warpgroups with 64-key blocks, which fit the same registers. It first
checks out and LSE of both tile shapes against float64 on fresh inputs: ragged lengths, causal, GQA. It then times
them with `do_bench` medians at the FlashAttention protocol's shapes (hidden 2048, 16k tokens).

    PYTHONPATH=src python3 benchmarks/attention_gluon_d64_probe.py --out $OUT/gluon_d64_probe.json   # H100
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch

TILES = {"gluon_64x128x3": (64, 128, 3), "gluon_128x64x4": (128, 64, 4)}


def _ref(q, k, v, causal, scale):
    b, nq, h, d = q.shape
    nk, hk = k.shape[1], k.shape[2]
    qd = q.double().transpose(1, 2)
    kd = k.double().transpose(1, 2).repeat_interleave(h // hk, 1)
    vd = v.double().transpose(1, 2).repeat_interleave(h // hk, 1)
    s = qd @ kd.transpose(-1, -2) * scale
    if causal:  # bottom-right aligned, like flash-attn
        i = torch.arange(nq, device=q.device)[:, None]
        j = torch.arange(nk, device=q.device)[None, :]
        s = s.masked_fill(j > i + (nk - nq), float("-inf"))
    return (torch.softmax(s, -1) @ vd).transpose(1, 2), torch.logsumexp(s, -1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from triton.testing import do_bench

    from seqlab.attention import _gluon_fwd as G
    from seqlab.attention import _triton_fwd_tma as T

    torch.manual_seed(0)
    dev = "cuda"
    rep = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
           "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "commit": os.environ.get("SEQLAB_GIT_COMMIT"), "check": [], "bench": []}
    for (b, nq, nk, h, hk, causal) in [(2, 1000, 1000, 4, 4, False), (2, 1000, 1000, 4, 4, True),
                                       (1, 257, 1100, 8, 2, True), (2, 113, 300, 4, 1, False)]:
        q = torch.randn(b, nq, h, 64, device=dev, dtype=torch.bfloat16)
        k, v = (torch.randn(b, nk, hk, 64, device=dev, dtype=torch.bfloat16) for _ in range(2))
        scale = 1 / 8
        ref, ref_lse = _ref(q, k, v, causal, scale)
        for name, tiles in TILES.items():
            o, lse = G.gluon_fwd(q, k, v, scale, causal, tiles=tiles)
            err = ((o.double() - ref).norm() / ref.norm()).item()
            lerr = (lse.double() - ref_lse).abs().max().item()
            ok = math.isfinite(err) and err < 2e-2 and lerr < 1e-2
            rep["check"].append({"tiles": name, "shape": [b, nq, nk, h, hk], "causal": causal, "rel_err": err,
                                 "lse_err": lerr, "ok": ok})
            print("check", name, b, nq, nk, h, hk, causal, f"{err:.2e} {lerr:.2e}", "ok" if ok else "FAIL", flush=True)
    bad = {c["tiles"] for c in rep["check"] if not c["ok"]}
    for n in (1024, 2048, 4096, 8192, 16384):
        for causal in (False, True):
            b, h = 16384 // n, 32
            q, k, v = (torch.randn(b, n, h, 64, device=dev, dtype=torch.bfloat16) for _ in range(3))
            flops = 4 * b * h * n * n * 64 / (2 if causal else 1)
            row = {"seqlen": n, "causal": causal}
            impls = {"triton_tma": lambda q=q, k=k, v=v, c=causal: T.tma_fwd(q, k, v, 0.125, c)}
            for name, tiles in TILES.items():
                if name not in bad:
                    impls[name] = lambda q=q, k=k, v=v, c=causal, t=tiles: G.gluon_fwd(q, k, v, 0.125, c, tiles=t)
            qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))

            def cudnn(qt=qt, kt=kt, vt=vt, c=causal):
                with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                    return torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, is_causal=c)
            impls["sdpa_cudnn"] = cudnn
            for name, fn in impls.items():
                ms = do_bench(fn, warmup=30, rep=150)
                row[name] = {"ms": ms, "tflops": flops / ms * 1e-9}
            rep["bench"].append(row)
            print(n, causal, {k: round(v["tflops"]) for k, v in row.items() if isinstance(v, dict)}, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rep, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
