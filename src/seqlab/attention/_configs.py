"""Tile configurations of the Triton attention kernels.

Lookup order for a launch: an explicit override (used by the tuner), the user's cache of tuned configs
(``$SEQLAB_CACHE_DIR/attention_configs.json``, default ``~/.cache/seqlab``), the table shipped with
seqlab for this GPU (``configs/<device>.json``, produced by ``benchmarks/attention_tune.py``), and a
heuristic. Keys are (kernel, device, head-dim bucket, dtype class, masked, seqlen bucket), so no new
shape ever triggers tuning at call time.
"""

from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path

import torch

_SHIPPED = Path(__file__).with_name("configs")
_override: dict[str, dict] = {}
SEQLEN_BUCKETS = (512, 1024, 2048, 4096, 8192, 16384)


def device_key(device: torch.device | None = None) -> str:
    """A file-name-safe GPU name, e.g. ``nvidia-h100-80gb-hbm3``; ``cpu`` without CUDA."""
    if not torch.cuda.is_available():
        return "cpu"
    if device is None or isinstance(device, int):
        index = torch.cuda.current_device() if device is None else device
    else:
        index = torch.device(device).index
        index = torch.cuda.current_device() if index is None else index
    return _device_key_of(index)


@functools.lru_cache(maxsize=16)
def _device_key_of(index: int) -> str:
    name = torch.cuda.get_device_name(index)
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


@functools.lru_cache(maxsize=256)
def buckets_by_distance(seqlen: int) -> tuple[int, ...]:
    """The seqlen buckets ordered by distance to ``seqlen`` in log space (ties: the shorter first)."""
    return tuple(sorted(SEQLEN_BUCKETS, key=lambda b: (abs(math.log2(max(seqlen, 1)) - math.log2(b)), b)))


def seqlen_bucket(seqlen: int) -> int:
    """The nearest tuned seqlen (in log space)."""
    return buckets_by_distance(seqlen)[0]


@functools.lru_cache(maxsize=1024)
def config_key(kernel: str, headdim: int, dtype: torch.dtype, masked: bool, seqlen: int) -> str:
    hd = max(16, 1 << (headdim - 1).bit_length())
    dt = "fp32" if dtype == torch.float32 else "16bit"
    return f"{kernel}|d{hd}|{dt}|{'masked' if masked else 'full'}|n{seqlen_bucket(seqlen)}"


def _lookup(table: dict, kernel: str, headdim: int, dtype: torch.dtype, masked: bool, seqlen: int) -> dict | None:
    # The nearest bucket with an entry: a table tuned on fewer buckets (an older cache, a head dim
    # tuned at some lengths only) still gives a tuned config rather than the heuristic.
    for bucket in buckets_by_distance(seqlen):
        entry = table.get(config_key(kernel, headdim, dtype, masked, bucket))
        if entry is not None:
            return entry
    return None


def _cache_file() -> Path:
    root = os.environ.get("SEQLAB_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "seqlab")
    return Path(root) / "attention_configs.json"


@functools.lru_cache(maxsize=8)
def _table(dev: str) -> dict:
    table = {}
    shipped = _SHIPPED / f"{dev}.json"
    if shipped.exists():
        table.update(json.loads(shipped.read_text())["configs"])
    cache = _cache_file()
    if cache.exists():
        try:
            table.update(json.loads(cache.read_text()).get(dev, {}))
        except (OSError, ValueError):
            pass  # a corrupt user cache falls back to the shipped table
    return table


def save_to_user_cache(dev: str, configs: dict) -> Path:
    """Merge tuned ``configs`` (key -> config) into the user's cache file."""
    path = _cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except ValueError:
            data = {}
    data.setdefault(dev, {}).update(configs)
    path.write_text(json.dumps(data, indent=1, sort_keys=True))
    _table.cache_clear()
    return path


def set_override(kernel: str, config: dict | None) -> None:
    """Force the config of one kernel (``fwd``, ``dkdv`` or ``dq``); None removes the override."""
    if config is None:
        _override.pop(kernel, None)
    else:
        _override[kernel] = dict(config)


def heuristic(kernel: str, headdim: int, dtype: torch.dtype) -> dict:
    """Defaults chosen by hand on an H100 (bf16), used when no tuned entry exists."""
    f32 = dtype == torch.float32
    if kernel == "fwd":
        if headdim <= 64:
            return dict(BLOCK_M=128, BLOCK_N=32 if f32 else 64, num_warps=4, num_stages=3)
        if headdim <= 128:
            return dict(BLOCK_M=128, BLOCK_N=32 if f32 else 64, num_warps=8, num_stages=3)
        return dict(BLOCK_M=64, BLOCK_N=32 if f32 else 64, num_warps=8, num_stages=2)
    if headdim <= 128:
        if kernel == "dkdv":
            return dict(BLOCK_M=32 if f32 else 64, BLOCK_N=64, num_warps=8, num_stages=2)
        return dict(BLOCK_M=64, BLOCK_N=32 if f32 else 64, num_warps=8, num_stages=2)
    return dict(BLOCK_M=32, BLOCK_N=32, num_warps=8, num_stages=1)


def get_config(kernel: str, headdim: int, dtype: torch.dtype, masked: bool, seqlen: int, device=None) -> dict:
    """Launch config (BLOCK_M, BLOCK_N, num_warps, num_stages) for one kernel launch."""
    if kernel in _override:
        return dict(_override[kernel])
    if dtype != torch.float32:  # fp32 runs IEEE dots with smaller tiles: heuristic only
        entry = _lookup(_table(device_key(device)), kernel, headdim, dtype, masked, seqlen)
        if entry is not None:
            return dict(entry)
    return heuristic(kernel, headdim, dtype)
