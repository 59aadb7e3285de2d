"""Launching compiled Triton kernels without ``JITFunction.run`` on repeat calls.

Triton binds and specialises every argument on every launch (30–100 µs of host time for the ~45
arguments of the attention kernels on the benchmark host), which at short sequence lengths is as long
as the kernels. After the first launch of a signature the compiled kernel is kept, and later launches
with the same signature call its launcher directly.

The signature holds everything Triton specialises a compiled kernel on: the constexprs and launch
options, every integer argument's exact value, and each tensor argument's dtype and 16-byte alignment.
The direct path is taken only on Triton versions where its launcher convention was verified
(``_VERIFIED``), on CUDA, with no launch hook (profiler) registered; ``SEQLAB_FAST_LAUNCH=0`` turns it
off. Anything unexpected from the launcher disables it for the process and falls back to Triton's path.
"""

from __future__ import annotations

import os

import torch
import triton

_VERIFIED = ("3.6",)
_enabled = (os.environ.get("SEQLAB_FAST_LAUNCH", "1") == "1"
            and ".".join(triton.__version__.split(".")[:2]) in _VERIFIED)
_cache: dict = {}
# Exact integer values are part of the key (seqlens, strides), so e.g. varlen training with a new
# max_seqlen every step adds an entry per step: bound the table (entries are cheap to rebuild).
_MAX_ENTRIES = 4096
stats = {"direct": 0, "triton": 0}  # launches taken by each path (diagnostics)
_runtime = None  # (get_current_stream, knobs.runtime), resolved on first use


def enabled() -> bool:
    return _enabled


def set_enabled(flag: bool) -> None:
    """Turn the direct path on or off (tests and benchmarks compare both)."""
    global _enabled
    _enabled = bool(flag)


def _hooks_idle(knobs_runtime) -> bool:
    enter, leave = knobs_runtime.launch_enter_hook, knobs_runtime.launch_exit_hook
    return (enter is None or not getattr(enter, "calls", True)) and (leave is None or not getattr(leave, "calls", True))


def _signature(fn, args, consts):
    parts = [id(fn)]
    for a in args:
        if isinstance(a, torch.Tensor):
            parts.append((a.dtype, a.data_ptr() % 16 == 0))
        elif hasattr(a, "block_shape") and hasattr(a, "base"):  # a TMA TensorDescriptor
            parts.append((a.base.dtype, tuple(a.block_shape)))
        elif isinstance(a, bool) or not isinstance(a, int):
            parts.append(type(a))
        else:
            parts.append(a)
    return tuple(parts), tuple(consts.items())


def launch(fn, grid, args, consts, device_index: int) -> None:
    """``fn[grid](*args, **consts)``; ``args`` are the positional (runtime) arguments, ``consts`` the
    constexprs and launch options by keyword."""
    global _runtime, _enabled
    if not _enabled or device_index < 0:
        stats["triton"] += 1
        fn[grid](*args, **consts)
        return
    if _runtime is None:
        from triton import knobs
        from triton.runtime import driver

        _runtime = (driver.active.get_current_stream, knobs.runtime)
    key = _signature(fn, args, consts)
    hit = _cache.get(key)
    if hit is not None and _hooks_idle(_runtime[1]):
        ck, tail = hit
        try:
            ck.run(grid[0], grid[1] if len(grid) > 1 else 1, grid[2] if len(grid) > 2 else 1,
                   _runtime[0](device_index), ck.function, ck.packed_metadata, None, None, None, *args, *tail)
            stats["direct"] += 1
            return
        except (TypeError, AttributeError, ValueError):  # a launcher with another convention
            _enabled = False
            _cache.clear()
    stats["triton"] += 1
    ck = fn[grid](*args, **consts)
    names = fn.arg_names[len(args):]
    if _enabled and hasattr(ck, "packed_metadata") and hasattr(ck, "function") and all(n in consts for n in names):
        if len(_cache) >= _MAX_ENTRIES:
            _cache.clear()
        _cache[key] = (ck, tuple(consts[n] for n in names))
