"""HiPPO matrices against their closed forms, and NPLR / diagonal forms against the dense matrices."""

import math

import numpy as np
import pytest
import torch

from seqlab.ssm import hippo


def _legs_closed(N):
    A = np.zeros((N, N))
    for n in range(N):
        for k in range(N):
            if n > k:
                A[n, k] = -math.sqrt(2 * n + 1) * math.sqrt(2 * k + 1)
            elif n == k:
                A[n, k] = -(n + 1)
    return A, np.array([math.sqrt(2 * n + 1) for n in range(N)])


def _legt_closed(N):
    A = np.zeros((N, N))
    for n in range(N):
        for k in range(N):
            s = 1.0 if n >= k else (-1.0) ** (n - k)
            A[n, k] = -0.5 * math.sqrt((2 * n + 1) * (2 * k + 1)) * s
    return A, np.array([0.5 * math.sqrt(2 * n + 1) for n in range(N)])


@pytest.mark.parametrize("N", [1, 5, 8])
def test_legs_legt_closed_forms(N):
    for measure, closed in (("legs", _legs_closed), ("legt", _legt_closed)):
        A, B = hippo.transition(measure, N)
        Ar, Br = closed(N)
        np.testing.assert_allclose(A, Ar, rtol=0, atol=1e-12)
        np.testing.assert_allclose(B, Br, rtol=0, atol=1e-12)


def test_fout_closed_form():
    N = 6
    A, B = hippo.transition("fout", N)
    Bref = np.array([1.0, 0.0, math.sqrt(2), 0.0, math.sqrt(2), 0.0])
    np.testing.assert_allclose(B, Bref, atol=1e-15)
    # rotation part: cos_k <-> sin_k blocks with frequency pi*k, i.e. A + B B^T is skew with those entries
    R = A + np.outer(B, B)
    np.testing.assert_allclose(R, -R.T, atol=1e-14)
    for k in range(1, N // 2):
        assert R[2 * k, 2 * k + 1] == pytest.approx(-math.pi * k)
        assert R[2 * k + 1, 2 * k] == pytest.approx(math.pi * k)
    assert np.count_nonzero(np.abs(R) > 1e-14) == 2 * (N // 2 - 1)


@pytest.mark.parametrize("measure", hippo.MEASURES)
@pytest.mark.parametrize("N", [4, 10])
def test_rank_correction_makes_normal(measure, N):
    A, _ = hippo.transition(measure, N)
    P = hippo.rank_correction(measure, N)
    S = A + P.T @ P
    np.testing.assert_allclose(S @ S.T, S.T @ S, atol=1e-9 * np.abs(S).max() ** 2)


@pytest.mark.parametrize("measure", hippo.MEASURES)
@pytest.mark.parametrize("N", [6, 16])
@pytest.mark.parametrize("halve", [True, False])
def test_nplr_reconstructs_A(measure, N, halve):
    A, B = hippo.transition(measure, N)
    P = hippo.rank_correction(measure, N)
    f = hippo.nplr(measure, N, halve=halve)
    V, Lam, Pt, Bt = f.V, f.Lambda, f.P, f.B
    if halve:
        assert V.shape == (N, N // 2)
        V, Lam = torch.cat([V, V.conj()], 1), torch.cat([Lam, Lam.conj()])
        Pt, Bt = torch.cat([Pt, Pt.conj()], 1), torch.cat([Bt, Bt.conj()])
        assert (Lam.imag[: N // 2] >= 0).all()
    # V unitary, A = V diag(Lambda) V^* - P^T P, and the low-rank/B factors map back
    eye = torch.eye(N, dtype=torch.complex128)
    assert torch.linalg.norm(V.conj().T @ V - eye) < 1e-10
    Arec = V @ torch.diag(Lam) @ V.conj().T - torch.from_numpy(P.T @ P)
    assert torch.linalg.norm(Arec - torch.from_numpy(A)) / np.linalg.norm(A) < 1e-10
    assert Arec.imag.abs().max() < 1e-10
    assert torch.linalg.norm(V @ Pt.T - torch.from_numpy(P.T).to(V.dtype)) < 1e-10
    assert torch.linalg.norm(V @ Bt - torch.from_numpy(B).to(V.dtype)) < 1e-10


def test_legs_nplr_real_part():
    f = hippo.nplr("legs", 12)
    assert torch.allclose(f.Lambda.real, torch.full((6,), -0.5, dtype=torch.float64))


def test_diag_inits():
    N = 10
    n = torch.arange(N // 2, dtype=torch.float64)
    lam, b = hippo.diag_init("lin", N)
    assert torch.allclose(lam, torch.complex(-0.5 * torch.ones(5, dtype=torch.float64), math.pi * n))
    lam, _ = hippo.diag_init("inv", N)
    assert torch.allclose(lam.imag, N / math.pi * (N / (2 * n + 1) - 1))
    lam, _ = hippo.diag_init("real", N)
    assert torch.allclose(lam, torch.complex(-(n + 1), 0 * n))
    lam, b = hippo.diag_init("legs", N)
    assert torch.allclose(lam, hippo.nplr("legs", N).Lambda)
    assert b.shape == (N // 2,)


def test_bad_inputs():
    with pytest.raises(ValueError, match="measure"):
        hippo.transition("nope", 4)
    with pytest.raises(TypeError, match="N"):
        hippo.transition("legs", 4.0)
    with pytest.raises(ValueError, match="N"):
        hippo.transition("legs", 0)
    with pytest.raises(ValueError, match="even"):
        hippo.nplr("legs", 5, halve=True)
    with pytest.raises(ValueError, match="init"):
        hippo.diag_init("xyz", 4)
