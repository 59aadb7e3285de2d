"""flash_attn_with_kvcache: in-place append, per-row valid lengths, split-KV merge, against a float64 reference."""

import math

import pytest
import torch

from seqlab.attention import attention_ref, flash_attn_with_kvcache, use_backend
from seqlab.attention import kvcache as kvc
from seqlab.attention.reference import alibi_bias, local_mask

from .helpers import TOL, rel_err


def _ref_row(q, kk, vv, causal=False, window=(-1, -1), slopes=None, scale=None):
    """float64 output and log-sum-exp (1, sq, h, d), (1, h, sq) of one batch row over its valid keys."""
    q, kk, vv = q.double(), kk.double(), vv.double()
    out = attention_ref(q, kk, vv, causal=causal, window_size=window, alibi_slopes=slopes, softmax_scale=scale)
    sq, h, d = q.shape[1], q.shape[2], q.shape[3]
    sk, hk = kk.shape[1], kk.shape[2]
    kr = kk.repeat_interleave(h // hk, dim=2)
    s = torch.einsum("bqhd,bkhd->bhqk", q, kr) * (d**-0.5 if scale is None else scale)
    if slopes is not None:
        s = s + alibi_bias(slopes, sq, sk).double()
    masked = local_mask(sq, sk, window[0], 0 if causal else window[1], q.device)
    if masked is not None:
        s = s.masked_fill(masked, float("-inf"))
    return out, torch.logsumexp(s, dim=-1)


def _check(q, k_cache, v_cache, kc0, vc0, lens, k_new, v_new, out, lse, dtype, **kw):
    """Compare every row with the float64 reference, and the cache with the expected in-place append."""
    n_new = 0 if k_new is None else k_new.shape[1]
    slopes = kw.get("slopes")
    for b in range(q.shape[0]):
        n = int(lens[b])
        if n_new:
            torch.testing.assert_close(k_cache[b, n : n + n_new], k_new[b], rtol=0, atol=0)
            torch.testing.assert_close(v_cache[b, n : n + n_new], v_new[b], rtol=0, atol=0)
        # everything else untouched
        torch.testing.assert_close(k_cache[b, :n], kc0[b, :n], rtol=0, atol=0)
        torch.testing.assert_close(k_cache[b, n + n_new :], kc0[b, n + n_new :], rtol=0, atol=0)
        torch.testing.assert_close(v_cache[b, :n], vc0[b, :n], rtol=0, atol=0)
        torch.testing.assert_close(v_cache[b, n + n_new :], vc0[b, n + n_new :], rtol=0, atol=0)
        total = n + n_new
        sl = None if slopes is None else (slopes[b : b + 1] if slopes.dim() == 2 else slopes)
        ref, ref_lse = _ref_row(q[b : b + 1], k_cache[b : b + 1, :total], v_cache[b : b + 1, :total],
                                kw.get("causal", False), kw.get("window", (-1, -1)), sl, kw.get("scale"))
        assert rel_err(out[b : b + 1], ref) < TOL[dtype], b
        seen = torch.isfinite(ref_lse)
        assert torch.equal(seen, torch.isfinite(lse[b : b + 1])), b
        if seen.any():
            assert (lse[b : b + 1][seen].double() - ref_lse[seen]).abs().max() < 10 * TOL[dtype], b


def _case(batch, cache, h, hk, d, lens, n_new, seqlen_q, dtype, **kw):
    q = torch.randn(batch, seqlen_q, h, d, dtype=dtype)
    k_cache = torch.randn(batch, cache, hk, d, dtype=dtype)
    v_cache = torch.randn(batch, cache, hk, d, dtype=dtype)
    lens = torch.tensor(lens, dtype=torch.int32)
    k_new = torch.randn(batch, n_new, hk, d, dtype=dtype) if n_new else None
    v_new = torch.randn(batch, n_new, hk, d, dtype=dtype) if n_new else None
    return q, k_cache, v_cache, lens, k_new, v_new


@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("num_splits", [0, 1, 3])
@pytest.mark.parametrize("seqlen_q,n_new", [(1, 1), (3, 3), (2, 0)])
def test_kvcache_matches_reference(backend, causal, num_splits, seqlen_q, n_new):
    batch, cache, h, hk, d = 3, 70, 8, 2, 32
    q, k_cache, v_cache, lens, k_new, v_new = _case(batch, cache, h, hk, d, [5, 40, 63], n_new, seqlen_q,
                                                    torch.float32)
    kc0, vc0 = k_cache.clone(), v_cache.clone()
    slopes = torch.rand(h)
    with use_backend(backend):
        out, lse = flash_attn_with_kvcache(q, k_cache, v_cache, k_new, v_new, cache_seqlens=lens, causal=causal,
                                           alibi_slopes=slopes, num_splits=num_splits, return_softmax_lse=True)
    assert out.shape == q.shape and lse.shape == (batch, h, seqlen_q)
    _check(q, k_cache, v_cache, kc0, vc0, lens, k_new, v_new, out, lse, torch.float32, causal=causal, slopes=slopes)


# GQA 4:1 / MHA / MQA, odd head dims, windows, per-batch alibi, ragged lengths including 0 and a full cache,
# new tokens straddling split boundaries, half precision
CASES = [
    # batch, cache, h, hk, d, lens, n_new, seqlen_q, dtype, window, causal, alibi, splits
    (4, 97, 8, 2, 40, [0, 17, 50, 90], 7, 1, torch.float32, (-1, -1), False, None, 5),
    (2, 130, 6, 6, 24, [128, 3], 2, 2, torch.float32, (20, 0), False, "batch", 0),
    (3, 64, 4, 1, 72, [10, 33, 64], 0, 1, torch.float32, (-1, -1), True, "head", 2),
    (2, 200, 16, 2, 64, [150, 77], 9, 9, torch.float32, (31, 3), False, None, 4),
    (2, 90, 8, 2, 32, [40, 81], 1, 1, torch.bfloat16, (-1, -1), True, None, 3),
    (2, 90, 8, 4, 32, [9, 60], 3, 3, torch.float16, (8, -1), True, "head", 0),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_kvcache_shapes(case):
    batch, cache, h, hk, d, lens, n_new, sq, dtype, window, causal, alibi, splits = CASES[case]
    q, k_cache, v_cache, lens, k_new, v_new = _case(batch, cache, h, hk, d, lens, n_new, sq, dtype)
    kc0, vc0 = k_cache.clone(), v_cache.clone()
    slopes = {None: None, "head": torch.rand(h), "batch": torch.rand(batch, h)}[alibi]
    out, lse = flash_attn_with_kvcache(q, k_cache, v_cache, k_new, v_new, cache_seqlens=lens, causal=causal,
                                       window_size=window, alibi_slopes=slopes, num_splits=splits,
                                       return_softmax_lse=True)
    assert out.dtype == dtype and lse.dtype == torch.float32
    _check(q, k_cache, v_cache, kc0, vc0, lens, k_new, v_new, out, lse, dtype, causal=causal, window=window,
           slopes=slopes)


def test_kvcache_int_and_none_lengths_strided_cache():
    """int / None cache_seqlens, a cache that is a strided view of a bigger buffer, non-contiguous q and k."""
    batch, h, hk, d = 2, 4, 2, 16
    big_k = torch.randn(3, batch, 50, hk, d)
    big_v = torch.randn(3, batch, 50, hk, d)
    k_cache, v_cache = big_k[1], big_v[1]
    q = torch.randn(batch, h, 1, d).transpose(1, 2)
    k_new = torch.randn(batch, hk, 2, d).transpose(1, 2)
    v_new = torch.randn(batch, 2, hk, d)
    kc0 = k_cache.clone()
    out = flash_attn_with_kvcache(q, k_cache, v_cache, k_new, v_new, cache_seqlens=30, softmax_scale=0.3)
    for b in range(batch):
        ref, _ = _ref_row(q[b : b + 1], k_cache[b : b + 1, :32], v_cache[b : b + 1, :32], scale=0.3)
        assert rel_err(out[b : b + 1], ref) < 1e-5
    torch.testing.assert_close(k_cache[:, 30:32], k_new)
    torch.testing.assert_close(v_cache[:, 30:32], v_new)
    torch.testing.assert_close(k_cache[:, :30], kc0[:, :30], rtol=0, atol=0)
    torch.testing.assert_close(k_cache[:, 32:], kc0[:, 32:], rtol=0, atol=0)
    out = flash_attn_with_kvcache(q, k_cache, v_cache)  # whole cache valid
    ref = attention_ref(q.double(), k_cache.double(), v_cache.double())
    assert rel_err(out, ref) < 1e-5


def test_kvcache_neighbour_layers_untouched():
    big_k = torch.randn(3, 2, 20, 2, 16)
    keep = big_k.clone()
    big_v = torch.randn(3, 2, 20, 2, 16)
    flash_attn_with_kvcache(torch.randn(2, 1, 4, 16), big_k[1], big_v[1], torch.randn(2, 1, 2, 16),
                            torch.randn(2, 1, 2, 16), cache_seqlens=torch.tensor([19, 0], dtype=torch.int32))
    torch.testing.assert_close(big_k[0], keep[0], rtol=0, atol=0)
    torch.testing.assert_close(big_k[2], keep[2], rtol=0, atol=0)
    torch.testing.assert_close(big_k[1, 0, :19], keep[1, 0, :19], rtol=0, atol=0)
    torch.testing.assert_close(big_k[1, 1, 1:], keep[1, 1, 1:], rtol=0, atol=0)


def test_kvcache_kernel_clamps_unchecked_lengths():
    """What an unchecked (CUDA) length does: clamped to the cache, no write outside it, excess new tokens dropped."""
    batch, cache, h, hk, d = 3, 40, 4, 2, 16
    buf_k = torch.randn(batch, cache + 8, hk, d)
    buf_v = torch.randn(batch, cache + 8, hk, d)
    k_cache, v_cache = buf_k[:, :cache], buf_v[:, :cache]  # the cache is followed by memory it must not touch
    keep_k, keep_v = buf_k.clone(), buf_v.clone()
    q = torch.randn(batch, 1, h, d)
    k_new, v_new = torch.randn(batch, 3, hk, d), torch.randn(batch, 3, hk, d)
    lens = torch.tensor([-5, 38, 100], dtype=torch.int32)
    for splits in (1, 4):
        buf_k.copy_(keep_k)
        buf_v.copy_(keep_v)
        out, lse = kvc._triton_decode(q, k_cache, v_cache, k_new, v_new, lens, cache, 3, d**-0.5, -1, -1, None,
                                      splits, True)
        torch.testing.assert_close(buf_k[:, cache:], keep_k[:, cache:], rtol=0, atol=0)
        torch.testing.assert_close(buf_v[:, cache:], keep_v[:, cache:], rtol=0, atol=0)
        torch.testing.assert_close(k_cache[0, :3], k_new[0])  # negative length counts as 0
        torch.testing.assert_close(k_cache[1, 38:], k_new[1, :2])  # only the tokens that fit are written
        torch.testing.assert_close(k_cache[2], keep_k[2, :cache])  # length past the end: nothing written
        for b, total in enumerate((3, cache, cache)):
            ref, _ = _ref_row(q[b : b + 1], k_cache[b : b + 1, :total], v_cache[b : b + 1, :total])
            assert rel_err(out[b : b + 1], ref) < 1e-5


def test_kvcache_many_splits_and_empty_rows():
    """More splits than key tiles; a row with no valid key outputs 0 with lse -inf."""
    q, k_cache, v_cache, lens, _, _ = _case(2, 50, 4, 2, 16, [0, 50], 0, 1, torch.float32)
    out, lse = flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=lens, num_splits=7,
                                       return_softmax_lse=True)
    assert torch.equal(out[0], torch.zeros_like(out[0])) and torch.isneginf(lse[0]).all()
    ref, ref_lse = _ref_row(q[1:], k_cache[1:], v_cache[1:])
    assert rel_err(out[1:], ref) < 1e-5
    assert (lse[1:].double() - ref_lse).abs().max() < 1e-4


def test_kvcache_errors(monkeypatch):
    q = torch.randn(2, 1, 4, 16)
    kc = torch.randn(2, 10, 2, 16)
    with pytest.raises(ValueError, match="cache_seqlens"):
        flash_attn_with_kvcache(q, kc, kc.clone(), torch.randn(2, 1, 2, 16), torch.randn(2, 1, 2, 16))
    with pytest.raises(ValueError, match="cache_seqlens"):
        flash_attn_with_kvcache(q, kc, kc.clone(), torch.randn(2, 2, 2, 16), torch.randn(2, 2, 2, 16),
                                cache_seqlens=9)
    with pytest.raises(ValueError, match="cache_seqlens"):
        flash_attn_with_kvcache(q, kc, kc.clone(), cache_seqlens=-1)
    with pytest.raises(ValueError, match="cache_seqlens"):  # CPU tensors are always checked
        flash_attn_with_kvcache(q, kc, kc.clone(), torch.randn(2, 1, 2, 16), torch.randn(2, 1, 2, 16),
                                cache_seqlens=torch.tensor([3, 10], dtype=torch.int32))
    with pytest.raises(TypeError, match="cache_seqlens"):
        flash_attn_with_kvcache(q, kc, kc.clone(), cache_seqlens=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="cache_seqlens"):
        flash_attn_with_kvcache(q, kc, kc.clone(), cache_seqlens=torch.tensor([1, 2, 3], dtype=torch.int32))
    with pytest.raises(ValueError, match="k and v"):
        flash_attn_with_kvcache(q, kc, kc.clone(), k=torch.randn(2, 1, 2, 16), cache_seqlens=3)
    with pytest.raises(ValueError, match="^k must have shape"):
        flash_attn_with_kvcache(q, kc, kc.clone(), torch.randn(2, 1, 3, 16), torch.randn(2, 1, 2, 16), 3)
    with pytest.raises(ValueError, match="^v must have shape"):
        flash_attn_with_kvcache(q, kc, kc.clone(), torch.randn(2, 1, 2, 16), torch.randn(2, 1, 2, 16).double(), 3)
    with pytest.raises(ValueError, match="num_splits"):
        flash_attn_with_kvcache(q, kc, kc.clone(), num_splits=-1)
    with pytest.raises(ValueError, match="contiguous last dimension"):
        flash_attn_with_kvcache(q, kc, torch.randn(2, 10, 16, 2).transpose(2, 3))
    with pytest.raises(TypeError, match="dtype"):
        flash_attn_with_kvcache(q.half(), kc, kc.clone())
    with pytest.raises(TypeError, match="dtype"):
        flash_attn_with_kvcache(q.double(), kc.double(), kc.double())
    with pytest.raises(ValueError, match="heads"):
        flash_attn_with_kvcache(torch.randn(2, 1, 3, 16), kc, kc.clone())
    with pytest.raises(ValueError, match="dimensions"):
        flash_attn_with_kvcache(q[0], kc, kc.clone())
    with pytest.raises(ValueError, match="alibi_slopes"):
        flash_attn_with_kvcache(q, kc, kc.clone(), alibi_slopes=torch.rand(3))


def test_kvcache_plan_heuristic():
    """The split heuristic fills a 132-SM GPU at batch 1 and stays at one split for big batches."""
    assert kvc._splits_heuristic(4, math.ceil(8192 / 64), 132) == 33
    assert kvc._splits_heuristic(4, math.ceil(1024 / 64), 132) == 16  # at least one key tile per split
    assert kvc._splits_heuristic(16, 128, 132) == 8
    assert kvc._splits_heuristic(64 * 4, 128, 132) == 1
    assert kvc._splits_heuristic(4, 1, 132) == 1
