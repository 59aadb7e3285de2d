"""Host (CPU) time per attention call: what a short sequence pays before the GPU does any work.

At seqlen 512 the kernels of one layer take ~0.1-0.3 ms, so tens of microseconds of Python per call
show up in wall-clock time and in ``do_bench`` (the GPU waits for the launch). This measures the
launch path alone on a tiny shape, without synchronising inside the loop: mean host time of
``flash_attn_func`` forward (no grad) and forward+backward, against SDPA's FA2 backend, and the
registered ``torch.ops.seqlab.flash_fwd`` op that ``torch.compile`` graphs use.

    PYTHONPATH=src python benchmarks/attention_host_overhead.py --out results/attention_host_overhead.json
"""

from __future__ import annotations

import argparse
import json

import torch

from seqlab.attention import flash_attn_func
from seqlab.attention.ops import flash_fwd
from seqlab.utils.runinfo import run_info
from seqlab.utils.timing import host_us


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/attention_host_overhead.json")
    args = ap.parse_args(argv)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    dev, dt = "cuda", torch.bfloat16
    q, k, v = (torch.randn(1, 128, 2, 64, device=dev, dtype=dt, requires_grad=True) for _ in range(3))
    qt, kt, vt = (t.detach().transpose(1, 2).requires_grad_() for t in (q, k, v))
    g = torch.randn_like(q)
    gt = g.transpose(1, 2)
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def sdpa_fwd():
        with torch.no_grad(), sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            sdpa(qt, kt, vt, is_causal=True)

    def sdpa_fwd_bwd():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            sdpa(qt, kt, vt, is_causal=True).backward(gt)

    def ours_fwd():
        with torch.no_grad():
            flash_attn_func(q, k, v, causal=True)

    def ours_fwd_bwd():
        flash_attn_func(q, k, v, causal=True).backward(g)

    def ours_op():
        with torch.no_grad():
            flash_fwd(q, k, v, None, None, 128, 128, 0.125, -1, 0, None, 0.0, None, False)

    fns = (("seqlab_fwd", ours_fwd), ("seqlab_fwd_bwd", ours_fwd_bwd), ("seqlab_custom_op_fwd", ours_op),
           ("sdpa_flash_fwd", sdpa_fwd), ("sdpa_flash_fwd_bwd", sdpa_fwd_bwd))
    rows = {name: host_us(fn, n=2000, warmup=50) for name, fn in fns}
    result = {"info": run_info(), "shape": "B1 N128 H2 D64 bf16 causal", "unit": "host microseconds per call",
              "rows": rows}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    for name, us in rows.items():
        print(f"{name:24s} {us:8.1f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
