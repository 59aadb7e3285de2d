"""Wide heads (head dim 129..256): the kernels of ``_triton_wide`` (split dK / dV programs, reversed query
order under masks) against the float64 reference, through the Triton interpreter on small shapes."""

import pytest
import torch

from seqlab.attention import _triton_wide, flash_attn_func, flash_attn_varlen_func

from .helpers import TOL, check_against_ref, rand_qkv, rel_err


@pytest.fixture
def counted(monkeypatch):
    """Counts the calls that took the wide kernels (forward, backward)."""
    calls = {"fwd": 0, "bwd": 0}
    fwd, bwd = _triton_wide.wide_fwd, _triton_wide.wide_bwd

    def cfwd(*a, **kw):
        calls["fwd"] += 1
        return fwd(*a, **kw)

    def cbwd(*a, **kw):
        calls["bwd"] += 1
        return bwd(*a, **kw)

    monkeypatch.setattr(_triton_wide, "wide_fwd", cfwd)
    monkeypatch.setattr(_triton_wide, "wide_bwd", cbwd)
    return calls


# (batch, seqlen_q, seqlen_k, nheads, nheads_k, headdim, causal)
CASES = [
    (1, 45, 45, 2, 2, 256, True),
    (2, 37, 70, 4, 2, 160, False),  # GQA, seqlen_q < seqlen_k, head dim padded to 256
    (1, 70, 33, 2, 1, 256, True),  # MQA, seqlen_q > seqlen_k: causal rows with no key
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_wide_fp32(case, counted):
    b, sq, sk, h, hk, d, causal = case
    q, k, v = rand_qkv(b, sq, sk, h, hk, d, torch.float32)
    check_against_ref(flash_attn_func, q, k, v, torch.float32, causal=causal)
    assert counted == {"fwd": 1, "bwd": 1}


def test_wide_bf16(counted):
    q, k, v = rand_qkv(1, 50, 50, 2, 2, 256, torch.bfloat16)
    check_against_ref(flash_attn_func, q, k, v, torch.bfloat16, causal=True)
    assert counted == {"fwd": 1, "bwd": 1}


def test_wide_window_alibi(counted):
    q, k, v = rand_qkv(1, 50, 61, 2, 2, 192, torch.float32)
    slopes = torch.rand(2)
    check_against_ref(flash_attn_func, q, k, v, torch.float32, window_size=(8, 3), alibi_slopes=slopes)
    assert counted == {"fwd": 1, "bwd": 1}


def test_wide_varlen(counted):
    lens = [33, 1, 50]
    cu = torch.tensor([0, 33, 34, 84], dtype=torch.int32)
    q = torch.randn(sum(lens), 2, 256, requires_grad=True)
    k = torch.randn(sum(lens), 1, 256, requires_grad=True)
    v = torch.randn(sum(lens), 1, 256, requires_grad=True)
    out = flash_attn_varlen_func(q, k, v, cu, cu, max(lens), max(lens), causal=True)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), g)
    from seqlab.attention import attention_ref

    for i in range(len(lens)):
        s = slice(int(cu[i]), int(cu[i + 1]))
        qd, kd, vd = (x.detach()[s][None].double().requires_grad_() for x in (q, k, v))
        ref = attention_ref(qd, kd, vd, causal=True)
        rg = torch.autograd.grad(ref, (qd, kd, vd), g[s][None].double())
        assert rel_err(out[s][None], ref) < TOL[torch.float32]
        for a, r in zip(grads, rg):
            assert rel_err(a[s][None], r) < TOL[torch.float32]
    assert counted == {"fwd": 1, "bwd": 1}


def test_wide_dropout_matches_standard_kernels(monkeypatch):
    """Same Philox mask as the standard kernels (whose dropout is checked against the reference)."""
    q, k, v = rand_qkv(1, 40, 40, 2, 1, 256, torch.float32)
    g = torch.randn(1, 40, 2, 256)
    results = []
    for wide in (True, False):
        monkeypatch.setattr(_triton_wide, "ENABLED", wide)
        torch.manual_seed(5)
        out = flash_attn_func(q, k, v, dropout_p=0.3, causal=True)
        results.append((out, *torch.autograd.grad(out, (q, k, v), g)))
    for a, b in zip(*results):
        assert rel_err(a, b) < 1e-5


@pytest.mark.parametrize("fused", [True, False])
def test_wide_bwd_configs(fused):
    """Explicit tiles (ragged edges in both directions), the two-launch dK/dV path and the unreversed order."""
    from seqlab.attention.reference import attention_ref

    q, k, v = rand_qkv(1, 53, 53, 2, 2, 256, torch.float32, requires_grad=False)
    scale = 256 ** -0.5
    out, lse, _ = _triton_wide.wide_fwd(q, k, v, None, None, 53, 53, scale, -1, 0, None, 0.0, None,
                                        cfg=dict(BLOCK_M=16, BLOCK_N=32, num_warps=4, num_stages=1), reverse=False)
    g = torch.randn_like(out)
    cfg_q = dict(BLOCK_M=32, BLOCK_N=16, num_warps=4, num_stages=1)
    cfg_kv = dict(BLOCK_M=16, BLOCK_N=32, num_warps=4, num_stages=1)
    dq, dk, dv = _triton_wide.wide_bwd(g, q, k, v, out, lse, None, None, 53, 53, scale, -1, 0, None, 0.0, None,
                                       cfg_q=cfg_q, cfg_kv=cfg_kv, reverse=not fused, fused_dkdv=fused)
    qd, kd, vd = (x.double().requires_grad_() for x in (q, k, v))
    ref = attention_ref(qd, kd, vd, causal=True)
    rg = torch.autograd.grad(ref, (qd, kd, vd), g.double())
    assert rel_err(out, ref) < 1e-4
    for a, r in zip((dq, dk, dv), rg):
        assert rel_err(a, r) < 1e-4
