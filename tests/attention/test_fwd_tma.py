"""The TMA-descriptor forward (``_triton_fwd_tma``) through Triton's interpreter.

``SEQLAB_ATTN_TMA=1`` routes eligible calls of the public API to it under the interpreter (on GPUs it is
on by default for Hopper and newer), so these tests check the kernel end to end, backward included (the
backward kernels read its log-sum-exp), against the float64 reference.
"""

from __future__ import annotations

import pytest
import torch

from seqlab.attention import _triton_fwd_tma as tma
from seqlab.attention import flash_attn_func
from seqlab.attention._fast_launch import stats

from .helpers import TOL, check_against_ref, rand_qkv, ref_fwd_bwd, rel_err


@pytest.fixture
def tma_on(monkeypatch):
    monkeypatch.setenv("SEQLAB_ATTN_TMA", "1")
    monkeypatch.setenv("SEQLAB_ATTENTION_BACKEND", "triton")


@pytest.mark.parametrize("sq,sk,h,hk,causal", [
    (77, 77, 2, 2, False),   # ragged: not a multiple of the 32-row tiles
    (77, 77, 2, 1, True),    # MQA, causal
    (45, 100, 4, 2, True),   # bottom-right causal, more keys than queries, GQA
    (100, 45, 2, 2, True),   # more queries than keys: the first rows see no key
    (64, 96, 2, 2, False),   # exact tiles
])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_tma_forward_matches_reference(tma_on, sq, sk, h, hk, causal, dtype):
    q, k, v = rand_qkv(2, sq, sk, h, hk, 64, dtype)
    assert tma.usable(q, k, v, None, -1, 0 if causal else -1, None, 0.0, False, True)
    check_against_ref(flash_attn_func, q, k, v, dtype, causal=causal)


def test_tma_forward_headdim128_and_lse(tma_on):
    q, k, v = rand_qkv(1, 50, 70, 2, 2, 128, torch.bfloat16, requires_grad=False)
    out, lse = tma.tma_fwd(q, k, v, 128 ** -0.5, True, interpreting=True)
    qd, kd, vd = (t.double().transpose(1, 2) for t in (q, k, v))
    s = qd @ kd.transpose(-1, -2) * 128 ** -0.5
    i = torch.arange(50)[:, None]
    j = torch.arange(70)[None, :]
    s = s.masked_fill(j > i + 20, float("-inf"))
    ref_lse = torch.logsumexp(s, -1)
    ref = (torch.softmax(s, -1) @ vd).transpose(1, 2)
    assert rel_err(out, ref) < TOL[torch.bfloat16]
    assert torch.allclose(lse.double(), ref_lse, atol=2e-2)


@pytest.mark.parametrize("causal", [False, True])
def test_tma_forward_headdim256_with_the_wide_backward(tma_on, monkeypatch, causal):
    """Head dim 256 takes the TMA forward (v6 probe) and the wide-head backward, which reads its log-sum-exp."""
    from seqlab.attention import _triton_bwd_tma, _triton_wide

    fwd_calls, bwd_calls = [], []
    real_fwd, real_bwd = tma.tma_fwd, _triton_wide.wide_bwd
    monkeypatch.setattr(tma, "tma_fwd", lambda *a, **kw: fwd_calls.append(1) or real_fwd(*a, **kw))
    monkeypatch.setattr(_triton_wide, "wide_bwd", lambda *a, **kw: bwd_calls.append(1) or real_bwd(*a, **kw))
    q, k, v = rand_qkv(2, 45, 70, 2, 1, 256, torch.bfloat16)
    assert not _triton_bwd_tma.usable(q, q, k, v, q, None, -1, 0 if causal else -1, None, 0.0, True)
    check_against_ref(flash_attn_func, q, k, v, torch.bfloat16, causal=causal)
    assert fwd_calls == [1] and bwd_calls == [1]


