"""Bad input raises a clear TypeError/ValueError naming the argument."""

import pytest
import torch

from seqlab.attention import MultiheadAttention, flash_attn_func, flash_attn_varlen_func


def qkv(b=2, s=8, h=2, d=32, dtype=torch.float32):
    return (torch.randn(b, s, h, d, dtype=dtype) for _ in range(3))


def test_wrong_rank():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="q must have 4 dimensions"):
        flash_attn_func(q[0], k, v)


def test_not_a_tensor():
    q, k, v = qkv()
    with pytest.raises(TypeError, match="k must be a torch.Tensor"):
        flash_attn_func(q, k.numpy(), v)


def test_mismatched_dtypes():
    q, k, v = qkv()
    with pytest.raises(TypeError, match="k has dtype"):
        flash_attn_func(q, k.half(), v)


def test_unsupported_dtype():
    q, k, v = qkv(dtype=torch.float64)
    with pytest.raises(TypeError, match="q has dtype"):
        flash_attn_func(q, k, v)


def test_mismatched_devices():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="v is on"):
        flash_attn_func(q, k, v.to("meta"))


@pytest.mark.parametrize("d", [12, 264, 4])
def test_unsupported_head_dim(d):
    q, k, v = qkv(d=d)
    with pytest.raises(ValueError, match="head dim"):
        flash_attn_func(q, k, v)


def test_head_dim_mismatch():
    q, _, _ = qkv(d=32)
    k, v = torch.randn(2, 8, 2, 64), torch.randn(2, 8, 2, 64)
    with pytest.raises(ValueError, match="head dim"):
        flash_attn_func(q, k, v)


def test_heads_not_divisible():
    q = torch.randn(2, 8, 3, 32)
    k = v = torch.randn(2, 8, 2, 32)
    with pytest.raises(ValueError, match="divisible"):
        flash_attn_func(q, k, v)


def test_batch_and_kv_shape_mismatch():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="batch size"):
        flash_attn_func(q, k[:1], v[:1])
    with pytest.raises(ValueError, match="same shape"):
        flash_attn_func(q, k, v[:, :5])


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_out_of_range(p):
    q, k, v = qkv()
    with pytest.raises(ValueError, match="dropout_p"):
        flash_attn_func(q, k, v, dropout_p=p)


@pytest.mark.parametrize("window", [(1, 2, 3), (-2, 0), "ab", (1.5, 0)])
def test_bad_window(window):
    q, k, v = qkv()
    with pytest.raises((ValueError, TypeError), match="window_size"):
        flash_attn_func(q, k, v, window_size=window)


def test_bad_alibi():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="alibi_slopes"):
        flash_attn_func(q, k, v, alibi_slopes=torch.rand(3))
    with pytest.raises(ValueError, match="alibi_slopes"):
        flash_attn_func(q, k, v, alibi_slopes=torch.rand(3, 2))
    with pytest.raises(TypeError, match="alibi_slopes"):
        flash_attn_func(q, k, v, alibi_slopes=torch.rand(2).half())


def _varlen(cu_q, cu_k=None, max_q=8, max_k=8, total=10):
    q = k = v = torch.randn(total, 2, 16)
    cu_k = cu_q if cu_k is None else cu_k
    return flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k)


def test_bad_cu_seqlens():
    with pytest.raises(TypeError, match="cu_seqlens_q must be int32"):
        _varlen(torch.tensor([0, 4, 10], dtype=torch.int64))
    with pytest.raises(ValueError, match="cu_seqlens_q must be non-decreasing"):
        _varlen(torch.tensor([0, 6, 4, 10], dtype=torch.int32))
    with pytest.raises(ValueError, match=r"cu_seqlens_q\[-1\]"):
        _varlen(torch.tensor([0, 4, 9], dtype=torch.int32))
    with pytest.raises(ValueError, match="must start at 0"):
        _varlen(torch.tensor([1, 4, 10], dtype=torch.int32))
    with pytest.raises(ValueError, match="max_seqlen_q"):
        _varlen(torch.tensor([0, 2, 10], dtype=torch.int32), max_q=4)
    with pytest.raises(ValueError, match="sequences"):
        _varlen(torch.tensor([0, 4, 10], dtype=torch.int32), torch.tensor([0, 10], dtype=torch.int32), max_k=10)


def test_module_errors():
    with pytest.raises(ValueError, match="divisible"):
        MultiheadAttention(64, 3)
    with pytest.raises(ValueError, match="num_kv_heads"):
        MultiheadAttention(64, 4, num_kv_heads=3)
    with pytest.raises(ValueError, match="head dim"):
        MultiheadAttention(48, 4)
    mha = MultiheadAttention(64, 4)
    x = torch.randn(2, 5, 64)
    with pytest.raises(TypeError, match="key_padding_mask"):
        mha(x, key_padding_mask=torch.zeros(2, 5))
    with pytest.raises(ValueError, match="key_padding_mask"):
        mha(x, key_padding_mask=torch.zeros(2, 4, dtype=torch.bool))
