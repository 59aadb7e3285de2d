"""flash_attn_with_kvcache: in-place append, per-row valid lengths, split-KV merge."""

import pytest
import torch

from seqlab.attention import attention_ref, flash_attn_with_kvcache, use_backend

from .helpers import rel_err


@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("num_splits", [0, 1, 3])
@pytest.mark.parametrize("seqlen_q,n_new", [(1, 1), (3, 3), (2, 0)])
def test_kvcache_matches_reference(backend, causal, num_splits, seqlen_q, n_new):
    batch, cache, h, hk, d = 3, 70, 8, 2, 32
    q = torch.randn(batch, seqlen_q, h, d)
    k_cache = torch.randn(batch, cache, hk, d)
    v_cache = torch.randn(batch, cache, hk, d)
    lens = torch.tensor([5, 40, 63], dtype=torch.int32)
    k_new = torch.randn(batch, n_new, hk, d) if n_new else None
    v_new = torch.randn(batch, n_new, hk, d) if n_new else None
    kc0, vc0 = k_cache.clone(), v_cache.clone()
    slopes = torch.rand(h)
    with use_backend(backend):
        out, lse = flash_attn_with_kvcache(q, k_cache, v_cache, k_new, v_new, cache_seqlens=lens, causal=causal,
                                           alibi_slopes=slopes, num_splits=num_splits, return_softmax_lse=True)
    for b in range(batch):
        n = int(lens[b])
        if n_new:  # appended in place, the rest untouched
            torch.testing.assert_close(k_cache[b, n : n + n_new], k_new[b])
            torch.testing.assert_close(v_cache[b, n : n + n_new], v_new[b])
            torch.testing.assert_close(k_cache[b, :n], kc0[b, :n])
            torch.testing.assert_close(k_cache[b, n + n_new :], kc0[b, n + n_new :])
            torch.testing.assert_close(v_cache[b, :n], vc0[b, :n])
        total = n + n_new
        kk, vv = k_cache[b : b + 1, :total].double(), v_cache[b : b + 1, :total].double()
        ref = attention_ref(q[b : b + 1].double(), kk, vv, causal=causal, alibi_slopes=slopes)
        assert rel_err(out[b : b + 1], ref) < 1e-5
        assert torch.isfinite(lse[b]).all()
    assert out.shape == q.shape and lse.shape == (batch, h, seqlen_q)


def test_kvcache_errors():
    q = torch.randn(2, 1, 4, 16)
    kc = torch.randn(2, 10, 2, 16)
    with pytest.raises(ValueError, match="cache_seqlens"):
        flash_attn_with_kvcache(q, kc, kc.clone(), torch.randn(2, 1, 2, 16), torch.randn(2, 1, 2, 16))
    with pytest.raises(ValueError, match="cache_seqlens"):
        flash_attn_with_kvcache(q, kc, kc.clone(), torch.randn(2, 2, 2, 16), torch.randn(2, 2, 2, 16),
                                cache_seqlens=9)
    with pytest.raises(TypeError, match="cache_seqlens"):
        flash_attn_with_kvcache(q, kc, kc.clone(), cache_seqlens=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="k and v"):
        flash_attn_with_kvcache(q, kc, kc.clone(), k=torch.randn(2, 1, 2, 16), cache_seqlens=3)
    with pytest.raises(ValueError, match="num_splits"):
        flash_attn_with_kvcache(q, kc, kc.clone(), num_splits=-1)
