"""FlashAttention speed benchmark (the FlashAttention papers' protocol), used by
``benchmarks/attention.py`` and ``seqlab bench attention``.

Hidden size 2048 (nheads = 2048 / headdim), batch × seqlen = 16k tokens, bf16, random inputs.
FLOPs: forward 4·B·H·N²·D (halved when causal), backward 2.5× forward. Every implementation is timed
side by side in one process with ``triton.testing.do_bench`` medians after warm-up: seqlab, PyTorch
SDPA with each backend forced (FLASH_ATTENTION = FA2, CUDNN_ATTENTION, EFFICIENT_ATTENTION, MATH
where it fits) and FlexAttention compiled once per shape.
"""

from __future__ import annotations

import json
import math
import os

import torch

from .reference import attention_flops

IMPLS = ("seqlab", "sdpa_flash", "sdpa_cudnn", "sdpa_efficient", "sdpa_math", "flex")
MODES = ("fwd", "bwd", "fwd_bwd")


def _sdpa_fn(backend_name: str, causal: bool):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = {"sdpa_flash": SDPBackend.FLASH_ATTENTION, "sdpa_cudnn": SDPBackend.CUDNN_ATTENTION,
               "sdpa_efficient": SDPBackend.EFFICIENT_ATTENTION, "sdpa_math": SDPBackend.MATH}[backend_name]

    def fn(q, k, v):  # (B, H, N, D)
        with sdpa_kernel(backend):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)

    return fn


_FLEX_CACHE: dict = {}


def _flex_fn(causal: bool, seqlen: int, device):
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    if "compiled" not in _FLEX_CACHE:
        import torch._dynamo

        # One compiled graph per shape: raise the recompile limit so no shape falls back to eager.
        for name in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit",
                     "accumulated_recompile_limit"):
            if hasattr(torch._dynamo.config, name):
                setattr(torch._dynamo.config, name, 1024)
        # Compiled backwards donate buffers by default, which forbids the retain_graph=True the "bwd" timing
        # uses (the same forward is differentiated repeatedly); turn that off for the anchor.
        import torch._functorch.config as functorch_config

        if hasattr(functorch_config, "donated_buffer"):
            functorch_config.donated_buffer = False
        _FLEX_CACHE["compiled"] = torch.compile(flex_attention, dynamic=False)
    block_mask = None
    if causal:
        block_mask = create_block_mask(lambda b, h, q_idx, kv_idx: q_idx >= kv_idx, None, None, seqlen, seqlen,
                                       device=device)
    compiled = _FLEX_CACHE["compiled"]
    return lambda q, k, v: compiled(q, k, v, block_mask=block_mask)


def _math_fits(batch, nheads, seqlen) -> bool:
    # scores + probs + their grads in bf16/fp32: keep well under the card's memory
    free, _ = torch.cuda.mem_get_info()
    return batch * nheads * seqlen * seqlen * 12 < 0.6 * free


