"""Attention section of ``seqlab demo``: check against the float64 reference, then time against plain PyTorch."""

from __future__ import annotations

import statistics
import time

import torch

from .interface import flash_attn_func
from .reference import attention_ref


def _time_ms(fn, device: str, reps: int) -> float:
    if device == "cuda":
        from triton.testing import do_bench

        return do_bench(fn, warmup=10, rep=50, return_mode="median")
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def run(device: str = "cpu", quick: bool = False) -> list[dict]:
    """Rows for the demo table: relative error vs float64 and fwd+bwd time vs the plain PyTorch reference."""
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-4
    sizes = [512] if quick else ([1024, 4096] if device == "cuda" else [512, 1024])
    rows = []
    for seqlen in sizes:
        for causal in (False, True):
            b, h, d = (4, 16, 64) if device == "cuda" else (1, 4, 64)
            q, k, v = (torch.randn(b, seqlen, h, d, device=device, dtype=dtype, requires_grad=True)
                       for _ in range(3))
            out = flash_attn_func(q, k, v, causal=causal)
            ref = attention_ref(q.detach().double(), k.detach().double(), v.detach().double(), causal=causal)
            err = ((out.detach().double() - ref).norm() / ref.norm()).item()
            ok = bool(torch.isfinite(out).all()) and err < tol
            g = torch.randn_like(out)

            def ours(q=q, k=k, v=v, g=g, causal=causal):
                flash_attn_func(q, k, v, causal=causal).backward(g)

            def plain(q=q, k=k, v=v, g=g, causal=causal):
                attention_ref(q, k, v, causal=causal).backward(g)

            reps = 3 if device == "cpu" else 1
            t_ours, t_ref = _time_ms(ours, device, reps), _time_ms(plain, device, reps)
            rows.append({
                "system": "FlashAttention",
                "case": f"B{b} H{h} N{seqlen} D{d} {'causal' if causal else 'full'} fwd+bwd {str(dtype)[6:]}",
                "check": f"rel err {err:.1e} {'ok' if ok else 'FAIL'}",
                "seqlab_ms": t_ours,
                "reference_ms": t_ref,
                "speedup": t_ref / t_ours,
            })
    return rows
