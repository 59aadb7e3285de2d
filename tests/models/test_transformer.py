"""Transformer baseline: math attention vs a float64 reference, seqlab attention vs math, parameter match."""

import math

import pytest
import torch

from seqlab.models.transformer import MathAttention, Transformer, transformer_ff_for_params


def _rel(a, b):
    return (torch.linalg.norm(a - b) / torch.linalg.norm(b)).item()


def test_math_attention_matches_torch_mha():
    torch.manual_seed(0)
    E, heads = 24, 3
    ours = MathAttention(E, heads).double()
    ref = torch.nn.MultiheadAttention(E, heads, batch_first=True).double()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    x = torch.randn(2, 13, E, dtype=torch.float64)
    assert _rel(ours(x)[0], ref(x, x, x, need_weights=False)[0]) < 1e-12
    causal = MathAttention(E, heads, causal=True).double()
    with torch.no_grad():
        causal.load_state_dict(ours.state_dict())
    mask = torch.triu(torch.ones(13, 13, dtype=torch.bool), 1)
    assert _rel(causal(x)[0], ref(x, x, x, attn_mask=mask, need_weights=False)[0]) < 1e-12


def test_causal_transformer_ignores_future():
    torch.manual_seed(0)
    m = Transformer(0, 7, d_model=16, n_layers=2, n_heads=2, vocab_size=7, attn_impl="math", causal=True)
    tok = torch.randint(0, 7, (1, 12))
    tok2 = tok.clone()
    tok2[0, 8:] = (tok2[0, 8:] + 1) % 7
    a, b = m(tok)[0], m(tok2)[0]
    assert torch.allclose(a[:, :8], b[:, :8], atol=1e-6)
    assert not torch.allclose(a[:, 8:], b[:, 8:], atol=1e-3)


def test_seqlab_attention_matches_math():
    pytest.importorskip("seqlab.attention")
    torch.manual_seed(0)
    a = Transformer(5, 3, d_model=16, n_layers=2, n_heads=2, attn_impl="math")
    b = Transformer(5, 3, d_model=16, n_layers=2, n_heads=2, attn_impl="seqlab")
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters())
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 9, 5)
    ya, yb = a(x)[0], b(x)[0]
    assert _rel(yb, ya) < 1e-4
    ya.sum().backward()
    yb.sum().backward()
    ga = a.blocks[0].attn.q_proj.weight.grad
    gb = b.blocks[0].attn.q_proj.weight.grad
    assert _rel(gb, ga) < 1e-3


def test_param_matching():
    target = 123_457
    ff = transformer_ff_for_params(target, 4, 10, d_model=32, n_layers=3)
    m = Transformer(4, 10, d_model=32, n_layers=3, d_ff=ff, attn_impl="math")
    n = sum(p.numel() for p in m.parameters())
    assert abs(n - target) <= 3 * (2 * 32 + 1)
    assert m(torch.randn(2, 5, 4))[0].shape == (2, 5, 10)
    pooled = Transformer(4, 10, d_model=32, n_layers=1, pool="mean", attn_impl="math")
    assert pooled(torch.randn(2, 5, 4))[0].shape == (2, 10)


def test_bad_arguments():
    with pytest.raises(ValueError, match="attn_impl"):
        Transformer(4, 2, d_model=8, n_heads=2, attn_impl="flash3")
    with pytest.raises(ValueError, match="pool"):
        Transformer(4, 2, d_model=8, n_heads=2, pool="max", attn_impl="math")
    with pytest.raises(ValueError, match="divisible"):
        MathAttention(10, 3)
    assert math.isfinite(1.0)