def test_tma_rows_without_keys_give_zero_and_minus_inf():
    # causal with 40 queries over 8 keys: query rows 0..31 see no key (bottom-right alignment)
    q, k, v = rand_qkv(1, 40, 8, 1, 1, 64, torch.float16, requires_grad=False)
    out, lse = tma.tma_fwd(q, k, v, 0.125, True, interpreting=True)
    assert torch.isfinite(out).all()
    assert (out[:, :32] == 0).all() and torch.isinf(lse[:, :, :32]).all() and (lse[:, :, :32] < 0).all()
    assert torch.isfinite(lse[:, :, 32:]).all()


@pytest.mark.parametrize("kw", [
    dict(dropout_p=0.1), dict(window_size=(4, 4)), dict(alibi=True), dict(dtype=torch.float32),
    dict(headdim=96), dict(strided_heads=True),
])
def test_tma_not_used_outside_its_scope(tma_on, kw):
    dtype = kw.get("dtype", torch.bfloat16)
    d = kw.get("headdim", 64)
    q, k, v = rand_qkv(1, 40, 40, 2, 2, d, dtype, requires_grad=False)
    if kw.get("strided_heads"):
        q = torch.randn(1, 40, 2, 2 * d, dtype=dtype)[..., :d]  # head dim not contiguous with the heads
    wl, wr = kw.get("window_size", (-1, -1))
    alibi = torch.ones(2) if kw.get("alibi") else None
    assert not tma.usable(q, k, v, None, wl, wr, alibi, kw.get("dropout_p", 0.0), False, True)


def test_tma_off_by_default_under_the_interpreter(monkeypatch):
    monkeypatch.delenv("SEQLAB_ATTN_TMA", raising=False)
    q, k, v = rand_qkv(1, 40, 40, 2, 2, 64, torch.bfloat16, requires_grad=False)
    assert not tma.usable(q, k, v, None, -1, -1, None, 0.0, False, True)
    monkeypatch.setenv("SEQLAB_ATTN_TMA", "0")
    assert not tma.usable(q, k, v, None, -1, -1, None, 0.0, False, True)


def test_tma_launch_counts_as_a_launch(tma_on):
    before = stats["triton"] + stats["direct"]
    q, k, v = rand_qkv(1, 33, 33, 1, 1, 64, torch.float16, requires_grad=False)
    flash_attn_func(q, k, v)
    assert stats["triton"] + stats["direct"] > before


def test_tma_backward_is_the_path_taken(tma_on, monkeypatch):
    from seqlab.attention import _triton_bwd_tma

    calls = []
    real = _triton_bwd_tma.tma_bwd

    def spy(*args, **kw):
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(_triton_bwd_tma, "tma_bwd", spy)
    q, k, v = rand_qkv(1, 40, 50, 2, 1, 64, torch.bfloat16)
    check_against_ref(flash_attn_func, q, k, v, torch.bfloat16, causal=True)
    assert calls == [1]
    monkeypatch.setattr(_triton_bwd_tma, "ENABLED", False)
    check_against_ref(flash_attn_func, q, k, v, torch.bfloat16, causal=True)
    assert calls == [1]


@pytest.mark.parametrize("causal", [False, True])
def test_tma_backward_very_negative_scores_ragged_keys(tma_on, monkeypatch, causal):
    # Every score of every row is about -300 (natural units): a zero-filled key row past the end would get
    # probability exp(+300) if it were not masked, and turn dQ into inf * 0 = NaN.
    u = torch.randn(64)
    u = u / u.norm() * 8
    k = (u + 0.05 * torch.randn(1, 45, 1, 64)).half().requires_grad_()
    v = torch.randn(1, 45, 1, 64).half().requires_grad_()
    q = (-(300 / 64) * u + 0.05 * torch.randn(1, 45, 1, 64)).half().requires_grad_()
    g = torch.randn(1, 45, 1, 64).half()
    ref_out, ref_grads = ref_fwd_bwd(q, k, v, g, causal=causal)
    errs = {}
    for env in ("1", "0"):  # TMA path, pointer path
        monkeypatch.setenv("SEQLAB_ATTN_TMA", env)
        out = flash_attn_func(q, k, v, causal=causal)
        grads = torch.autograd.grad(out, (q, k, v), g)
        errs[env] = [rel_err(out, ref_out)] + [rel_err(a, b) for a, b in zip(grads, ref_grads)]  # asserts finite
    # dS is rounded to fp16 before the dQ product, so both paths lose the same ~4e-3 on dQ here
    assert all(e < 1e-2 for e in errs["1"]), errs
    assert all(a <= 1.05 * b + 1e-5 for a, b in zip(errs["1"], errs["0"])), errs