def protocol_inputs(headdim: int, seqlen: int, layout: str = "bnhd", dtype=torch.bfloat16):
    """The protocol's random inputs for one cell (batch = 16k tokens / seqlen, nheads = 2048 / headdim): q, k, v
    (requiring grad) and an output gradient g, laid out (B, N, H, D) for seqlab (``"bnhd"``) or (B, H, N, D) for
    SDPA (``"bhnd"``), on CUDA."""
    b, h = max(1, 16384 // seqlen), 2048 // headdim
    shape = (b, seqlen, h, headdim) if layout == "bnhd" else (b, h, seqlen, headdim)
    q, k, v = (torch.randn(shape, device="cuda", dtype=dtype, requires_grad=True) for _ in range(3))
    return q, k, v, torch.randn(shape, device="cuda", dtype=dtype)


def bench_case(impl: str, batch: int, seqlen: int, nheads: int, headdim: int, causal: bool, dtype=torch.bfloat16,
               modes=MODES, warmup: int = 25, rep: int = 100) -> list[dict]:
    """Time one implementation on one shape; returns one row per mode (ms, TFLOP/s or an error)."""
    from .interface import flash_attn_func

    dev = "cuda"
    rows = []
    base = dict(impl=impl, batch=batch, seqlen=seqlen, nheads=nheads, headdim=headdim, causal=causal,
                dtype=str(dtype).split(".")[-1])
    if impl == "sdpa_math" and not _math_fits(batch, nheads, seqlen):
        return [dict(base, mode=m, ms=None, tflops=None, error="skipped: score matrix does not fit") for m in modes]
    if impl == "seqlab":
        shape = (batch, seqlen, nheads, headdim)
        fn = lambda q, k, v: flash_attn_func(q, k, v, causal=causal)  # noqa: E731
    else:
        shape = (batch, nheads, seqlen, headdim)
        fn = _sdpa_fn(impl, causal) if impl.startswith("sdpa") else _flex_fn(causal, seqlen, dev)
    q, k, v = (torch.randn(shape, device=dev, dtype=dtype, requires_grad=True) for _ in range(3))
    g = torch.randn(shape, device=dev, dtype=dtype)
    try:
        out = fn(q, k, v)
        out.backward(g)
        torch.cuda.synchronize()
        for mode in modes:
            ms = _time_mode(fn, mode, q, k, v, g, warmup, rep)
            flops = attention_flops(batch, nheads, seqlen, seqlen, headdim, causal, mode)
            rows.append(dict(base, mode=mode, ms=ms, tflops=flops / ms * 1e-9))
    except (RuntimeError, torch.OutOfMemoryError) as exc:  # backend refuses the shape, or OOM
        msg = str(exc).splitlines()[0][:200]
        done = {r["mode"] for r in rows}
        rows += [dict(base, mode=m, ms=None, tflops=None, error=msg) for m in modes if m not in done]
    finally:
        torch.cuda.empty_cache()
    return rows


def _time_mode(fn, mode, q, k, v, g, warmup, rep) -> float:
    from triton.testing import do_bench

    if mode == "fwd":
        with torch.no_grad():
            return do_bench(lambda: fn(q, k, v), warmup=warmup, rep=rep, return_mode="median")
    if mode == "bwd":
        out = fn(q, k, v)
        return do_bench(lambda: out.backward(g, retain_graph=True), warmup=warmup, rep=rep,
                        grad_to_none=[q, k, v], return_mode="median")
    return do_bench(lambda: fn(q, k, v).backward(g), warmup=warmup, rep=rep, grad_to_none=[q, k, v],
                    return_mode="median")


def device_ceilings() -> dict:
    """Measured bf16 matmul rate (TFLOP/s) and device-to-device copy bandwidth (GB/s, read + write)."""
    from triton.testing import do_bench

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    ms = do_bench(lambda: a @ b, warmup=25, rep=100, return_mode="median")
    x = torch.randn(2**28, device="cuda", dtype=torch.float32)
    y = torch.empty_like(x)
    ms_copy = do_bench(lambda: y.copy_(x), warmup=25, rep=100, return_mode="median")
    return {"bf16_matmul_tflops": 2 * 8192**3 / ms * 1e-9, "copy_gbps": 2 * x.numel() * 4 / ms_copy * 1e-6}


def run_benchmark(headdims=(64, 128), seqlens=(512, 1024, 2048, 4096, 8192, 16384), causals=(False, True),
                  impls=IMPLS, modes=MODES, tokens: int = 16384, hidden: int = 2048, progress: bool = True) -> dict:
    """Run the grid; returns {"info", "ceilings", "rows"}."""
    from tqdm.auto import tqdm

    from seqlab.utils.runinfo import run_info

    cases = [(d, c, n, impl) for d in headdims for c in causals for n in seqlens for impl in impls]
    rows = []
    bar = tqdm(cases, disable=not progress, desc="attention bench")
    for d, c, n, impl in bar:
        bar.set_postfix_str(f"d={d} causal={c} N={n} {impl}")
        rows += bench_case(impl, max(1, tokens // n), n, hidden // d, d, c, modes=modes)
    return {"info": run_info(), "ceilings": device_ceilings(), "protocol": {
        "hidden": hidden, "tokens": tokens, "dtype": "bfloat16",
        "flops": "fwd 4*B*H*N^2*D (halved when causal); bwd 2.5x fwd; fwd_bwd 3.5x fwd",
        "timer": "triton.testing.do_bench median, warmup 25 ms, rep 100 ms"}, "rows": rows}


def format_table(result: dict) -> str:
    rows = [r for r in result["rows"] if r.get("tflops")]
    impls = [i for i in IMPLS if any(r["impl"] == i for r in rows)]
    keys = sorted({(r["headdim"], r["causal"], r["mode"], r["seqlen"]) for r in rows})
    lines = ["d    causal mode     N      " + " ".join(f"{i:>14s}" for i in impls) + "   seqlab/FA2 seqlab/cuDNN"]
    for key in keys:
        vals = {r["impl"]: r["tflops"] for r in rows if (r["headdim"], r["causal"], r["mode"], r["seqlen"]) == key}
        cells = " ".join(f"{vals[i]:14.1f}" if i in vals else f"{'-':>14s}" for i in impls)
        s = vals.get("seqlab")
        r1 = f"{s / vals['sdpa_flash']:10.2f}" if s and vals.get("sdpa_flash") else f"{'-':>10s}"
        r2 = f"{s / vals['sdpa_cudnn']:12.2f}" if s and vals.get("sdpa_cudnn") else f"{'-':>12s}"
        lines.append(f"{key[0]:<4d} {str(key[1]):6s} {key[2]:8s} {key[3]:<6d} {cells}   {r1} {r2}")
    return "\n".join(lines)


def plot(result: dict, path: str) -> None:
    """TFLOP/s against seqlen, one panel per head dim × causal × pass, one line per implementation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r.get("tflops")]
    panels = sorted({(r["headdim"], r["causal"], r["mode"]) for r in rows})
    ncol = 3
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5 * ncol, 3.6 * nrow), squeeze=False)
    for ax, (d, c, m) in zip(axes.flat, panels):
        for impl in IMPLS:
            pts = sorted((r["seqlen"], r["tflops"]) for r in rows
                         if (r["headdim"], r["causal"], r["mode"], r["impl"]) == (d, c, m, impl))
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=impl,
                        linewidth=2.5 if impl == "seqlab" else 1.2)
        ax.set_xscale("log", base=2)
        ax.set_title(f"headdim {d}, {'causal' if c else 'non-causal'}, {m}")
        ax.set_xlabel("seqlen")
        ax.set_ylabel("TFLOP/s")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    dev = result["info"].get("device", "")
    fig.suptitle(f"Attention bf16, hidden 2048, 16k tokens — {dev}")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)


def add_arguments(ap) -> None:
    """The benchmark's command-line options (shared by benchmarks/attention.py and ``seqlab bench attention``)."""
    ap.add_argument("--quick", action="store_true", help="headdim 128, seqlen 1k/4k, fewer implementations")
    ap.add_argument("--headdims", type=int, nargs="*", default=None)
    ap.add_argument("--seqlens", type=int, nargs="*", default=None)
    ap.add_argument("--impls", nargs="*", default=None, choices=IMPLS)
    ap.add_argument("--out", default="results/attention_bench.json")
    ap.add_argument("--plot", default=None, help="PNG path (default: next to --out)")


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="FlashAttention speed benchmark (seqlab vs SDPA backends, Flex)")
    add_arguments(ap)
    return run_from_args(ap.parse_args(argv))


def run_from_args(args) -> int:
    if not torch.cuda.is_available():
        print("the attention benchmark needs a CUDA GPU")
        return 2
    kw = {}
    if args.quick:
        kw = dict(headdims=(128,), seqlens=(1024, 4096), impls=("seqlab", "sdpa_flash", "sdpa_cudnn"))
    if args.headdims:
        kw["headdims"] = tuple(args.headdims)
    if args.seqlens:
        kw["seqlens"] = tuple(args.seqlens)
    if args.impls:
        kw["impls"] = tuple(args.impls)
    result = run_benchmark(**kw)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(format_table(result))
    print(f"ceilings: {result['ceilings']}")
    try:
        plot(result, args.plot or os.path.splitext(args.out)[0] + ".png")
    except ImportError:
        print("matplotlib not installed: no plot")
    return 0
