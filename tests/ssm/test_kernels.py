"""Triton Cauchy / Vandermonde kernels (through the interpreter) against the naive references, and FFT conv."""

import pytest
import torch

from seqlab.ssm import kernels as K

pytestmark = pytest.mark.skipif(not K.HAS_TRITON, reason="triton not installed")


def _rel(a, b):
    nb = torch.linalg.norm(b)
    # an exactly-zero reference (e.g. d/dx at L = 1) must be matched exactly
    return (torch.linalg.norm(a - b) / nb).item() if nb > 0 else torch.linalg.norm(a).item()


def _cauchy_inputs(M, H, N, L, dtype):
    v = torch.randn(M, H, N, dtype=dtype, requires_grad=True)
    w = torch.complex(-torch.rand(H, N, dtype=dtype.to_real()) - 0.1, 3 * torch.randn(H, N, dtype=dtype.to_real()))
    w.requires_grad_()
    z = torch.complex(torch.randn(L, dtype=dtype.to_real()), torch.randn(L, dtype=dtype.to_real()))
    return v, z, w


@pytest.mark.parametrize("dtype,tol", [(torch.complex128, 1e-12), (torch.complex64, 1e-5)])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 5, 13, 37), (2, 3, 40, 70)])
def test_cauchy_matches_naive(dtype, tol, shape):
    v, z, w = _cauchy_inputs(*shape, dtype)
    out = K.cauchy(v, z, w, impl="triton")
    ref = K.cauchy_naive(v, z, w)
    assert out.shape == ref.shape and out.dtype == dtype
    assert _rel(out, ref) < tol
    g = torch.randn_like(ref)
    ga = torch.autograd.grad(out, (v, w), g)
    gb = torch.autograd.grad(ref, (v, w), g)
    for a, b in zip(ga, gb):
        assert _rel(a, b) < tol


@pytest.mark.parametrize("dtype,tol", [(torch.complex128, 1e-12), (torch.complex64, 1e-5)])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 5, 13, 37), (2, 3, 40, 70)])
def test_vandermonde_matches_naive(dtype, tol, shape):
    M, H, N, L = shape
    rd = dtype.to_real()
    v = torch.randn(M, H, N, dtype=dtype, requires_grad=True)
    x = torch.complex(-0.2 * torch.rand(H, N, dtype=rd), torch.randn(H, N, dtype=rd)).requires_grad_()
    out = K.vandermonde(v, x, L, impl="triton")
    ref = K.vandermonde_naive(v, x, L)
    assert out.shape == (M, H, L) and not out.is_complex()
    assert _rel(out, ref) < tol
    g = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(out, (v, x), g), torch.autograd.grad(ref, (v, x), g)):
        assert _rel(a, b) < tol


def test_vandermonde_naive_is_power_sum():
    v = torch.randn(1, 1, 3, dtype=torch.complex128)
    a = torch.randn(3, dtype=torch.complex128) * 0.5
    out = K.vandermonde_naive(v, torch.log(a)[None], 6)
    ref = torch.stack([2 * (v[0, 0] * a**l).sum().real for l in range(6)])
    assert _rel(out[0, 0], ref) < 1e-13


def _direct_conv(u, k):
    B, H, L = u.shape
    y = torch.zeros(B, k.shape[0], H, L, dtype=u.dtype)
    for t in range(L):
        for s in range(t + 1):
            y[..., t] += k[None, :, :, t - s] * u[:, None, :, s]
    return y


@pytest.mark.parametrize("L", [1, 7, 16])
def test_fft_conv_causal_and_bidirectional(L):
    u = torch.randn(2, 3, L, dtype=torch.float64)
    k = torch.randn(4, 3, L, dtype=torch.float64)
    ref = _direct_conv(u, k)
    assert _rel(K.fft_conv(u, k), ref) < 1e-12
    bi = K.fft_conv(u, k, bidirectional=True)
    ref_bi = _direct_conv(u, k[:2]) + _direct_conv(u.flip(-1), k[2:]).flip(-1)
    assert _rel(bi, ref_bi) < 1e-12


def test_bad_inputs():
    v, z, w = _cauchy_inputs(2, 3, 4, 5, torch.complex64)
    with pytest.raises(TypeError, match="v"):
        K.cauchy(v.real, z, w)
    with pytest.raises(ValueError, match="w"):
        K.cauchy(v, z, w[:, :2])
    with pytest.raises(TypeError, match="dtype"):
        K.cauchy(v, z.to(torch.complex128), w)
    with pytest.raises(ValueError, match="impl"):
        K.cauchy(v, z, w, impl="cuda")
    with pytest.raises(ValueError, match="L"):
        K.vandermonde(v, w, 0)
    with pytest.raises(ValueError, match="dims"):
        K.vandermonde(v[0], w, 3)
    with pytest.raises(ValueError, match="kernel"):
        K.fft_conv(torch.randn(1, 3, 5), torch.randn(1, 3, 4))


@pytest.mark.parametrize("which", ["cauchy", "vandermonde"])
def test_backward_with_split_reduction(monkeypatch, which):
    # force the backward to split L over several programs and sum the partials
    monkeypatch.setattr(K, "_TARGET_PROGRAMS", 64)
    assert K._splits(6, 300, 64)[0] > 1
    v = torch.randn(2, 3, 13, dtype=torch.complex128, requires_grad=True)
    if which == "cauchy":
        w = (torch.randn(3, 13, dtype=torch.complex128) - 2).requires_grad_()
        z = torch.randn(300, dtype=torch.complex128)
        out, ref, args = K.cauchy(v, z, w), K.cauchy_naive(v, z, w), (v, w)
    else:
        x = (0.01 * torch.randn(3, 13, dtype=torch.complex128) - 0.01).requires_grad_()
        out, ref, args = K.vandermonde(v, x, 300), K.vandermonde_naive(v, x, 300), (v, x)
    g = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(out, args, g), torch.autograd.grad(ref, args, g)):
        assert _rel(a, b) < 1e-12
