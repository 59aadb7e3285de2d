"""HiPPO transition matrices, their normal-plus-low-rank (NPLR) forms and the S4D diagonal inits.

Conventions (all continuous-time, ``x'(t) = A x(t) + B u(t)``):

* :func:`transition` returns real ``A`` (N, N) and ``B`` (N,) in float64 numpy.
* :func:`rank_correction` returns real ``P`` (r, N) such that ``A + P^T P`` (i.e. ``A + sum_i p_i p_i^T``)
  is a *normal* matrix: a multiple of the identity plus a skew-symmetric matrix.
* :func:`nplr` eigendecomposes that normal matrix in float64: ``A = V (diag(Lambda) - P~ P~^*) V^*`` with
  ``P~ = V^* P``, ``B~ = V^* B``. With ``halve=True`` only one eigenvalue of each conjugate pair is
  kept (the one with positive imaginary part), since the other half is its complex conjugate.
* :func:`diag_init` returns the S4D initialisations (Lambda, B) of N//2 complex modes.

Everything here is plain float64 numpy / torch so that tests can compare against closed forms.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

__all__ = [
    "transition",
    "rank_correction",
    "nplr",
    "NPLR",
    "diag_init",
    "MEASURES",
    "DIAG_INITS",
]

MEASURES = ("legs", "legt", "fout")
DIAG_INITS = ("legs", "lin", "inv", "real")


def _check_n(N, name="N"):
    if isinstance(N, bool) or not isinstance(N, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(N).__name__}")
    if N < 1:
        raise ValueError(f"{name} must be >= 1, got {N}")


def transition(measure: str, N: int) -> tuple[np.ndarray, np.ndarray]:
    """HiPPO transition ``(A, B)`` for ``measure`` in {'legs', 'legt', 'fout'}.

    Returns float64 arrays ``A`` (N, N) and ``B`` (N,).

    * ``legs`` (scaled Legendre): ``A[n,k] = -sqrt(2n+1) sqrt(2k+1)`` for n > k, ``-(n+1)`` for n = k,
      0 above the diagonal; ``B[n] = sqrt(2n+1)``.
    * ``legt`` (translated Legendre, window 1, halved to the timescale S4 uses):
      ``A[n,k] = -0.5 sqrt(2n+1) sqrt(2k+1) * (1 if n >= k else (-1)^(n-k))``, ``B[n] = 0.5 sqrt(2n+1)``.
    * ``fout`` (translated Fourier): frequencies ``pi * k`` in 2x2 rotation blocks on the
      sub/super-diagonal, minus the rank-one term ``B B^T``; ``B = [1, 0, sqrt2, 0, sqrt2, ...]``
      (cos entries ``sqrt2``, the constant entry 1).
    """
    _check_n(N)
    if measure == "legs":
        q = np.arange(N, dtype=np.float64)
        r = np.sqrt(2 * q + 1)
        A = -np.tril(np.outer(r, r), -1) - np.diag(q + 1)
        B = r.copy()
    elif measure == "legt":
        q = np.arange(N, dtype=np.float64)
        r = np.sqrt(2 * q + 1)
        n, k = np.meshgrid(q, q, indexing="ij")
        sign = np.where(n >= k, 1.0, (-1.0) ** (n - k))
        A = -0.5 * r[:, None] * sign * r[None, :]
        B = 0.5 * r
    elif measure == "fout":
        if N % 2:
            raise ValueError(f"fout needs an even N (cos/sin pairs), got N={N}")
        freqs = np.arange(N // 2, dtype=np.float64)
        # Off-diagonal entries couple cos_k (even index) and sin_k (odd index) with frequency 2*pi*k/2.
        d = np.stack([np.zeros(N // 2), freqs], axis=-1).reshape(-1)[1:]
        A = np.pi * (-np.diag(d, 1) + np.diag(d, -1))
        B = np.zeros(N)
        B[0::2] = np.sqrt(2.0)
        B[0] = 1.0
        A = A - np.outer(B, B)
    else:
        raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
    return A, B


def rank_correction(measure: str, N: int) -> np.ndarray:
    """Low-rank ``P`` (r, N), float64, with ``A + P^T P`` normal (identity multiple + skew-symmetric).

    legs: r = 1, ``P = sqrt(n + 1/2)``. legt: r = 2, ``sqrt(2n+1)/sqrt2`` split into its even and odd
    entries. fout: r = 1, ``P = B``.
    """
    _check_n(N)
    if measure == "legs":
        return np.sqrt(0.5 + np.arange(N, dtype=np.float64))[None, :]
    if measure == "legt":
        pl = np.sqrt(1 + 2 * np.arange(N, dtype=np.float64)) / np.sqrt(2.0)
        p0, p1 = pl.copy(), pl.copy()
        p0[0::2] = 0.0
        p1[1::2] = 0.0
        return np.stack([p0, p1])
    if measure == "fout":
        return transition("fout", N)[1][None, :]
    raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")


class NPLR(NamedTuple):
    """Normal-plus-low-rank form ``A = V (diag(Lambda) - P P^*) V^*`` (complex128 torch tensors).

    Lambda (M,), P (r, M), B (M,), V (N, M) where M = N//2 if halved else N.
    """

    Lambda: torch.Tensor
    P: torch.Tensor
    B: torch.Tensor
    V: torch.Tensor
    halved: bool


def nplr(measure: str, N: int, halve: bool = True) -> NPLR:
    """Eigendecompose the normal part of HiPPO ``measure`` in float64 (see module docstring).

    With ``halve`` (N must be even) only the eigenvalues with positive imaginary part are returned;
    the dropped ones are their conjugates, with conjugate eigenvectors.
    """
    A, B = transition(measure, N)
    P = rank_correction(measure, N)
    S = A + P.T @ P
    # The normal part is w*I + skew-symmetric; w is read off the diagonal (all entries equal).
    w = float(np.mean(np.diag(S)))
    skew = S - w * np.eye(N)
    if not np.allclose(skew, -skew.T, atol=1e-9 * max(1.0, np.abs(skew).max())):
        raise RuntimeError(f"{measure}: A + P^T P is not identity + skew-symmetric")
    # -i * skew is Hermitian, so eigh gives an orthonormal basis in float64.
    mu, V = np.linalg.eigh(-1j * skew)
    Lam = w + 1j * mu
    if halve:
        if N % 2:
            raise ValueError(f"halving conjugate pairs needs an even N, got N={N}")
        tol = 1e-10 * max(1.0, np.abs(mu).max())
        pos = np.where(mu > tol)[0]
        pos = pos[np.argsort(-mu[pos])]  # positive imaginary parts first
        n_zero = N - 2 * len(pos)
        Vk, Lk = [V[:, pos]], [Lam[pos]]
        if n_zero:
            # A zero eigenvalue of a real skew matrix has an even-dimensional real eigenspace (FouT's
            # constant/sine-0 pair); pair its real orthonormal basis e_a, e_b into (e_a + i e_b)/sqrt2,
            # whose conjugate is the dropped partner.
            if n_zero % 2 or np.sum(np.abs(mu) <= tol) != n_zero:
                raise RuntimeError(f"{measure}: eigenvalues do not come in conjugate pairs")
            _, sv, vt = np.linalg.svd(skew)
            Q = vt[N - n_zero:].T  # real null-space basis (N, n_zero)
            Vk.append((Q[:, 0::2] + 1j * Q[:, 1::2]) / np.sqrt(2.0))
            Lk.append(np.full(n_zero // 2, w + 0j))
        Lam, V = np.concatenate(Lk), np.concatenate(Vk, axis=1)
    Vh = V.conj().T
    Pt = P.astype(np.complex128) @ Vh.T  # (r, M): rows are V^* p_i
    Bt = Vh @ B.astype(np.complex128)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(torch.complex128)
    return NPLR(t(Lam), t(Pt), t(Bt), t(V), bool(halve))


def diag_init(init: str, N: int) -> tuple[torch.Tensor, torch.Tensor]:
    """S4D diagonal initialisation of M = ceil(N/2) complex modes (conjugate pairs halved).

    Returns complex128 ``Lambda`` (M,) and ``B`` (M,) (for an odd N, 'legs' uses LegS of size N + 1):

    * ``legs``: the diagonal part Lambda of HiPPO-LegS's NPLR form (real part -1/2), ``B = V^* B``.
    * ``lin``: ``Lambda_n = -1/2 + i pi n``, ``B = 1``.
    * ``inv``: ``Lambda_n = -1/2 + i (N/pi) (N/(2n+1) - 1)``, ``B = 1``.
    * ``real``: ``Lambda_n = -(n+1)``, ``B = 1``.
    """
    _check_n(N)
    M = (N + 1) // 2  # odd N keeps one more mode rather than none (N = 1)
    n = torch.arange(M, dtype=torch.float64)
    ones = torch.ones(M, dtype=torch.complex128)
    if init == "legs":
        f = nplr("legs", 2 * M, halve=True)
        return f.Lambda, f.B
    if init == "lin":
        return torch.complex(torch.full_like(n, -0.5), torch.pi * n), ones
    if init == "inv":
        return torch.complex(torch.full_like(n, -0.5), N / torch.pi * (N / (2 * n + 1) - 1)), ones
    if init == "real":
        return torch.complex(-(n + 1), torch.zeros_like(n)), ones
    raise ValueError(f"init must be one of {DIAG_INITS} for mode='diag', got {init!r}")