def test_tma_backward_dispatch_rule():
    from seqlab.attention._triton_bwd_tma import preferred

    def qk(n, d):
        return torch.empty(1, n, 1, d), torch.empty(1, n, 1, d)

    assert preferred(*qk(512, 128), causal=False, interpreting=False)
    assert preferred(*qk(4096, 64), causal=True, interpreting=False)
    assert not preferred(*qk(512, 64), causal=True, interpreting=False)
    assert not preferred(*qk(4096, 128), causal=True, interpreting=False)
    assert preferred(*qk(2048, 128), causal=True, interpreting=False)
    assert preferred(*qk(512, 128), causal=True, interpreting=False)
    assert preferred(*qk(64, 128), causal=True, interpreting=True)


@pytest.mark.parametrize("causal", [False, True])
def test_tma_on_packed_qkv_views(tma_on, causal):
    # q, k, v as strided views of one (B, N, 3, H, D) tensor: the descriptors take the token stride 3*H*D
    qkv = torch.randn(2, 70, 3, 2, 64, dtype=torch.bfloat16, requires_grad=True)
    views = qkv.unbind(2)
    assert views[0].stride(1) == 3 * 2 * 64 and tma.usable(*views, None, -1, 0, None, 0.0, False, True)
    check_against_ref(flash_attn_func, *views, torch.bfloat16, causal=causal)
    out = flash_attn_func(*views, causal=causal)
    ref = flash_attn_func(*(x.contiguous() for x in views), causal=causal)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("scale", [0.3, -0.2, 0.0])
def test_tma_forward_softmax_scale(tma_on, monkeypatch, scale):
    # The TMA forward keeps its running max in scaled units (the scale is folded into one FMA per score), which
    # needs scale > 0: a positive custom scale runs on it, zero/negative scales take the pointer kernel.
    calls = []
    real = tma.tma_fwd
    monkeypatch.setattr(tma, "tma_fwd", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    q, k, v = rand_qkv(2, 77, 77, 2, 1, 64, torch.bfloat16)
    check_against_ref(flash_attn_func, q, k, v, torch.bfloat16, causal=True, softmax_scale=scale)
    assert bool(calls) == (scale > 0)
    with pytest.raises(ValueError, match="positive softmax scale"):
        real(q.detach(), k.detach(), v.detach(), -1.0, True, interpreting=True)


def test_tma_forward_tile_choice():
    # v5 probe: causal head dim 64 takes 64-row query tiles up to seqlen 2048 and 8 warps above
    assert tma.config_for(64, True, 2048) == (64, 64, 4, 3)
    assert tma.config_for(64, True, 4096) == (128, 64, 8, 3)
    assert tma.config_for(64, False, 512) == tma.CONFIGS[(64, False)]
    assert tma.config_for(128, True, 512) == tma.CONFIGS[(128, True)]
    # v6 probe: head dim 256 takes 64x64 tiles, non-causal above 8k 128x64 with 8 warps
    assert tma.config_for(256, True, 16384) == (64, 64, 4, 3)
    assert tma.config_for(256, False, 8192) == (64, 64, 4, 3)
    assert tma.config_for(256, False, 16384) == (128, 64, 8, 2)
