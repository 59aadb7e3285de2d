"""Fused S4Block recurrent step (``seqlab.ssm._block_step``) against the unfused per-op step."""

import os

import pytest
import torch

from seqlab.ssm import _block_step, blocks
from seqlab.ssm.blocks import S4Block, SequenceModel
from seqlab.ssm.kernels import HAS_TRITON

pytestmark = pytest.mark.skipif(not HAS_TRITON, reason="triton not installed")


def _rel(a, b):
    if a.is_complex():
        a, b = torch.view_as_real(a), torch.view_as_real(b)
    return float(torch.linalg.norm((a - b).double()) / torch.linalg.norm(b.double()))


class _Spy:
    """Counts how often the fused block step ran (returned a result) through S4Block.step."""

    def __init__(self, monkeypatch):
        self.hits = 0
        self.misses = 0
        real = blocks.block_step

        def spy(*args):
            out = real(*args)
            if out is None:
                self.misses += 1
            else:
                self.hits += 1
            return out

        monkeypatch.setattr(blocks, "block_step", spy)


def _unfused(fn):
    old = os.environ.get("SEQLAB_S4_BLOCK_FUSED")
    os.environ["SEQLAB_S4_BLOCK_FUSED"] = "0"
    try:
        return fn()
    finally:
        if old is None:
            os.environ.pop("SEQLAB_S4_BLOCK_FUSED")
        else:
            os.environ["SEQLAB_S4_BLOCK_FUSED"] = old


def _run(blk, xs, state):
    ys = []
    with torch.no_grad():
        for x in xs:
            y, state = blk.step(x, state)
            ys.append(y)
    return torch.stack(ys), state


@pytest.mark.parametrize("mode,N", [("nplr", 10), ("diag", 7), ("diag", 16)])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("channels", [1, 2])
def test_fused_block_step_matches_unfused(monkeypatch, mode, N, batch, channels):
    torch.manual_seed(3)
    H = 24
    blk = S4Block(H, d_state=N, mode=mode, channels=channels, kernel_impl="triton").eval()
    with torch.no_grad():  # non-trivial LayerNorm affine and biases
        blk.norm.weight.normal_(1.0, 0.3)
        blk.norm.bias.normal_(0.0, 0.3)
    xs = torch.randn(5, batch, H) * 2 + 0.5
    s0 = torch.randn(batch, H, blk.layer.n_modes, dtype=torch.complex64)
    spy = _Spy(monkeypatch)
    y1, s1 = _run(blk, xs, s0)
    assert spy.hits == 5 and spy.misses == 0
    y0, st0 = _unfused(lambda: _run(blk, xs, s0))
    assert spy.hits == 5
    assert y1.shape == (5, batch, H) and s1.shape == s0.shape and s1.dtype == s0.dtype
    for t in range(5):
        assert _rel(y1[t], y0[t]) < 1e-5
    assert _rel(s1, st0) < 1e-5
    # also against the plain PyTorch step (no Triton at all)
    ref = S4Block(H, d_state=N, mode=mode, channels=channels, kernel_impl="naive").eval()
    ref.load_state_dict(blk.state_dict())
    y2, s2 = _run(ref, xs, s0)
    assert _rel(y1, y2) < 1e-5 and _rel(s1, s2) < 1e-5
    assert torch.equal(s0, s0.clone())  # input state untouched (fresh next state)


def test_fused_block_step_float64_model_matches_forward(monkeypatch):
    torch.manual_seed(4)
    model = SequenceModel(0, 13, d_model=12, n_layers=2, vocab_size=13, d_state=8, mode="nplr",
                          kernel_impl="triton").double().eval()
    tok = torch.randint(0, 13, (2, 9))
    out, _ = model(tok)
    model.setup_step()
    spy = _Spy(monkeypatch)
    st, outs = model.default_state(2), []
    with torch.no_grad():
        for t in range(9):
            o, st = model.step(tok[:, t], st)
            outs.append(o)
    assert spy.hits == 18
    assert _rel(torch.stack(outs, 1), out) < 1e-9


@pytest.mark.parametrize("kwargs", [dict(prenorm=False), dict(ff_expand=2), dict(activation="relu"),
                                    dict(kernel_impl="naive"), dict(init="legt")])
def test_fallback_for_non_default_blocks(monkeypatch, kwargs):
    torch.manual_seed(5)
    kw = dict(d_state=8, mode="nplr", kernel_impl="triton")
    kw.update(kwargs)
    blk = S4Block(8, **kw).eval()
    xs = torch.randn(3, 2, 8)
    y, _ = blk(xs.transpose(0, 1))
    spy = _Spy(monkeypatch)
    ys, _ = _run(blk, xs, blk.default_state(2))
    assert spy.hits == 0 and spy.misses == 3
    assert _rel(ys.transpose(0, 1), y) < 1e-4


def test_fallback_with_grad_and_errors(monkeypatch):
    blk = S4Block(8, d_state=8, mode="diag", kernel_impl="triton").eval()
    spy = _Spy(monkeypatch)
    x = torch.randn(2, 8)
    y, _ = blk.step(x, blk.default_state(2))  # autograd on: unfused
    assert spy.hits == 0 and y.requires_grad
    with torch.no_grad():
        with pytest.raises((ValueError, RuntimeError)):  # as before: the unfused path raises
            blk.step(torch.randn(2, 5), blk.default_state(2))
        with pytest.raises(ValueError, match="state"):
            blk.step(x, blk.default_state(3))
    assert spy.hits == 0
    assert not _block_step.block_step_applicable(S4Block(8, d_state=8, prenorm=False))


def test_fused_block_step_long_reduction():
    # channels * H = 528: the output Linear's reduction takes several K blocks
    torch.manual_seed(6)
    blk = S4Block(264, d_state=4, mode="diag", channels=2, kernel_impl="triton").eval()
    xs = torch.randn(2, 1, 264)
    s0 = blk.default_state(1)
    y1, s1 = _run(blk, xs, s0)
    y0, st0 = _unfused(lambda: _run(blk, xs, s0))
    assert _rel(y1, y0) < 1e-5 and _rel(s1, st0) < 1e-5
