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

Kernels with TMA tensor-descriptor arguments go one step further: Triton's launcher wrapper turns each
descriptor into a CUDA tensor map (a driver call plus Python around it) on every launch, 4 per forward and 12
per backward. The tensor map is a pure function of the base address, shape, strides, block shape and the
compiled kernel's layout metadata, so the direct path keeps the expanded arguments per compiled kernel,
keyed by exactly those, and calls the compiled C launcher itself (Triton 3.6's convention, checked when the
kernel is cached; kernels that need global or profile scratch memory keep Triton's launcher).

``launch_tma`` is the TMA kernels' entry point: its descriptors are given as (tensor, rows) pairs, and a
repeat call with the same addresses, layouts and scalars replays the whole argument list of the first one
(tensor maps, pointers as integers, scalars, constexprs) from a table, so it builds no descriptor objects
and computes no signature.
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
    _plans.clear()


def _hooks_idle(knobs_runtime) -> bool:
    enter, leave = knobs_runtime.launch_enter_hook, knobs_runtime.launch_exit_hook
    return (enter is None or not getattr(enter, "calls", True)) and (leave is None or not getattr(leave, "calls", True))


def _signature(fn, args, consts):
    parts = [id(fn)]
    for a in args:
        t = type(a)
        if t is int:
            parts.append(a)
        elif isinstance(a, torch.Tensor):
            parts.append((a.dtype, a.data_ptr() % 16 == 0))
        elif hasattr(a, "block_shape") and hasattr(a, "base"):  # a TMA TensorDescriptor
            parts.append((a.base.dtype, tuple(a.block_shape)))
        elif t is bool or not isinstance(a, int):
            parts.append(t)
        else:  # int subclasses (numpy ints are not ints; IntEnum values are)
            parts.append(int(a))
    return tuple(parts), tuple(consts.items())


# Triton 3.6's launcher: ``CudaLauncher.launch`` is the compiled C function, or (with tensor-descriptor
# arguments) a closure ``inner`` over it that expands descriptors after the 13 base arguments.
_BASE_ARGS = 13
_MAX_DESCS = 256  # expanded descriptors kept per compiled kernel
DIRECT_DESCRIPTORS = True  # benchmarks flip this to time Triton's descriptor wrapper against the cache


class _Direct:
    """The compiled C launcher of one kernel and the positions (with layout metadata) of its descriptors."""

    __slots__ = ("raw", "descs", "expand", "memo", "head")

    def __init__(self, raw, descs: dict, expand, ck):
        self.raw, self.descs, self.expand, self.memo = raw, descs, expand, {}
        run = ck.run
        # (cooperative grid, PDL, global scratch, profile scratch, packed metadata, launch metadata, hooks)
        self.head = (run.launch_cooperative_grid, run.launch_pdl, None, None, ck.packed_metadata, None, None, None)

    def args(self, args: tuple) -> list:
        out = []
        for i, a in enumerate(args):
            meta = self.descs.get(i)
            if meta is None:
                out.append(a)
                continue
            key = (i, a.base.data_ptr(), tuple(a.shape), tuple(a.strides), tuple(a.block_shape), a.padding)
            hit = self.memo.get(key)
            if hit is None:
                if len(self.memo) >= _MAX_DESCS:
                    self.memo.clear()
                hit = self.memo[key] = tuple(self.expand(a, meta))
            out.extend(hit)
        return out


def _direct_for(ck):
    """``_Direct`` for a compiled kernel whose launcher has the verified structure, else None."""
    run = getattr(ck, "run", None)
    fn = getattr(run, "launch", None)
    if fn is None or getattr(run, "global_scratch_size", 1) or getattr(run, "profile_scratch_size", 1):
        return None
    if not hasattr(run, "launch_cooperative_grid") or not hasattr(run, "launch_pdl"):
        return None
    closure = getattr(fn, "__closure__", None)
    if closure is None:  # no descriptors: the C function itself
        return _Direct(fn, {}, None, ck) if callable(fn) else None
    try:
        from triton.backends.nvidia import driver as nvdriver

        cells = dict(zip(fn.__code__.co_freevars, (c.cell_contents for c in closure)))
        raw, where, metas = cells["launcher"], cells["tensordesc_indices"], cells["tensordesc_meta"]
        if getattr(nvdriver, "_BASE_ARGS_FORMAT_LEN", None) != _BASE_ARGS or not callable(raw):
            return None
        order = sorted(where)
        if len(metas) != len(order) or any(not isinstance(m, dict) for m in metas):
            return None  # descriptors decomposed on the device side: keep Triton's path
        return _Direct(raw, dict(zip(order, metas)), nvdriver.make_tensordesc_arg, ck)
    except (KeyError, AttributeError, ImportError, TypeError, ValueError):
        return None


_plans: dict = {}
_MAX_PLANS = 1024
PLANS = True  # benchmarks flip this to time launch_tma's replay table against building each launch


def launch_tma(fn, grid, descs, args, consts, make_desc, device_index: int) -> None:
    """``fn[grid](*[make_desc(t, rows) for t, rows in descs], *args, **consts)``, where the kernel takes its TMA
    descriptors first. Replays the launch from ``_plans`` when every descriptor's tensor (address, dtype, shape,
    strides) and rows, every other argument (tensor addresses and dtypes, scalar values), the grid, the
    constexprs and the device match an earlier call."""
    if not (_enabled and PLANS and DIRECT_DESCRIPTORS) or device_index < 0:
        launch(fn, grid, tuple(make_desc(t, rows) for t, rows in descs) + tuple(args), consts, device_index)
        return
    key = (id(fn), grid, device_index, tuple(consts.items()),
           tuple((t.data_ptr(), t.dtype, t.shape, t.stride(), rows) for t, rows in descs),
           tuple((a.data_ptr(), a.dtype) if isinstance(a, torch.Tensor) else (type(a), a) for a in args))
    plan = _plans.get(key)
    if plan is not None and _hooks_idle(_runtime[1]):
        raw, function, rest, _ = plan
        try:
            raw(grid[0], grid[1], grid[2], _runtime[0](device_index), function, *rest)
            stats["direct"] += 1
            return
        except (TypeError, ValueError):  # a launcher with another convention: Triton's path from now on
            set_enabled(False)
    full = tuple(make_desc(t, rows) for t, rows in descs) + tuple(args)
    launch(fn, grid, full, consts, device_index)
    if not _enabled or len(grid) != 3:
        return
    hit = _cache.get(_signature(fn, full, consts))
    if hit is None or hit[2] is None:
        return
    ck, tail, direct = hit
    # The C launcher takes an integer wherever a pointer goes, so no tensor is kept alive by the table.
    expanded = [a.data_ptr() if isinstance(a, torch.Tensor) else a for a in direct.args(full)]
    if len(_plans) >= _MAX_PLANS:
        _plans.clear()
    # (the compiled kernel rides along so that its module, which owns ``function``, lives as long as the plan)
    _plans[key] = (direct.raw, ck.function, (*direct.head, *expanded, *tail), ck)


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
        ck, tail, direct = hit
        gx, gy, gz = grid[0], grid[1] if len(grid) > 1 else 1, grid[2] if len(grid) > 2 else 1
        try:
            if direct is not None and not direct.descs:  # pointer kernels: the arguments go as they are
                direct.raw(gx, gy, gz, _runtime[0](device_index), ck.function, *direct.head, *args, *tail)
            elif direct is not None and DIRECT_DESCRIPTORS:
                direct.raw(gx, gy, gz, _runtime[0](device_index), ck.function, *direct.head, *direct.args(args),
                           *tail)
            else:
                ck.run(gx, gy, gz, _runtime[0](device_index), ck.function, ck.packed_metadata, None, None, None,
                       *args, *tail)
            stats["direct"] += 1
            return
        except (TypeError, AttributeError, ValueError):  # a launcher with another convention
            _enabled = False
            _cache.clear()
            _plans.clear()
    stats["triton"] += 1
    ck = fn[grid](*args, **consts)
    names = fn.arg_names[len(args):]
    if _enabled and hasattr(ck, "packed_metadata") and hasattr(ck, "function") and all(n in consts for n in names):
        if len(_cache) >= _MAX_ENTRIES:
            _cache.clear()
        _cache[key] = (ck, tuple(consts[n] for n in names), _direct_for(ck))
