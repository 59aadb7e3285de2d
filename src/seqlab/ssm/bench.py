"""S4 benchmark suite (``seqlab s4 bench`` / ``benchmarks/s4.py``).

Sections (each row is a dict; every skipped or out-of-memory measurement is recorded as such):

* ``kernel``: kernel generation K = S4.kernel(L) forward+backward, naive PyTorch vs Triton, S4 (NPLR,
  Cauchy) and S4D (Vandermonde), H=256, N=64, L = 1k..64k: median time and peak memory.
* ``layer``: one S4 layer forward+backward against L.
* ``table3``: the paper's efficiency table redone: parameter-matched 4-layer H=256 models (S4,
  Transformer with seqlab FlashAttention, Transformer with math attention), training step
  (forward, backward, AdamW) under bf16 autocast at L = 1k, 4k, 16k, 64k: time and peak memory.
* ``generation``: greedy generation tokens/s of a 6-layer S4 LM in step mode (the step loop replayed
  as a CUDA graph on GPU) vs recomputing the convolutional forward over the whole context per token.

Timing: CUDA events (or perf_counter with synchronisation), warm-up first, median of repeats.
Memory: ``torch.cuda.max_memory_allocated`` above the allocation at the start of the measurement.
"""

from __future__ import annotations

import copy
import datetime
import json
import math
import os
import platform
import statistics
import time

import torch

from seqlab.utils.runinfo import git_commit

from .blocks import SequenceModel
from .kernels import triton_available
from .s4 import S4

KB = 1024


