"""``nn.Module`` front-ends of the attention kernels."""

from __future__ import annotations

import torch
from torch import nn

from .interface import flash_attn_func, flash_attn_varlen_func


def _unpad(x: torch.Tensor, valid: torch.Tensor):
    """(B, N, ...) and bool valid (B, N) -> packed (total, ...), flat indices, int32 cu_seqlens, max len."""
    lengths = valid.sum(dim=1, dtype=torch.int32)
    idx = valid.flatten().nonzero(as_tuple=True)[0]
    cu = torch.zeros(valid.shape[0] + 1, dtype=torch.int32, device=x.device)
    cu[1:] = torch.cumsum(lengths, 0)
    return x.flatten(0, 1).index_select(0, idx), idx, cu, int(lengths.max()) if lengths.numel() else 0


class MultiheadAttention(nn.Module):
    """Multi-head (and grouped-query) attention on seqlab's FlashAttention kernels.

    Args:
        embed_dim: model width E; ``embed_dim / num_heads`` must be a multiple of 8 up to 256.
        num_heads: query heads H.
        num_kv_heads: key/value heads (GQA/MQA); defaults to ``num_heads``; must divide it.
        dropout: attention-probability dropout, active in training mode only.
        bias: add biases to the input and output projections.
        causal: causal self-attention (bottom-right aligned when lengths differ).
        batch_first: inputs are (batch, seq, E) if True (default) else (seq, batch, E).
        kdim, vdim: feature sizes of key and value inputs (default ``embed_dim``).

    ``forward(query, key=None, value=None, key_padding_mask=None, need_weights=False)`` returns
    ``(output, weights)`` like ``torch.nn.MultiheadAttention``: output has query's shape; weights are
    the head-averaged attention (batch, seq_q, seq_k) when ``need_weights`` else None. ``key`` and
    ``value`` default to ``query`` (self-attention). ``key_padding_mask`` is bool (batch, seq_k) with
    True marking padding (PyTorch's convention); it routes to the varlen kernels, and in
    self-attention the padded query positions output zeros.
    """

    def __init__(self, embed_dim: int, num_heads: int, num_kv_heads: int | None = None, dropout: float = 0.0,
                 bias: bool = True, causal: bool = False, batch_first: bool = True, kdim: int | None = None,
                 vdim: int | None = None, device=None, dtype=None):
        super().__init__()
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
        if num_kv_heads <= 0 or num_heads % num_kv_heads != 0:
            raise ValueError(f"num_heads={num_heads} must be divisible by num_kv_heads={num_kv_heads}")
        head_dim = embed_dim // num_heads
        if head_dim % 8 != 0 or head_dim > 256:
            raise ValueError(f"head dim embed_dim/num_heads={head_dim} must be a multiple of 8 up to 256")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        fk = dict(device=device, dtype=dtype)
        self.embed_dim, self.num_heads, self.num_kv_heads, self.head_dim = embed_dim, num_heads, num_kv_heads, head_dim
        self.dropout, self.causal, self.batch_first = dropout, causal, batch_first
        kv_dim = num_kv_heads * head_dim
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **fk)
        self.k_proj = nn.Linear(kdim or embed_dim, kv_dim, bias=bias, **fk)
        self.v_proj = nn.Linear(vdim or embed_dim, kv_dim, bias=bias, **fk)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **fk)

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None, value: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = False):
        self_attn = key is None or key is query
        key = query if key is None else key
        value = key if value is None else value
        for name, t in (("query", query), ("key", key), ("value", value)):
            if not isinstance(t, torch.Tensor) or t.dim() != 3:
                raise ValueError(f"{name} must be a 3-D tensor, got {getattr(t, 'shape', type(t))}")
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        batch, seq_q, _ = query.shape
        seq_k = key.shape[1]
        q = self.q_proj(query).view(batch, seq_q, self.num_heads, self.head_dim)
        k = self.k_proj(key).view(batch, seq_k, self.num_kv_heads, self.head_dim)
        v = self.v_proj(value).view(batch, seq_k, self.num_kv_heads, self.head_dim)
        p = self.dropout if self.training else 0.0
        weights = None
        if key_padding_mask is not None:
            if key_padding_mask.dtype != torch.bool:
                raise TypeError(f"key_padding_mask must be bool (True = padding), got {key_padding_mask.dtype}")
            if key_padding_mask.shape != (batch, seq_k):
                raise ValueError(f"key_padding_mask must have shape ({batch}, {seq_k}), "
                                 f"got {tuple(key_padding_mask.shape)}")
            if need_weights:
                raise ValueError("need_weights=True is not supported together with key_padding_mask")
            valid_k = ~key_padding_mask
            k_u, _, cu_k, max_k = _unpad(k, valid_k)
            v_u = v.flatten(0, 1).index_select(0, valid_k.flatten().nonzero(as_tuple=True)[0])
            valid_q = valid_k if (self_attn and seq_q == seq_k) else torch.ones(batch, seq_q, dtype=torch.bool,
                                                                                device=q.device)
            q_u, q_idx, cu_q, max_q = _unpad(q, valid_q)
            o_u = flash_attn_varlen_func(q_u, k_u, v_u, cu_q, cu_k, max(max_q, 1), max(max_k, 1), dropout_p=p,
                                         causal=self.causal)
            out = torch.zeros(batch * seq_q, self.num_heads, self.head_dim, dtype=o_u.dtype, device=o_u.device)
            out = out.index_copy(0, q_idx, o_u).view(batch, seq_q, self.embed_dim)
        elif need_weights:
            out, _, probs = flash_attn_func(q, k, v, dropout_p=p, causal=self.causal, return_attn_probs=True)
            weights = probs.mean(dim=1)
            out = out.reshape(batch, seq_q, self.embed_dim)
        else:
            out = flash_attn_func(q, k, v, dropout_p=p, causal=self.causal).reshape(batch, seq_q, self.embed_dim)
        out = self.out_proj(out)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights
