"""The signature that keys cached compiled kernels (seqlab.attention._fast_launch); no GPU needed."""

import torch

from seqlab.attention import _fast_launch as FL


def _fn():
    return object()


def test_signature_tracks_what_triton_specialises_on():
    fn = _fn()
    a = torch.empty(64, dtype=torch.float16)
    base = FL._signature(fn, (a, 16, 0.5), {"BLOCK_M": 64, "num_warps": 4})
    assert FL._signature(fn, (a, 16, 0.25), {"BLOCK_M": 64, "num_warps": 4}) == base  # floats are not specialised
    assert FL._signature(fn, (a, 17, 0.5), {"BLOCK_M": 64, "num_warps": 4}) != base  # ints by exact value
    assert FL._signature(fn, (a.to(torch.bfloat16), 16, 0.5), {"BLOCK_M": 64, "num_warps": 4}) != base  # dtype
    assert FL._signature(fn, (a[1:], 16, 0.5), {"BLOCK_M": 64, "num_warps": 4}) != base  # 16-byte alignment
    assert FL._signature(fn, (a, 16, 0.5), {"BLOCK_M": 32, "num_warps": 4}) != base  # constexprs
    assert FL._signature(fn, (a, 16, 0.5), {"BLOCK_M": 64, "num_warps": 8}) != base  # launch options
    assert FL._signature(_fn(), (a, 16, 0.5), {"BLOCK_M": 64, "num_warps": 4}) != base  # the kernel itself


def test_cpu_launches_go_through_triton(monkeypatch):
    calls = []

    class Fake:
        arg_names = ["x", "N"]

        def __getitem__(self, grid):
            return lambda *a, **k: calls.append((grid, a, k))

    FL.launch(Fake(), (1,), (torch.zeros(1), 3), {"num_warps": 1}, device_index=-1)
    assert calls == [((1,), (calls[0][1][0], 3), {"num_warps": 1})]
    assert not FL._cache
