"""Decoding benchmark: seqlab ``flash_attn_with_kvcache`` (split-KV) against PyTorch SDPA on the same cache.

Timed both eagerly and replayed from a CUDA graph (host overhead excluded, as in decoding loops).
One query token per row, GQA 8:1 (32 query heads, 4 kv heads), headdim 128, bf16, batch 1…64, cache
1k…128k (all rows full). Memory-bandwidth utilisation = bytes of K and V read / time, reported against
the device-to-device copy bandwidth measured in the same run.

    PYTHONPATH=src python benchmarks/attention_decode.py --out results/attention_decode.json
"""

from __future__ import annotations

import argparse
import json

import torch
from triton.testing import do_bench

from seqlab.attention import flash_attn_with_kvcache
from seqlab.attention.bench import device_ceilings
from seqlab.utils.runinfo import run_info


def _graph_time(fn) -> float:
    """Median time of ``fn`` replayed from a CUDA graph (how decoding loops run in practice)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return do_bench(graph.replay, warmup=25, rep=100, return_mode="median")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/attention_decode.json")
    ap.add_argument("--max-tokens", type=int, default=2**21, help="skip batch*cache above this (memory)")
    args = ap.parse_args(argv)
    h, hk, d, dtype = 32, 4, 128, torch.bfloat16
    ceil = device_ceilings()
    rows = []
    for batch in (1, 4, 8, 16, 64):
        for cache in (1024, 8192, 32768, 131072):
            if batch * cache > args.max_tokens:
                rows.append(dict(batch=batch, cache=cache, skipped="batch*cache above --max-tokens"))
                continue
            q = torch.randn(batch, 1, h, d, device="cuda", dtype=dtype)
            kc = torch.randn(batch, cache, hk, d, device="cuda", dtype=dtype)
            vc = torch.randn(batch, cache, hk, d, device="cuda", dtype=dtype)
            lens = torch.full((batch,), cache, dtype=torch.int32, device="cuda")
            def ours_fn(q=q, kc=kc, vc=vc, lens=lens):
                return flash_attn_with_kvcache(q, kc, vc, cache_seqlens=lens)

            ours = do_bench(ours_fn, warmup=25, rep=100, return_mode="median")
            ours_graph = _graph_time(ours_fn)
            out = flash_attn_with_kvcache(q, kc, vc, cache_seqlens=lens)
            qs, ks, vs = q.transpose(1, 2), kc.transpose(1, 2), vc.transpose(1, 2)

            def sdpa(qs=qs, ks=ks, vs=vs):
                return torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, enable_gqa=True)

            try:
                ref = sdpa().transpose(1, 2)
                err = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
                theirs = do_bench(sdpa, warmup=25, rep=100, return_mode="median")
                theirs_graph = _graph_time(sdpa)
            except (RuntimeError, torch.OutOfMemoryError) as exc:
                err, theirs, theirs_graph = None, None, None
                print(f"sdpa failed: {str(exc)[:100]}")
            nbytes = 2 * batch * cache * hk * d * 2
            row = dict(batch=batch, cache=cache, seqlab_ms=ours, sdpa_ms=theirs,
                       speedup=theirs / ours if theirs else None, rel_diff_vs_sdpa=err,
                       seqlab_graph_ms=ours_graph, sdpa_graph_ms=theirs_graph,
                       speedup_graph=theirs_graph / ours_graph if theirs_graph else None,
                       seqlab_gbps=nbytes / ours_graph * 1e-6, bw_util=nbytes / ours_graph * 1e-6 / ceil["copy_gbps"])
            rows.append(row)
            print(f"B={batch:3d} cache={cache:6d}: eager seqlab {ours * 1e3:7.1f} us sdpa "
                  f"{(theirs or float('nan')) * 1e3:7.1f} us x{row['speedup'] or float('nan'):.2f} | graph seqlab "
                  f"{ours_graph * 1e3:7.1f} us sdpa {(theirs_graph or float('nan')) * 1e3:7.1f} us "
                  f"x{row['speedup_graph'] or float('nan'):.2f} | {row['seqlab_gbps']:.0f} GB/s "
                  f"({100 * row['bw_util']:.0f}% of copy)", flush=True)
            torch.cuda.empty_cache()
    with open(args.out, "w") as f:
        json.dump({"info": run_info(), "ceilings": ceil, "setup": {"nheads": h, "nheads_k": hk, "headdim": d,
                   "dtype": "bfloat16", "seqlen_q": 1}, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
