"""Shared helpers for the attention tests."""

from __future__ import annotations

import torch

from seqlab.attention import attention_ref

TOL = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1.5e-2}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    assert torch.isfinite(a).all(), "NaN/inf in output"
    denom = b.norm()
    return float((a - b).norm() / denom) if denom > 0 else float((a - b).norm())


def rand_qkv(batch, sq, sk, h, hk, d, dtype, requires_grad=True):
    q = torch.randn(batch, sq, h, d, dtype=dtype, requires_grad=requires_grad)
    k = torch.randn(batch, sk, hk, d, dtype=dtype, requires_grad=requires_grad)
    v = torch.randn(batch, sk, hk, d, dtype=dtype, requires_grad=requires_grad)
    return q, k, v


def ref_fwd_bwd(q, k, v, g, **kw):
    """Float64 reference output and gradients."""
    qd, kd, vd = (x.detach().double().requires_grad_() for x in (q, k, v))
    out = attention_ref(qd, kd, vd, **kw)
    grads = torch.autograd.grad(out, (qd, kd, vd), g.double())
    return out, grads


def check_against_ref(fn, q, k, v, dtype, **kw):
    out = fn(q, k, v, **kw)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), g)
    ref_kw = {key: val for key, val in kw.items() if key != "deterministic"}
    ref_out, ref_grads = ref_fwd_bwd(q, k, v, g, **ref_kw)
    tol = TOL[dtype]
    errs = [rel_err(out, ref_out)] + [rel_err(a, b) for a, b in zip(grads, ref_grads)]
    assert out.shape == q.shape and out.dtype == q.dtype
    assert all(e < tol for e in errs), f"relative errors (out, dq, dk, dv) {errs} exceed {tol}"
    return errs
