"""Host-side timing helpers shared by the GPU benchmark scripts."""

from __future__ import annotations

import time
from collections.abc import Callable


def host_us(fn: Callable[[], object], n: int = 200, warmup: int = 5) -> float:
    """Mean host (CPU) time of one ``fn()`` call in microseconds over ``n`` back-to-back calls.

    The device is drained before the loop and after it, never inside it, so the figure is the launch
    path alone as long as the GPU keeps up (what a short sequence pays before any kernel runs).
    """
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    return (t1 - t0) / n * 1e6