class _Budget:
    """Wall-clock budget: sections check ``left()`` and record skips instead of running over."""

    def __init__(self, seconds: float):
        self.t0, self.seconds = time.perf_counter(), seconds

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.t0)


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time_ms(fn, device, warmup=2, reps=5, max_s=5.0):
    """Median milliseconds of ``fn()`` over ``reps`` runs (fewer if one run is slow)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    t_start = time.perf_counter()
    for _ in range(reps):
        if device.startswith("cuda"):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        else:
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
        if time.perf_counter() - t_start > max_s:
            break
    return statistics.median(times), len(times)


def _peak_mb(fn, device):
    """Peak extra device memory (MiB) while running ``fn`` once (None on CPU)."""
    if not device.startswith("cuda"):
        fn()
        return None
    _sync(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    _sync(device)
    return (torch.cuda.max_memory_allocated() - base) / KB / KB


def _is_oom(exc) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _measure(fn, device, reps=5, max_s=5.0):
    """{'ms', 'reps', 'peak_mib'} or {'status': 'oom'}."""
    try:
        mem = _peak_mb(fn, device)
        ms, n = _time_ms(fn, device, warmup=1, reps=reps, max_s=max_s)
        return {"status": "ok", "ms": ms, "reps": n, "peak_mib": mem}
    except (RuntimeError, torch.OutOfMemoryError) as exc:
        if not _is_oom(exc):
            raise
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        return {"status": "oom", "error": str(exc).splitlines()[0][:200]}


def _rel(a, b):
    return float(torch.linalg.norm((a - b).double()) / torch.linalg.norm(b.double()))


# ------------------------------------------------------------------------------------------ sections


def bench_kernel(device, lengths, H=256, N=64, budget=None, progress=None):
    """Kernel generation (forward + backward of S4.kernel(L)), naive vs Triton, NPLR and diag."""
    rows = []
    has_triton = triton_available(device)
    for mode in ("nplr", "diag"):
        # variants: the default Triton path and its alternative (same layer, env switch)
        variant = {"nplr": ("triton-unfused", "SEQLAB_S4_FUSED", "0"),
                   "diag": ("triton-unfused", "SEQLAB_S4D_FUSED", "0")}[mode]
        impls = ["naive", "triton", variant[0]] if has_triton else ["naive"]
        torch.manual_seed(0)
        layers = {impl: S4(H, d_state=N, mode=mode, kernel_impl=impl.split("-")[0]).to(device) for impl in impls}
        for impl in impls[1:]:
            layers[impl].load_state_dict(layers[impls[0]].state_dict())
        # correctness on the device first (before the lengths grow the NPLR kernel length)
        if has_triton:
            rows += _kernel_check(layers, mode, min(lengths[0], 2048))
            if mode == "diag":  # the unfused S4D path (discretise + Vandermonde op) too
                with _env({"SEQLAB_S4D_FUSED": "0"}):
                    rows += _kernel_check(layers, mode, min(lengths[0], 2048))
        for L in lengths:
            for impl in impls:
                row = {"section": "kernel", "mode": mode, "impl": impl, "H": H, "N": N, "L": L}
                if budget is not None and budget.left() < 0:
                    rows.append({**row, "status": "skipped (time budget)"})
                    continue
                layer = layers[impl]
                env = {variant[1]: variant[2]} if impl == variant[0] else {}
                with _env(env):
                    layer.kernel(L)  # fix the kernel length (NPLR re-expresses C~ once) outside the timing

                    def run(layer=layer, L=L):
                        layer.zero_grad(set_to_none=True)
                        k = layer.kernel(L)
                        k.square().sum().backward()

                    def fwd(layer=layer, L=L):
                        with torch.no_grad():
                            layer.kernel(L)

                    res = _measure(run, device)
                    if res["status"] == "ok":
                        res["fwd_ms"] = _time_ms(fwd, device, warmup=1, reps=5)[0]
                rows.append({**row, **res})
                if progress:
                    progress.update(1)
        if mode == "nplr":
            rows += _bench_cauchy_op(device, lengths, impls[:2], H, N, budget)
    return rows


class _env:
    """Temporarily set environment variables (the kernel-variant switches are read at call time)."""

    def __init__(self, values):
        self.values, self.saved = values, {}

    def __enter__(self):
        for k, v in self.values.items():
            self.saved[k] = os.environ.get(k)
            os.environ[k] = v

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _kernel_check(layers, mode, L):
    """Triton vs naive kernel and parameter gradients on the device (random output gradient).

    ``rel_err``/``grad_rel_err``: Triton (float32) against the naive path in float32, so they include
    the naive path's own float32 error; ``*_f64`` fields: Triton and naive float32 each against the naive
    path in float64 (same parameters), the accuracy that matters."""
    row = {"section": "kernel_check", "mode": mode, "L": L}
    try:
        ta, na = layers["triton"], layers["naive"]
        g = torch.randn(na.kernel(L).shape, device=ta.log_dt.device)
        for m in (ta, na):
            m.zero_grad(set_to_none=True)
            (m.kernel(L) * g).sum().backward()
        with torch.no_grad():
            a, b = ta.kernel(L), na.kernel(L)
        grads = {n: _rel(p.grad, q.grad) for (n, p), q in zip(ta.named_parameters(), na.parameters())
                 if q.grad is not None}
        f64 = {}
        try:
            ref = copy.deepcopy(na).double()
            ref.zero_grad(set_to_none=True)
            k64 = ref.kernel(L)
            (k64 * g.double()).sum().backward()
            for name, m, k in (("triton", ta, a), ("naive", na, b)):
                f64[f"{name}_rel_err_f64"] = _rel(k, k64.detach())
                f64[f"{name}_grad_rel_err_f64"] = {
                    n: _rel(p.grad, q.grad) for (n, p), q in zip(m.named_parameters(), ref.parameters())
                    if q.grad is not None}
            del ref, k64
        except (RuntimeError, torch.OutOfMemoryError) as exc:
            f64 = {"f64_status": f"error: {type(exc).__name__}: {str(exc)[:200]}"}
        for m in (ta, na):
            m.zero_grad(set_to_none=True)
    except (RuntimeError, torch.OutOfMemoryError) as exc:
        return [{**row, "status": f"error: {type(exc).__name__}: {str(exc)[:200]}"}]
    fused = bool(ta._fused_nplr() if mode == "nplr" else ta._fused_diag())
    return [{**row, "status": "ok", "rel_err": _rel(a, b), "grad_rel_err": grads, "fused": fused, **f64}]


def _bench_cauchy_op(device, lengths, impls, H, N, budget):
    """The Cauchy product alone, shaped as in an S4 kernel (4 vectors, N full poles, L/2+1 nodes)."""
    from .kernels import cauchy

    rows = []
    g = torch.Generator(device="cpu").manual_seed(0)
    for L in lengths:
        Lf = L // 2 + 1
        v = torch.randn(4, H, N, dtype=torch.complex64, generator=g).to(device).requires_grad_()
        w = torch.complex(-torch.rand(H, N, generator=g) * 0.1, torch.randn(H, N, generator=g)).to(device)
        w.requires_grad_()
        k = torch.arange(Lf, dtype=torch.float32)
        z = torch.complex(torch.zeros(Lf), -torch.tan(torch.pi * k / L).clamp(-1e6, 1e6)).to(device)
        for impl in impls:
            row = {"section": "cauchy_op", "impl": impl, "H": H, "N": N, "L": L, "nodes": Lf}
            if budget is not None and budget.left() < 0:
                rows.append({**row, "status": "skipped (time budget)"})
                continue

            def run(impl=impl, v=v, z=z, w=w):
                out = cauchy(v, z, w, impl=impl)
                gv, gw = torch.autograd.grad(out.abs().square().sum(), (v, w))

            rows.append({**row, **_measure(run, device)})
    return rows


def bench_layer(device, lengths, H=256, N=64, batch=4, budget=None, progress=None):
    """One S4 layer (default kernel path) forward + backward against L."""
    rows = []
    for mode in ("nplr", "diag"):
        torch.manual_seed(0)
        layer = S4(H, d_state=N, mode=mode).to(device)
        for L in lengths:
            row = {"section": "layer", "mode": mode, "impl": layer._impl(layer.log_dt), "H": H, "N": N,
                   "L": L, "batch": batch}
            if budget is not None and budget.left() < 0:
                rows.append({**row, "status": "skipped (time budget)"})
                continue
            x = torch.randn(batch, L, H, device=device, requires_grad=True)

            def run(layer=layer, x=x):
                layer.zero_grad(set_to_none=True)
                y, _ = layer(x)
                y.square().mean().backward()

            rows.append({**row, **_measure(run, device)})
            if progress:
                progress.update(1)
    return rows


def _models(H=256, n_layers=4, N=64, vocab=256, attn_available=True):
    from seqlab.models.transformer import Transformer, transformer_ff_for_params

    s4 = SequenceModel(0, vocab, d_model=H, n_layers=n_layers, vocab_size=vocab, d_state=N, ff_expand=2)
    n_s4 = sum(p.numel() for p in s4.parameters())
    d_ff = transformer_ff_for_params(n_s4, 0, vocab, H, n_layers, vocab_size=vocab)
    models = {"S4": s4}
    kw = dict(d_model=H, n_layers=n_layers, n_heads=4, d_ff=d_ff, vocab_size=vocab, causal=True)
    if attn_available:
        models["Transformer (seqlab attention)"] = Transformer(0, vocab, attn_impl="seqlab", **kw)
    models["Transformer (math attention)"] = Transformer(0, vocab, attn_impl="math", **kw)
    return models, d_ff


def _attention_available():
    try:
        from seqlab.attention import MultiheadAttention  # noqa: F401

        return True, ""
    except Exception as exc:  # noqa: BLE001 - any import failure means the rows are skipped
        return False, f"{type(exc).__name__}: {exc}"


def bench_table3(device, lengths, tokens_per_batch=16384, H=256, n_layers=4, budget=None, progress=None):
    """Training step (fwd+bwd+AdamW, bf16 autocast on CUDA) of parameter-matched models at each L."""
    ok, why = _attention_available()
    models, d_ff = _models(H, n_layers, attn_available=ok)
    rows = []
    names = list(models)
    if not ok:
        names.insert(1, "Transformer (seqlab attention)")
    for L in lengths:
        batch = max(1, tokens_per_batch // L)
        for name in names:
            row = {"section": "table3", "model": name, "L": L, "batch": batch, "H": H, "layers": n_layers}
            if name not in models:
                rows.append({**row, "status": f"skipped (seqlab.attention not importable: {why})"})
                continue
            model = models[name]
            row["params"] = sum(p.numel() for p in model.parameters())
            if name.startswith("Transformer"):
                row["d_ff"] = d_ff
            if budget is not None and budget.left() < 0:
                rows.append({**row, "status": "skipped (time budget)"})
                continue
            model.to(device).train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            tok = torch.randint(0, 256, (batch, L), device=device)
            tgt = torch.randint(0, 256, (batch, L), device=device)
            use_amp = device.startswith("cuda")

            def step(model=model, opt=opt, tok=tok, tgt=tgt, use_amp=use_amp):
                opt.zero_grad(set_to_none=True)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                    out, _ = model(tok)
                    loss = torch.nn.functional.cross_entropy(out.float().flatten(0, 1), tgt.flatten())
                loss.backward()
                opt.step()

            res = _measure(step, device, reps=5, max_s=8.0)
            res["dtype"] = "bf16 autocast" if use_amp else "float32"
            rows.append({**row, **res})
            model.to("cpu")
            del opt
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
            if progress:
                progress.update(1)
    # speed ratios like the paper's table (Transformer time / S4 time at each L)
    for L in lengths:
        by = {r["model"]: r for r in rows if r["L"] == L and r.get("status") == "ok"}
        s4 = by.get("S4")
        for name, r in by.items():
            if s4 and name != "S4":
                r["s4_speedup"] = r["ms"] / s4["ms"]
                if r.get("peak_mib") and s4.get("peak_mib"):
                    r["s4_memory_ratio"] = r["peak_mib"] / s4["peak_mib"]
    return rows


class _GraphedGenerator:
    """Greedy step-mode decoding; on CUDA ``tokens_per_replay`` tokens (all layers + argmax each) are one
    CUDA-graph replay. With one token per replay the new states are copied back into the graph's static
    state buffers every token; with more, only after the last of them (the copies are a graph artifact)."""

    def __init__(self, model, state, first_tok, device, tokens_per_replay=1):
        self.model, self.device, self.k = model, device, tokens_per_replay
        self.tok = first_tok.clone()
        self.state = [s.clone() for s in state]
        self.graph = None
        if device.startswith("cuda"):
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            saved = [s.clone() for s in self.state], self.tok.clone()
            with torch.cuda.stream(side):
                for _ in range(3):
                    self._eager()
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self._eager()
            for s, s0 in zip(self.state, saved[0]):
                s.copy_(s0)
            self.tok.copy_(saved[1])

    def _eager(self):
        tok, state = self.tok, self.state
        for _ in range(self.k):
            out, state = self.model.step(tok, state)
            tok = out.argmax(-1)
        for s, n in zip(self.state, state):
            s.copy_(n)
        self.tok.copy_(tok)
        self.logits = out

    def next(self):
        if self.graph is not None:
            self.graph.replay()
        else:
            self._eager()
        return self.tok


@torch.no_grad()
def _fused_block_check(device, mode, H=256, N=64, batch=2, steps=20):
    """Max relative error (output, final state) of the fused S4Block step against the unfused one."""
    from .blocks import S4Block

    torch.manual_seed(1)
    blk = S4Block(H, d_state=N, mode=mode).to(device).eval()
    xs = torch.randn(steps, batch, H, device=device)
    outs = []
    for env in ({}, {"SEQLAB_S4_BLOCK_FUSED": "0"}):
        with _env(env):
            st, ys = blk.default_state(batch), []
            for x in xs:
                y, st = blk.step(x, st)
                ys.append(y)
        outs.append((torch.stack(ys), st))
    (y1, s1), (y0, s0) = outs
    err = max(_rel(y1[i], y0[i]) for i in range(steps))
    state_err = _rel(torch.view_as_real(s1), torch.view_as_real(s0))
    return {"mode": mode, "steps": steps, "batch": batch, "y_rel_err": err, "state_rel_err": state_err,
            "fused": _block_fused(blk)}


def _block_fused(blk):
    from ._block_step import block_step_applicable

    c = blk.layer._step_cache
    return bool(block_step_applicable(blk) and c is not None and c["fused"])


def _time_generator(gen, n, device):
    def run_steps(gen=gen, n=n // gen.k):
        for _ in range(n):
            gen.next()

    ms, _ = _time_ms(run_steps, device, warmup=1, reps=3)
    return (n // gen.k) * gen.k / (ms / 1e3)


@torch.no_grad()
def bench_generation(device, contexts, n_layers=6, H=256, N=64, vocab=256, new_tokens=64, budget=None,
                     progress=None, unroll=8):
    """Tokens/s of step-mode generation vs recomputing the convolution over the whole context per token.

    ``step_tokens_per_s`` (and ``speedup``): one token per CUDA-graph replay, the protocol of runs 1-7,
    with the fused block step (two launches per block) when it applies; ``step_unfused_tokens_per_s``: the
    same with ``SEQLAB_S4_BLOCK_FUSED=0`` (the per-op step of runs 1-7); ``step_unrolled_tokens_per_s``:
    ``unroll`` tokens per replay. The first row also carries the fused-vs-unfused block check."""
    torch.manual_seed(0)
    model = SequenceModel(0, vocab, d_model=H, n_layers=n_layers, vocab_size=vocab, d_state=N).to(device).eval()
    rows = []
    for L in contexts:
        row = {"section": "generation", "context": L, "layers": n_layers, "H": H, "N": N, "batch": 1}
        if budget is not None and budget.left() < 0:
            rows.append({**row, "status": "skipped (time budget)"})
            continue
        if not rows:
            row["fused_block_check"] = [_fused_block_check(device, m, H=H, N=N) for m in ("nplr", "diag")]
        ctx = torch.randint(0, vocab, (1, L), device=device)
        # prefill: one convolutional pass that also returns the final states
        t = time.perf_counter()
        out, state = model(ctx, return_state=True)
        _sync(device)
        row["prefill_ms"] = (time.perf_counter() - t) * 1e3
        model.setup_step()
        first = out[:, -1].argmax(-1)
        gen = _GraphedGenerator(model, state, first, device)
        # correctness: the step logits for the first new token vs a full forward on context + token
        gen.next()
        full, _ = model(torch.cat([ctx, first[:, None]], 1))
        row["step_vs_conv_rel_err"] = _rel(gen.logits[0], full[0, -1])
        gen = _GraphedGenerator(model, state, first, device)
        row["step_tokens_per_s"] = _time_generator(gen, new_tokens, device)
        # read after stepping: the full forward above may have reset the step cache (NPLR kernel length)
        row["step_fused_block"] = _block_fused(model.blocks[0])
        row["step_graphed"] = gen.graph is not None
        with _env({"SEQLAB_S4_BLOCK_FUSED": "0"}):
            gen0 = _GraphedGenerator(model, state, first, device)
            row["step_unfused_tokens_per_s"] = _time_generator(gen0, new_tokens, device)
        genk = _GraphedGenerator(model, state, first, device, tokens_per_replay=unroll)
        row["step_unrolled_tokens_per_s"] = _time_generator(genk, new_tokens, device)
        row["unroll"] = unroll
        del gen0, genk
        seq = torch.cat([ctx, first[:, None]], 1)
        n_conv = 8 if L <= 4096 else 4  # host-bound at short contexts: enough tokens for a stable median

        def run_conv(seq=seq, n=n_conv, L=L):
            s = seq
            for _ in range(n):
                o, _ = model(s[:, -L:])
                s = torch.cat([s, o[:, -1:].argmax(-1)], 1)

        ms_conv, _ = _time_ms(run_conv, device, warmup=1, reps=5, max_s=20.0)
        row["conv_tokens_per_s"] = n_conv / (ms_conv / 1e3)
        row["speedup"] = row["step_tokens_per_s"] / row["conv_tokens_per_s"]
        row["speedup_unfused"] = row["step_unfused_tokens_per_s"] / row["conv_tokens_per_s"]
        row["speedup_unrolled"] = row["step_unrolled_tokens_per_s"] / row["conv_tokens_per_s"]
        row["status"] = "ok"
        rows.append(row)
        if progress:
            progress.update(1)
    return rows


# ------------------------------------------------------------------------------------------ driver


def environment(device) -> dict:
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or "cpu",
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    commit = git_commit()
    env["git_commit"] = None if commit == "unknown" else commit
    return env


SIZES = {
    "full": {
        "kernel": [1024, 2048, 4096, 8192, 16384, 32768, 65536],
        "layer": [1024, 4096, 16384, 65536],
        "table3": [1024, 4096, 16384, 65536],
        "generation": [1024, 2048, 4096, 8192, 16384],
    },
    "quick": {"kernel": [128, 256], "layer": [128, 256], "table3": [64, 128], "generation": [64, 128]},
}


def run_all(device="cuda", quick=False, sections=("kernel", "generation", "table3", "layer"),
            budget_s=480.0, out_json=None, out_png=None, show_progress=True) -> dict:
    """Run the chosen sections; returns {'env': ..., 'rows': [...]} and writes JSON/PNG if asked."""
    sizes = SIZES["quick" if quick else "full"]
    budget = _Budget(budget_s)
    env = environment(device)
    env.update({"quick": quick, "budget_s": budget_s})
    rows = []
    small = {"H": 32, "N": 16} if quick else {}
    total = sum(len(sizes[s]) * {"kernel": 6, "layer": 2, "table3": 3, "generation": 1}[s] for s in sections)
    bar = None
    if show_progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=total, desc="s4 bench", unit="case")
        except ImportError:
            bar = None
    result = {"env": env, "rows": rows}

    def save():
        if out_json:
            os.makedirs(os.path.dirname(os.path.abspath(out_json)), exist_ok=True)
            with open(out_json, "w") as f:
                json.dump(result, f, indent=1, default=str)

    for sec in sections:
        t = time.perf_counter()
        try:
            _run_section(sec, device, sizes, budget, bar, small, quick, rows)
        except Exception as exc:  # noqa: BLE001 - record the failure, keep the other sections
            import traceback

            rows.append({"section": sec, "status": f"error: {type(exc).__name__}: {exc}"[:500],
                         "traceback": traceback.format_exc()[-2000:]})
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
        env[f"{sec}_seconds"] = round(time.perf_counter() - t, 1)
        save()
    if bar is not None:
        bar.close()
    if out_png:
        env["plot"] = plot(result, out_png)
        save()
    return result


def _run_section(sec, device, sizes, budget, bar, small, quick, rows):
    if sec == "kernel":
        rows += bench_kernel(device, sizes["kernel"], budget=budget, progress=bar, **small)
    elif sec == "layer":
        rows += bench_layer(device, sizes["layer"], budget=budget, progress=bar, **small)
    elif sec == "table3":
        kw = {"H": 32, "tokens_per_batch": 256} if quick else {}
        rows += bench_table3(device, sizes["table3"], budget=budget, progress=bar, **kw)
    elif sec == "generation":
        kw = {"H": 32, "N": 16, "n_layers": 2, "new_tokens": 8} if quick else {}
        rows += bench_generation(device, sizes["generation"], budget=budget, progress=bar, **kw)
    else:
        raise ValueError(f"unknown section {sec!r}")


def plot(result: dict, path: str) -> bool:
    """Four panels (kernel time/memory, Table 3 step time, generation tokens/s); False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = result["rows"]
    fig, ax = plt.subplots(1, 4, figsize=(20, 4.5))
    for mode in ("nplr", "diag"):
        for impl in ("naive", "triton", "triton-unfused", "triton-fused", "triton-direct"):
            rs = [r for r in rows if r["section"] == "kernel" and r.get("mode") == mode and r.get("impl") == impl
                  and r.get("status") == "ok"]
            if rs:
                ax[0].loglog([r["L"] for r in rs], [r["ms"] for r in rs], "o-", label=f"{mode} {impl}")
                if rs[0].get("peak_mib") is not None:
                    ax[1].loglog([r["L"] for r in rs], [r["peak_mib"] for r in rs], "o-", label=f"{mode} {impl}")
    ax[0].set(title="kernel generation fwd+bwd", xlabel="L", ylabel="ms")
    ax[1].set(title="kernel generation peak memory", xlabel="L", ylabel="MiB")
    for name in sorted({r["model"] for r in rows if r["section"] == "table3" and "model" in r}):
        rs = [r for r in rows if r["section"] == "table3" and r.get("model") == name and r.get("status") == "ok"]
        if rs:
            ax[2].loglog([r["L"] for r in rs], [r["ms"] for r in rs], "o-", label=name)
    ax[2].set(title="training step (4 layers, H=256)", xlabel="L", ylabel="ms")
    rs = [r for r in rows if r["section"] == "generation" and r.get("status") == "ok"]
    if rs:
        ax[3].loglog([r["context"] for r in rs], [r["step_tokens_per_s"] for r in rs], "o-", label="step mode")
        if all("step_unfused_tokens_per_s" in r for r in rs):
            ax[3].loglog([r["context"] for r in rs], [r["step_unfused_tokens_per_s"] for r in rs], "o--",
                         label="step mode, unfused block")
        if all("step_unrolled_tokens_per_s" in r for r in rs):
            ax[3].loglog([r["context"] for r in rs], [r["step_unrolled_tokens_per_s"] for r in rs], "o:",
                         label=f"step mode, {rs[0].get('unroll')} tokens per graph")
        ax[3].loglog([r["context"] for r in rs], [r["conv_tokens_per_s"] for r in rs], "o-", label="recompute conv")
    ax[3].set(title="generation", xlabel="context", ylabel="tokens/s")
    for a in ax:
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=7)
        a.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"S4 benchmarks on {result['env'].get('device')}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def summary_lines(result: dict) -> list[str]:
    """Short human-readable table of the main numbers."""
    out = []
    for r in result["rows"]:
        s = r["section"]
        if str(r.get("status", "")).startswith("error"):
            out.append(f"{s:<7} {r['status'][:200]}")
            continue
        if s == "kernel":
            val = (f"{r['ms']:.3f} ms fwd+bwd, {r.get('fwd_ms', math.nan):.3f} ms fwd, peak "
                   f"{r['peak_mib'] if r.get('peak_mib') is None else round(r['peak_mib'], 1)} MiB"
                   if r.get("status") == "ok" else r.get("status"))
            out.append(f"kernel  {r['mode']:<5} {r['impl']:<14} L={r['L']:<6} {val}")
        elif s == "cauchy_op":
            val = (f"{r['ms']:.3f} ms fwd+bwd, peak {r.get('peak_mib') and round(r['peak_mib'], 1)} MiB"
                   if r.get("status") == "ok" else r.get("status"))
            out.append(f"cauchy  op    {r['impl']:<7} L={r['L']:<6} {val}")
        elif s == "kernel_check":
            ge = max(r.get("grad_rel_err", {}).values(), default=float("nan"))
            out.append(f"check   {r['mode']:<5} triton vs naive rel err {r['rel_err']:.2e}, grads max {ge:.2e} "
                       f"(L={r['L']}, fused={r.get('fused')})")
            if "triton_rel_err_f64" in r:
                t64 = max(r["triton_grad_rel_err_f64"].values(), default=float("nan"))
                n64 = max(r["naive_grad_rel_err_f64"].values(), default=float("nan"))
                out.append(f"check   {r['mode']:<5} vs float64 naive: triton {r['triton_rel_err_f64']:.2e} (grads max "
                           f"{t64:.2e}), naive float32 {r['naive_rel_err_f64']:.2e} (grads max {n64:.2e})")
        elif s == "layer":
            val = f"{r['ms']:.3f} ms, peak {r.get('peak_mib')}" if r.get("status") == "ok" else r.get("status")
            out.append(f"layer   {r['mode']:<5} L={r['L']:<6} {val}")
        elif s == "table3":
            val = (f"{r['ms']:.2f} ms, peak {r.get('peak_mib') and round(r['peak_mib'])} MiB, "
                   f"S4 speedup {r.get('s4_speedup', float('nan')):.2f}" if r.get("status") == "ok"
                   else r.get("status"))
            out.append(f"table3  {r['model']:<31} L={r['L']:<6} B={r['batch']:<3} {val}")
        elif s == "generation":
            val = (f"step {r['step_tokens_per_s']:.0f} tok/s, conv {r['conv_tokens_per_s']:.1f} tok/s, "
                   f"x{r['speedup']:.1f}, err {r['step_vs_conv_rel_err']:.1e}" if r.get("status") == "ok"
                   else r.get("status"))
            if r.get("status") == "ok" and "step_unfused_tokens_per_s" in r:
                val += (f"; unfused step {r['step_unfused_tokens_per_s']:.0f} tok/s (x{r['speedup_unfused']:.1f}), "
                        f"{r['unroll']} tok/graph {r['step_unrolled_tokens_per_s']:.0f} tok/s "
                        f"(x{r['speedup_unrolled']:.1f})")
            out.append(f"gen     context={r['context']:<6} {val}")
            for c in r.get("fused_block_check", []):
                out.append(f"gen     fused block step {c['mode']:<5} vs unfused ({c['steps']} steps, B={c['batch']}): "
                           f"y {c['y_rel_err']:.1e}, state {c['state_rel_err']:.1e}, fused={c['fused']}")
    return out
