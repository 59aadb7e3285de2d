"""S4 residual block and the stacked sequence model the paper's experiments use."""

from __future__ import annotations

import torch
from torch import nn

from ._block_step import block_step
from .s4 import S4

__all__ = ["S4Block", "SequenceModel"]

_ACTS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh, "id": nn.Identity}


def _dropout(p: float, tie: bool) -> nn.Module:
    if p <= 0:
        return nn.Identity()
    # tied dropout: one mask per (batch, feature), shared over the sequence (Dropout1d on (B, H, L))
    return nn.Dropout1d(p) if tie else nn.Dropout(p)


class S4Block(nn.Module):
    """Residual block ``x + dropout(GLU(W act(S4(norm(x)))))`` (pre-norm) or the post-norm variant.

    Args:
        d_model: H. ``**layer_kwargs`` go to :class:`S4` (d_state, mode, init, channels, ...).
        activation: 'gelu' (default), 'relu', 'silu', 'tanh' or 'id' after the SSM.
        dropout: dropout probability (tied over the sequence when ``tie_dropout``).
        prenorm: LayerNorm before the layer (True) or after the residual sum (False).
        ff_expand: if > 0, a second residual sub-block ``x + MLP(norm(x))`` with hidden width
            ``ff_expand * d_model`` (used to parameter-match Transformers).

    ``forward(x (B, L, H), state=None) -> (y (B, L, H), next_state)``; ``step(x_t (B, H), state)``.
    """

    def __init__(self, d_model: int, activation: str = "gelu", dropout: float = 0.0, prenorm: bool = True,
                 tie_dropout: bool = True, ff_expand: int = 0, **layer_kwargs):
        super().__init__()
        if activation not in _ACTS:
            raise ValueError(f"activation must be one of {sorted(_ACTS)}, got {activation!r}")
        if layer_kwargs.get("transposed"):
            raise ValueError("S4Block works on (B, L, H); do not pass transposed=True")
        self.prenorm = prenorm
        self.layer = S4(d_model, **layer_kwargs)
        c = self.layer.channels
        self.norm = nn.LayerNorm(d_model)
        self.act = _ACTS[activation]()
        # GLU output projection: (channels * H) -> 2H -> H
        self.out = nn.Sequential(nn.Linear(c * d_model, 2 * d_model), nn.GLU(dim=-1))
        self.drop = _dropout(dropout, tie_dropout)
        self.ff = None
        if ff_expand > 0:
            self.ff_norm = nn.LayerNorm(d_model)
            self.ff = nn.Sequential(nn.Linear(d_model, ff_expand * d_model), nn.GELU(),
                                    nn.Linear(ff_expand * d_model, d_model))

    def _drop(self, y):
        if isinstance(self.drop, nn.Dropout1d):
            return self.drop(y.transpose(1, 2)).transpose(1, 2)
        return self.drop(y)

    def _ffn(self, x):
        if self.ff is None:
            return x
        return x + self._drop(self.ff(self.ff_norm(x)))

    def forward(self, x: torch.Tensor, state=None, return_state: bool = False):
        """x (B, L, H) -> (y (B, L, H), next_state or None)."""
        z = self.norm(x) if self.prenorm else x
        z, next_state = self.layer(z, state=state, return_state=return_state)
        z = self._drop(self.out(self.act(z)))
        y = x + z
        if not self.prenorm:
            y = self.norm(y)
        return self._ffn(y), next_state

    def setup_step(self):
        """Prepare the S4 layer's recurrence (see :meth:`S4.setup_step`)."""
        self.layer.setup_step()

    def default_state(self, batch: int, device=None):
        """Zero state of the S4 layer, complex (batch, H, n_modes)."""
        return self.layer.default_state(batch, device=device)

    def step(self, x_t: torch.Tensor, state):
        """x_t (B, H) -> (y_t (B, H), next_state); eval-mode semantics (dropout off).

        Without autograd, a default block (prenorm, GELU, no FFN) whose S4 layer has the fused Triton
        step runs as two Triton launches (``_block_step``; ``SEQLAB_S4_BLOCK_FUSED=0`` disables it)."""
        fused = block_step(self, x_t, state)
        if fused is not None:
            return fused
        z = self.norm(x_t) if self.prenorm else x_t
        z, state = self.layer.step(z, state)
        y = x_t + self.out(self.act(z))
        if not self.prenorm:
            y = self.norm(y)
        if self.ff is not None:
            y = y + self.ff(self.ff_norm(y))
        return y, state


class SequenceModel(nn.Module):
    """Encoder -> ``n_layers`` x :class:`S4Block` -> final norm -> decoder.

    Args:
        d_input: input features (ignored when ``vocab_size`` is given: token ids are embedded).
        d_output: output features (e.g. classes or vocabulary size).
        d_model, n_layers: width and depth.
        vocab_size: embed integer tokens (B, L) instead of projecting (B, L, d_input).
        pool: 'none' (per-position outputs (B, L, d_output)), 'mean' or 'last' ((B, d_output)).
        **block_kwargs: forwarded to every :class:`S4Block` (and through it to :class:`S4`).
    """

    def __init__(self, d_input: int, d_output: int, d_model: int = 256, n_layers: int = 4,
                 vocab_size: int | None = None, pool: str = "none", **block_kwargs):
        super().__init__()
        if pool not in ("none", "mean", "last"):
            raise ValueError(f"pool must be 'none', 'mean' or 'last', got {pool!r}")
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.vocab_size, self.pool = vocab_size, pool
        self.encoder = nn.Embedding(vocab_size, d_model) if vocab_size else nn.Linear(d_input, d_model)
        self.blocks = nn.ModuleList([S4Block(d_model, **block_kwargs) for _ in range(n_layers)])
        self.norm = nn.LayerNorm(d_model)
        self.decoder = nn.Linear(d_model, d_output)

    def _encode(self, x):
        if self.vocab_size:
            if x.dtype not in (torch.int32, torch.int64):
                raise TypeError(f"x must hold integer token ids when vocab_size is set, got {x.dtype}")
            return self.encoder(x)
        if not x.is_floating_point():
            raise TypeError(f"x must be floating (B, L, d_input), got {x.dtype}")
        return self.encoder(x)

    def forward(self, x: torch.Tensor, state: list | None = None, return_state: bool = False):
        """x (B, L) token ids or (B, L, d_input) -> (out, next_states); out (B, L, d_output) or pooled."""
        h = self._encode(x)
        if h.dim() != 3:
            raise ValueError(f"x must be (B, L) tokens or (B, L, d_input), got shape {tuple(x.shape)}")
        states = []
        for i, blk in enumerate(self.blocks):
            h, s = blk(h, state=None if state is None else state[i], return_state=return_state)
            states.append(s)
        h = self.norm(h)
        if self.pool == "mean":
            h = h.mean(1)
        elif self.pool == "last":
            h = h[:, -1]
        out = self.decoder(h)
        return out, (states if (state is not None or return_state) else None)

    def setup_step(self):
        """Prepare every block's recurrence."""
        for blk in self.blocks:
            blk.setup_step()

    def default_state(self, batch: int, device=None) -> list:
        """List of per-block zero states."""
        return [blk.default_state(batch, device=device) for blk in self.blocks]

    def step(self, x_t: torch.Tensor, state: list):
        """One token: x_t (B,) ids or (B, d_input) -> (out (B, d_output), next_states)."""
        h = self._encode(x_t)
        new = []
        for blk, s in zip(self.blocks, state):
            h, s = blk.step(h, s)
            new.append(s)
        return self.decoder(self.norm(h)), new
