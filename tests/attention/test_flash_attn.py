"""Forward and dq/dk/dv of flash_attn_func against a float64 reference.

Under ``TRITON_INTERPRET=1`` (set by tests/conftest.py) CPU tensors run the Triton kernels through the
interpreter; the ``torch`` backend rows check the chunked PyTorch path with the same cases.
"""

import pytest
import torch

from seqlab.attention import flash_attn_func, use_backend

from .helpers import check_against_ref, rand_qkv

# (batch, seqlen_q, seqlen_k, nheads, nheads_k, headdim)
SHAPES = [
    (2, 1, 1, 2, 2, 32),
    (1, 17, 17, 2, 2, 64),
    (2, 113, 113, 2, 1, 32),  # MQA
    (1, 257, 257, 2, 2, 64),
    (2, 17, 113, 4, 2, 32),  # seqlen_q < seqlen_k, GQA
    (2, 113, 17, 2, 2, 96),  # seqlen_q > seqlen_k: causal rows with no key
    (1, 64, 65, 2, 2, 128),
]


@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fwd_bwd_fp32(backend, causal, shape):
    b, sq, sk, h, hk, d = shape
    q, k, v = rand_qkv(b, sq, sk, h, hk, d, torch.float32)
    with use_backend(backend):
        check_against_ref(flash_attn_func, q, k, v, torch.float32, causal=causal)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("causal", [False, True])
def test_fwd_bwd_half(dtype, causal):
    q, k, v = rand_qkv(2, 113, 77, 4, 2, 64, dtype)
    check_against_ref(flash_attn_func, q, k, v, dtype, causal=causal)


@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize("window", [(8, 0), (0, 0), (16, 5), (-1, 7), (3, -1)])
def test_sliding_window(backend, window):
    q, k, v = rand_qkv(2, 70, 83, 2, 2, 32, torch.float32)
    with use_backend(backend):
        check_against_ref(flash_attn_func, q, k, v, torch.float32, window_size=window)


@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize("slope_shape", ["heads", "batch_heads"])
@pytest.mark.parametrize("causal", [False, True])
def test_alibi(backend, slope_shape, causal):
    q, k, v = rand_qkv(2, 41, 57, 4, 2, 32, torch.float32)
    slopes = torch.rand(4) if slope_shape == "heads" else torch.rand(2, 4)
    with use_backend(backend):
        check_against_ref(flash_attn_func, q, k, v, torch.float32, alibi_slopes=slopes, causal=causal)


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_softmax_scale_and_lse(backend):
    q, k, v = rand_qkv(2, 33, 40, 2, 2, 32, torch.float32, requires_grad=False)
    with use_backend(backend):
        out, lse, probs = flash_attn_func(q, k, v, softmax_scale=0.3, causal=True, return_attn_probs=True)
    scores = torch.einsum("bqhd,bkhd->bhqk", q.double(), k.double()) * 0.3
    i = torch.arange(33).view(-1, 1)
    j = torch.arange(40).view(1, -1)
    scores = scores.masked_fill(j > i + 40 - 33, float("-inf"))
    assert lse.shape == (2, 2, 33) and lse.dtype == torch.float32
    torch.testing.assert_close(lse.double(), torch.logsumexp(scores, -1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(probs.double(), torch.softmax(scores, -1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_rows_without_keys_are_zero(backend):
    # causal with seqlen_q > seqlen_k: the first seqlen_q - seqlen_k rows see nothing
    q, k, v = rand_qkv(1, 20, 5, 2, 2, 32, torch.float32)
    with use_backend(backend):
        out, lse, _ = flash_attn_func(q, k, v, causal=True, return_attn_probs=True)
        out.sum().backward()
    assert torch.all(out[:, :15] == 0)
    assert torch.isneginf(lse[:, :, :15]).all() and torch.isfinite(lse[:, :, 15:]).all()
    assert torch.isfinite(q.grad).all() and torch.all(q.grad[:, :15] == 0)


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_deterministic_backward_is_bitwise_repeatable(backend):
    q, k, v = rand_qkv(2, 67, 67, 4, 2, 32, torch.float32)
    g = torch.randn(2, 67, 4, 32)
    grads = []
    with use_backend(backend):
        for _ in range(2):
            out = flash_attn_func(q, k, v, causal=True, deterministic=True)
            grads.append(torch.autograd.grad(out, (q, k, v), g))
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_backends_agree():
    q, k, v = rand_qkv(2, 50, 61, 4, 1, 64, torch.float32, requires_grad=False)
    with use_backend("triton"):
        a = flash_attn_func(q, k, v, causal=True, window_size=(10, -1))
    with use_backend("torch"):
        b = flash_attn_func(q, k, v, causal=True, window_size=(10, -1))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_non_contiguous_inputs():
    # q/k/v as strided views (e.g. of a fused projection) give the same result as contiguous copies
    base = torch.randn(2, 30, 3, 4, 32)
    q, k, v = base[:, :, 0], base[:, :, 1], base[:, :, 2]
    assert not q.is_contiguous()
    out = flash_attn_func(q, k, v)
    ref = flash_attn_func(q.contiguous(), k.contiguous(), v.contiguous())
    torch.testing.assert_close(out, ref)
