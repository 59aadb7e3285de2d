"""Host-side integer helpers for kernel launches.

``triton.cdiv`` and ``triton.next_power_of_2`` are constexpr functions in recent Triton (about 5 µs per call
from Python on the CPU here), and launchers call them several times per step; these are plain arithmetic.
"""

from __future__ import annotations


def cdiv(a: int, b: int) -> int:
    """Ceiling of a / b for positive b."""
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    """Smallest power of two >= n (1 for n <= 1)."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()
