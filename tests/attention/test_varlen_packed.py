"""Varlen and packed entry points equal the padded computation."""

import pytest
import torch

from seqlab.attention import (
    attention_ref,
    flash_attn_func,
    flash_attn_kvpacked_func,
    flash_attn_qkvpacked_func,
    flash_attn_varlen_func,
    flash_attn_varlen_kvpacked_func,
    flash_attn_varlen_qkvpacked_func,
    use_backend,
)

from .helpers import rel_err


def _pack(x, lens):
    return torch.cat([x[b, :n] for b, n in enumerate(lens)])


def _cu(lens):
    return torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32)


@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize("causal", [False, True])
def test_varlen_equals_padded(backend, causal):
    lens_q, lens_k = [1, 17, 40], [5, 17, 33]
    b, h, hk, d = 3, 4, 2, 32
    q = torch.randn(b, max(lens_q), h, d)
    k = torch.randn(b, max(lens_k), hk, d)
    v = torch.randn(b, max(lens_k), hk, d)
    qp, kp, vp = (_pack(x, lens).requires_grad_() for x, lens in ((q, lens_q), (k, lens_k), (v, lens_k)))
    with use_backend(backend):
        out, lse, probs = flash_attn_varlen_func(qp, kp, vp, _cu(lens_q), _cu(lens_k), max(lens_q), max(lens_k),
                                                 causal=causal, return_attn_probs=True)
        g = torch.randn_like(out)
        grads = torch.autograd.grad(out, (qp, kp, vp), g)
    assert out.shape == qp.shape and lse.shape == (h, sum(lens_q)) and probs.shape == (b, h, 40, 33)
    qpad = torch.arange(max(lens_q))[None] < torch.tensor(lens_q)[:, None]
    kpad = torch.arange(max(lens_k))[None] < torch.tensor(lens_k)[:, None]
    # Padded reference with padding masks, on the same gradient
    qd, kd, vd = (x.double().requires_grad_() for x in (q, k, v))
    ref = attention_ref(qd, kd, vd, causal=causal, query_padding_mask=qpad, key_padding_mask=kpad)
    gpad = torch.zeros(b, max(lens_q), h, d, dtype=torch.float64)
    for i, n in enumerate(lens_q):
        gpad[i, :n] = g[_cu(lens_q)[i] : _cu(lens_q)[i + 1]].double()
    rq, rk, rv = torch.autograd.grad(ref, (qd, kd, vd), gpad)
    assert rel_err(out, _pack(ref, lens_q)) < 1e-5
    assert rel_err(grads[0], _pack(rq, lens_q)) < 1e-5
    assert rel_err(grads[1], _pack(rk, lens_k)) < 1e-5
    assert rel_err(grads[2], _pack(rv, lens_k)) < 1e-5


def test_varlen_empty_sequence_and_alibi_per_batch():
    lens = [7, 0, 12]
    cu = _cu(lens)
    q, k, v = (torch.randn(sum(lens), 2, 16) for _ in range(3))
    slopes = torch.rand(3, 2)
    out = flash_attn_varlen_func(q, k, v, cu, cu, 12, 12, alibi_slopes=slopes)
    for i, (s, e) in enumerate(zip(cu[:-1].tolist(), cu[1:].tolist())):
        if e == s:
            continue
        ref = attention_ref(q[s:e][None].double(), k[s:e][None].double(), v[s:e][None].double(),
                            alibi_slopes=slopes[i : i + 1])
        assert rel_err(out[s:e], ref[0]) < 1e-5


def test_qkvpacked_and_kvpacked():
    qkv = torch.randn(2, 29, 3, 4, 32, requires_grad=True)
    out = flash_attn_qkvpacked_func(qkv, causal=True)
    ref = flash_attn_func(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], causal=True)
    torch.testing.assert_close(out, ref)
    out.sum().backward()
    assert qkv.grad.shape == qkv.shape and torch.isfinite(qkv.grad).all()
    q = torch.randn(2, 11, 4, 32)
    kv = torch.randn(2, 29, 2, 2, 32)
    torch.testing.assert_close(flash_attn_kvpacked_func(q, kv), flash_attn_func(q, kv[:, :, 0], kv[:, :, 1]))


def test_varlen_packed_variants():
    lens = [9, 20]
    cu = _cu(lens)
    qkv = torch.randn(29, 3, 2, 16)
    out = flash_attn_varlen_qkvpacked_func(qkv, cu, 20, causal=True)
    ref = flash_attn_varlen_func(qkv[:, 0], qkv[:, 1], qkv[:, 2], cu, cu, 20, 20, causal=True)
    torch.testing.assert_close(out, ref)
    kv = qkv[:, 1:]
    out2 = flash_attn_varlen_kvpacked_func(qkv[:, 0], kv, cu, cu, 20, 20, causal=True)
    torch.testing.assert_close(out2, ref)
