"""A small pre-norm Transformer encoder with selectable attention, for parameter-matched comparisons.

``attn_impl='seqlab'`` uses :class:`seqlab.attention.MultiheadAttention` (FlashAttention kernels, imported
lazily so this module loads without it); ``attn_impl='math'`` materialises ``softmax(Q K^T / sqrt(d)) V``
in plain PyTorch. Both have the same parameters (q/k/v/out projections with bias), so a model's
parameter count does not depend on the choice.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MathAttention", "TransformerBlock", "Transformer", "transformer_ff_for_params"]


class MathAttention(nn.Module):
    """Multi-head self-attention computed the textbook way (the (B, heads, L, L) scores are materialised).

    Same constructor subset and ``forward(query, key=None, value=None, key_padding_mask=None,
    need_weights=False) -> (output, None)`` contract as seqlab's MultiheadAttention (batch-first).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 causal: bool = False, device=None, dtype=None):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
        fk = {"device": device, "dtype": dtype}
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.dropout, self.causal = dropout, causal
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **fk)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **fk)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **fk)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **fk)

    def forward(self, query, key=None, value=None, key_padding_mask=None, need_weights=False):
        key = query if key is None else key
        value = key if value is None else value
        B, Lq, _ = query.shape
        Lk = key.shape[1]
        split = lambda t, L: t.view(B, L, self.num_heads, self.head_dim).transpose(1, 2)
        q, k, v = split(self.q_proj(query), Lq), split(self.k_proj(key), Lk), split(self.v_proj(value), Lk)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)  # (B, heads, Lq, Lk)
        if self.causal:
            mask = torch.ones(Lq, Lk, dtype=torch.bool, device=s.device).tril(Lk - Lq)
            s = s.masked_fill(~mask, float("-inf"))
        if key_padding_mask is not None:
            s = s.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        # half-precision scores are normalised in float32, as fused kernels do
        low = s.dtype in (torch.float16, torch.bfloat16)
        p = torch.softmax(s.float() if low else s, dim=-1).to(q.dtype)
        if self.training and self.dropout > 0:
            p = F.dropout(p, self.dropout)
        o = (p @ v).transpose(1, 2).reshape(B, Lq, self.embed_dim)
        return self.out_proj(o), None


def _make_attention(attn_impl, d_model, n_heads, dropout, causal):
    if attn_impl == "math":
        return MathAttention(d_model, n_heads, dropout=dropout, causal=causal)
    if attn_impl == "seqlab":
        from seqlab.attention import MultiheadAttention  # lazy: the attention package is optional here

        return MultiheadAttention(d_model, n_heads, dropout=dropout, causal=causal, batch_first=True)
    raise ValueError(f"attn_impl must be 'seqlab' or 'math', got {attn_impl!r}")


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + attn(norm(x))`` then ``x + FFN(norm(x))`` (GELU, width ``d_ff``)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0, attn_impl: str = "seqlab",
                 causal: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = _make_attention(attn_impl, d_model, n_heads, dropout, causal)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, d_model) -> (B, L, d_model)."""
        x = x + self.drop(self.attn(self.norm1(x))[0])
        return x + self.drop(self.ff(self.norm2(x)))


class Transformer(nn.Module):
    """Encoder -> ``n_layers`` pre-norm blocks -> norm -> decoder (same I/O contract as SequenceModel).

    Args:
        d_input, d_output, d_model, n_layers, n_heads, d_ff: sizes (``d_ff`` default 4 * d_model).
        vocab_size: embed token ids (B, L) instead of projecting (B, L, d_input).
        attn_impl: 'seqlab' (FlashAttention) or 'math'.
        causal: causal attention. pool: 'none', 'mean' or 'last'.
        pos: 'sinusoidal' (added, no parameters) or 'none'.

    ``forward(x) -> (out, None)``, out (B, L, d_output) or (B, d_output) when pooled.
    """

    def __init__(self, d_input: int, d_output: int, d_model: int = 256, n_layers: int = 4, n_heads: int = 4,
                 d_ff: int | None = None, vocab_size: int | None = None, attn_impl: str = "seqlab",
                 dropout: float = 0.0, causal: bool = False, pool: str = "none", pos: str = "sinusoidal"):
        super().__init__()
        if pool not in ("none", "mean", "last"):
            raise ValueError(f"pool must be 'none', 'mean' or 'last', got {pool!r}")
        if pos not in ("sinusoidal", "none"):
            raise ValueError(f"pos must be 'sinusoidal' or 'none', got {pos!r}")
        self.vocab_size, self.pool, self.pos, self.d_model = vocab_size, pool, pos, d_model
        self.encoder = nn.Embedding(vocab_size, d_model) if vocab_size else nn.Linear(d_input, d_model)
        d_ff = 4 * d_model if d_ff is None else d_ff
        self.blocks = nn.ModuleList(
            [TransformerBlock(d_model, n_heads, d_ff, dropout, attn_impl, causal) for _ in range(n_layers)]
        )
        self.norm = nn.LayerNorm(d_model)
        self.decoder = nn.Linear(d_model, d_output)

    def _pos(self, L, device, dtype):
        pos = torch.arange(L, device=device, dtype=torch.float32)[:, None]
        i = torch.arange(0, self.d_model, 2, device=device, dtype=torch.float32)
        ang = pos / (10000 ** (i / self.d_model))
        pe = torch.zeros(L, self.d_model, device=device)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(ang), torch.cos(ang[:, : self.d_model // 2])
        return pe.to(dtype)

    def forward(self, x: torch.Tensor):
        """x (B, L) ids or (B, L, d_input) -> (out, None)."""
        h = self.encoder(x)
        if h.dim() != 3:
            raise ValueError(f"x must be (B, L) tokens or (B, L, d_input), got shape {tuple(x.shape)}")
        if self.pos == "sinusoidal":
            h = h + self._pos(h.shape[1], h.device, h.dtype)
        for blk in self.blocks:
            h = blk(h)
        h = self.norm(h)
        if self.pool == "mean":
            h = h.mean(1)
        elif self.pool == "last":
            h = h[:, -1]
        return self.decoder(h), None


def transformer_ff_for_params(target: int, d_input: int, d_output: int, d_model: int, n_layers: int,
                              vocab_size: int | None = None) -> int:
    """FFN width ``d_ff`` that brings a :class:`Transformer` closest to ``target`` parameters (>= 1)."""
    base = Transformer(d_input, d_output, d_model, n_layers, d_ff=1, vocab_size=vocab_size, attn_impl="math")
    n_base = sum(p.numel() for p in base.parameters())
    per_unit = n_layers * (2 * d_model + 1)  # each hidden unit: d_model in, d_model out, one bias
    return max(1, round((target - n_base) / per_unit) + 1)
