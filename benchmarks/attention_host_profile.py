"""Where the host time of one attention call goes (GPU only).

For the benchmark protocol's short cells (seqlen 512, B = 16k / N, H = 2048 / D, bf16) this measures the
mean host time per call (no synchronisation inside the loop; the lower of two interleaved rounds) of
seqlab's forward (no grad, and with grad) and forward+backward against SDPA-FA2. seqlab runs four ways:
as shipped; without ``_fast_launch``'s replay table; also without its TMA descriptor cache; and through
Triton's own launch path. It also times the pieces of the launch path one by one (argument checks,
``autograd.Function.apply``, output allocation, TMA descriptors) and keeps a cProfile table of each seqlab
pass (sorted by own time), so the next change can aim at the largest item.

    PYTHONPATH=src python benchmarks/attention_host_profile.py --out $OUT/attention_host_profile.json
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import time

import torch

from seqlab.attention import _fast_launch, _triton_fwd_tma, flash_attn_func
from seqlab.attention import _validate as V
from seqlab.attention.bench import _sdpa_fn, protocol_inputs
from seqlab.utils.runinfo import run_info
from seqlab.utils.timing import host_us

CELLS = [(128, True, 512), (64, True, 512), (128, False, 512), (64, False, 1024)]


def _each_us(fn, n=2000) -> float:
    """Mean wall time of a host-only callable (no device work), in microseconds."""
    for _ in range(20):
        fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def _profile(fn, n=300, top=28) -> str:
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(n):
        fn()
    pr.disable()
    torch.cuda.synchronize()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(top)
    return s.getvalue()


def _pieces(q, k, v, causal) -> dict:
    """Host cost of each step of the TMA forward's launch path, timed alone."""
    out = torch.empty_like(q)
    b, n, h, d = q.shape
    bm, bn, _, _ = _triton_fwd_tma.config_for(d, causal, n)
    rows = {
        "check_qkv": _each_us(lambda: V.check_qkv(q, k, v, varlen=False)),
        "check_rest": _each_us(lambda: (V.check_dropout(0.0), V.check_scale(None, d),
                                        V.check_window((-1, -1), causal))),
        "is_compiling": _each_us(V._is_compiling),
        "tma_usable": _each_us(lambda: _triton_fwd_tma.usable(q, k, v, None, -1, 0 if causal else -1, None, 0.0, False,
                                                                False)),
        "torch_empty_x2": _each_us(lambda: (torch.empty(q.shape, dtype=q.dtype, device=q.device),
                                            torch.empty(b, h, n, dtype=torch.float32, device=q.device))),
        "desc_x4": _each_us(lambda: [_triton_fwd_tma._desc(t, bm) for t in (q, k, v, out)]),
        "get_device": _each_us(q.get_device),
        "current_device": _each_us(torch.cuda.current_device),
    }
    from triton.runtime import driver

    rows["get_current_stream"] = _each_us(lambda: driver.active.get_current_stream(0))
    try:
        from triton.backends.nvidia.driver import make_tensordesc_arg  # noqa: F401

        utils = driver.active.utils
        rows["fill_tma_descriptor_x1"] = _each_us(lambda: utils.fill_tma_descriptor_tiled(
            q.data_ptr(), 128, 2, 10, [1, bm, d], [b, n, h * d], [q.stride(0), q.stride(1), 1], 0))
    except Exception as e:  # another Triton version: report, keep going
        rows["fill_tma_descriptor_x1"] = f"n/a: {type(e).__name__}: {e}"

    class _Noop(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *a):
            ctx.save_for_backward(a[0], a[1], a[2])
            return a[0].new_empty(0), a[0].new_empty(0)

        @staticmethod
        def backward(ctx, *g):
            return (None,) * 14

    args = (q, k, v, None, None, n, n, 0.1, -1, 0, None, 0.0, None, False)
    rows["autograd_apply_noop_14args"] = _each_us(lambda: _Noop.apply(*args))
    return rows


def _cell(d, causal, n, profile: bool):
    q, k, v, g = protocol_inputs(d, n, "bnhd")
    qt, kt, vt, gt = protocol_inputs(d, n, "bhnd")
    b, h = q.shape[0], q.shape[2]
    fa2 = _sdpa_fn("sdpa_flash", causal)

    def seq_fwd_nograd():
        with torch.no_grad():
            flash_attn_func(q, k, v, causal=causal)

    def seq_fwd():
        flash_attn_func(q, k, v, causal=causal)

    def seq_fb():
        flash_attn_func(q, k, v, causal=causal).backward(g)

    def sdpa_fwd():
        with torch.no_grad():
            fa2(qt, kt, vt)

    def sdpa_fb():
        fa2(qt, kt, vt).backward(gt)

    _fast_launch.stats.update(direct=0, triton=0)
    row = {"d": d, "causal": causal, "seqlen": n, "batch": b, "nheads": h}
    # Interleaved rounds: the launch path as shipped, without the descriptor cache, without direct launches.
    variants = {"": (True, True, True), "_no_plans": (True, True, False), "_no_desc_cache": (True, False, False),
                "_triton_launch": (False, True, True)}
    for _ in range(2):
        for suffix, (on, desc, plans) in variants.items():
            _fast_launch.set_enabled(on)
            _fast_launch.DIRECT_DESCRIPTORS, _fast_launch.PLANS = desc, plans
            for name, fn in (("seqlab_fwd_nograd", seq_fwd_nograd), ("seqlab_fwd", seq_fwd),
                             ("seqlab_fwd_bwd", seq_fb)):
                row.setdefault(name + suffix, []).append(host_us(fn))
        for name, fn in (("sdpa_flash_fwd", sdpa_fwd), ("sdpa_flash_fwd_bwd", sdpa_fb)):
            row.setdefault(name, []).append(host_us(fn))
    _fast_launch.set_enabled(True)
    _fast_launch.DIRECT_DESCRIPTORS = _fast_launch.PLANS = True
    for name in list(row):
        if isinstance(row[name], list):
            row[name] = min(row[name])
    row["fast_launch_stats"] = dict(_fast_launch.stats)
    row["pieces"] = _pieces(q.detach(), k.detach(), v.detach(), causal)
    profiles = {}
    if profile:
        profiles["fwd_nograd"] = _profile(seq_fwd_nograd)
        profiles["fwd_bwd"] = _profile(seq_fb)
    return row, profiles


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/attention_host_profile.json")
    args = ap.parse_args(argv)
    report = {"info": run_info(), "unit": "host microseconds per call", "cells": [], "profiles": {}}
    for i, (d, causal, n) in enumerate(CELLS):
        row, profiles = _cell(d, causal, n, profile=i == 0)
        report["cells"].append(row)
        report["profiles"].update(profiles)
        print(json.dumps(row), flush=True)
        for text in profiles.values():
            print(text[:6000], flush=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
