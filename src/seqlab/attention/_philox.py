"""Counter-based dropout RNG shared by the Triton kernels and the PyTorch path.

Philox-4x32-10 (Salmon et al., SC'11). Each attention-score element (query head ``bh``, query row
``i``, key column ``j``) gets the counter ``(j, i, bh, 0)`` under the 64-bit key ``seed``; the
first output word, shifted to 24 bits, is a uniform number in [0, 1). The element is kept when that
number is >= ``dropout_p``. Because the mask is a pure function of (seed, bh, i, j), the backward
pass regenerates it instead of storing an N×N mask, and the NumPy mirror below reproduces the
kernels' mask bit for bit (used by the CPU path and by tests).
"""

from __future__ import annotations

import numpy as np

PHILOX_KEY_A = 0x9E3779B9
PHILOX_KEY_B = 0xBB67AE85
PHILOX_ROUND_A = 0xD2511F53
PHILOX_ROUND_B = 0xCD9E8D57
PHILOX_ROUNDS = 10
_M32 = np.uint64(0xFFFFFFFF)


def philox_uniform(seed: int, bh: int | np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) float32 numbers for counters (j, i, bh, 0) under ``seed``.

    ``bh``, ``i`` and ``j`` broadcast against each other (integer arrays); returns float32 of the
    broadcast shape.
    """
    i, j, bh = np.broadcast_arrays(np.asarray(i), np.asarray(j), np.asarray(bh))
    c0 = j.astype(np.uint64) & _M32
    c1 = i.astype(np.uint64) & _M32
    c2 = bh.astype(np.uint64) & _M32
    c3 = np.zeros_like(c0)
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    k0 = np.uint64(seed & 0xFFFFFFFF)
    k1 = np.uint64(seed >> 32)
    ra, rb = np.uint64(PHILOX_ROUND_A), np.uint64(PHILOX_ROUND_B)
    ka, kb = np.uint64(PHILOX_KEY_A), np.uint64(PHILOX_KEY_B)
    s32 = np.uint64(32)
    for _ in range(PHILOX_ROUNDS):
        prod_b = rb * c2  # < 2**64: exact in uint64
        prod_a = ra * c0
        n0 = (prod_b >> s32) ^ c1 ^ k0
        n2 = (prod_a >> s32) ^ c3 ^ k1
        c1 = prod_b & _M32
        c3 = prod_a & _M32
        c0, c2 = n0, n2
        k0 = (k0 + ka) & _M32
        k1 = (k1 + kb) & _M32
    return (c0 >> np.uint64(8)).astype(np.float32) * np.float32(2.0**-24)


def dropout_keep_mask(seed: int, bh: np.ndarray, i: np.ndarray, j: np.ndarray, dropout_p: float) -> np.ndarray:
    """Boolean keep mask (True = kept) matching the kernels for the given counters."""
    return philox_uniform(seed, bh, i, j) >= np.float32(dropout_p)
