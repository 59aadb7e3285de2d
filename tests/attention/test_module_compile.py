"""MultiheadAttention, torch.compile without graph breaks, and hypothesis shape fuzzing."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqlab.attention import MultiheadAttention, attention_ref, flash_attn_func, use_backend

from .helpers import rel_err


def _manual_mha(mha, x, kpm=None):
    b, n, e = x.shape
    h, hk, d = mha.num_heads, mha.num_kv_heads, mha.head_dim
    q = mha.q_proj(x).view(b, n, h, d).double()
    k = mha.k_proj(x).view(b, n, hk, d).double()
    v = mha.v_proj(x).view(b, n, hk, d).double()
    valid = None if kpm is None else ~kpm
    o = attention_ref(q, k, v, causal=mha.causal, query_padding_mask=valid, key_padding_mask=valid)
    return mha.out_proj(o.reshape(b, n, e).float())


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kv_heads", [4, 2])
def test_mha_matches_reference(causal, kv_heads):
    mha = MultiheadAttention(64, 4, num_kv_heads=kv_heads, causal=causal)
    x = torch.randn(2, 23, 64)
    out, w = mha(x)
    assert w is None and out.shape == x.shape
    assert rel_err(out, _manual_mha(mha, x)) < 1e-4


def test_mha_key_padding_mask_routes_to_varlen():
    mha = MultiheadAttention(32, 2, causal=True)
    x = torch.randn(3, 19, 32)
    lens = torch.tensor([19, 7, 12])
    kpm = torch.arange(19)[None] >= lens[:, None]  # True = padding
    out, _ = mha(x, key_padding_mask=kpm)
    ref = _manual_mha(mha, x, kpm)
    valid = ~kpm
    assert rel_err(out[valid], ref[valid]) < 1e-4
    # padded query positions give the output projection of zero attention
    torch.testing.assert_close(out[~valid], mha.out_proj.bias.expand(int((~valid).sum()), -1))


def test_mha_seq_first_and_weights_and_grad():
    mha = MultiheadAttention(32, 4, batch_first=False)
    x = torch.randn(11, 2, 32, requires_grad=True)
    out, w = mha(x, need_weights=True)
    assert out.shape == (11, 2, 32) and w.shape == (2, 11, 11)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 11))
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and mha.q_proj.weight.grad is not None


def test_mha_cross_attention():
    mha = MultiheadAttention(32, 2, kdim=16, vdim=24)
    out, _ = mha(torch.randn(2, 5, 32), torch.randn(2, 9, 16), torch.randn(2, 9, 24))
    assert out.shape == (2, 5, 32) and torch.isfinite(out).all()


def test_custom_op_registered_and_compiles_without_graph_break():
    assert hasattr(torch.ops.seqlab, "flash_fwd") and hasattr(torch.ops.seqlab, "flash_bwd")
    q = torch.randn(2, 16, 2, 32, requires_grad=True)
    k = torch.randn(2, 16, 2, 32, requires_grad=True)
    v = torch.randn(2, 16, 2, 32, requires_grad=True)

    def f(q, k, v):
        return flash_attn_func(q, k, v, causal=True).square().sum()

    with use_backend("torch"):
        compiled = torch.compile(f, fullgraph=True, backend="aot_eager")  # fullgraph: a break is an error
        loss = compiled(q, k, v)
        loss.backward()
        eager_grads = torch.autograd.grad(f(q, k, v), (q, k, v))
    torch.testing.assert_close(loss, f(q, k, v))
    for a, b in zip((q.grad, k.grad, v.grad), eager_grads):
        torch.testing.assert_close(a, b)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.integers(1, 2),
    sq=st.integers(1, 70),
    sk=st.integers(1, 70),
    hk=st.integers(1, 2),
    group=st.integers(1, 3),
    d=st.sampled_from([8, 16, 24, 40]),
    causal=st.booleans(),
    left=st.integers(-1, 20),
    right=st.integers(-1, 20),
    backend=st.sampled_from(["triton", "torch"]),
)
def test_fuzz_shapes(batch, sq, sk, hk, group, d, causal, left, right, backend):
    h = hk * group
    q = torch.randn(batch, sq, h, d, requires_grad=True)
    k = torch.randn(batch, sk, hk, d, requires_grad=True)
    v = torch.randn(batch, sk, hk, d, requires_grad=True)
    with use_backend(backend):
        out = flash_attn_func(q, k, v, causal=causal, window_size=(left, right))
        g = torch.randn_like(out)
        grads = torch.autograd.grad(out, (q, k, v), g)
    qd, kd, vd = (x.detach().double().requires_grad_() for x in (q, k, v))
    ref = attention_ref(qd, kd, vd, causal=causal, window_size=(left, right))
    ref_grads = torch.autograd.grad(ref, (qd, kd, vd), g.double())
    assert (out.double() - ref).abs().max() < 1e-4
    for a, b in zip(grads, ref_grads):
        assert (a.double() - b).abs().max() < 1e-4
