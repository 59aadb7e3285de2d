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


def _fake_compiled(with_descs: bool, calls: list):
    """A compiled kernel shaped like Triton 3.6's: ``run`` is a CudaLauncher whose ``launch`` is the C launcher,
    or a closure ``inner`` over it when the kernel takes tensor descriptors."""

    class Launcher:  # a C function in Triton: no closure
        def __call__(self, *a):
            calls.append(a)

    launcher = Launcher()

    tensordesc_indices = {0}
    tensordesc_meta = [{"swizzle": 128}]

    def inner(*args):  # mirrors triton.backends.nvidia.driver.wrap_handle_tensordesc's closure
        return launcher, tensordesc_indices, tensordesc_meta

    class Run:
        launch = inner if with_descs else launcher
        global_scratch_size = profile_scratch_size = 0
        launch_cooperative_grid, launch_pdl = False, False

    class CK:
        run, packed_metadata, function = Run(), "meta", "fn"

    return CK()


class _Desc:
    def __init__(self, t, shape):
        self.base, self.shape, self.strides, self.block_shape, self.padding = t, shape, [shape[1], 1], [16, 16], "zero"


def test_direct_launcher_caches_tensor_maps_by_address_and_layout(monkeypatch):
    from triton.backends.nvidia import driver as nvdriver

    expanded = []

    def fake_expand(arg, meta):
        expanded.append((arg.base.data_ptr(), tuple(arg.shape)))
        return [("map", arg.base.data_ptr()), *arg.shape, *arg.strides]

    monkeypatch.setattr(nvdriver, "_BASE_ARGS_FORMAT_LEN", 13, raising=False)
    monkeypatch.setattr(nvdriver, "make_tensordesc_arg", fake_expand)
    calls = []
    direct = FL._direct_for(_fake_compiled(True, calls))
    assert direct is not None and direct.descs == {0: {"swizzle": 128}}
    a, b = torch.zeros(64, 64), torch.zeros(64, 64)
    first = direct.args((_Desc(a, [64, 64]), 7))
    assert first == [("map", a.data_ptr()), 64, 64, 64, 1, 7]
    assert direct.args((_Desc(a, [64, 64]), 8)) == first[:-1] + [8]  # same address and layout: cached
    assert len(expanded) == 1
    direct.args((_Desc(b, [64, 64]), 7))  # another address: a new tensor map
    direct.args((_Desc(a, [32, 64]), 7))  # another shape: a new tensor map
    assert len(expanded) == 3
    # the launch arguments follow Triton 3.6's base format (13 values) before the kernel's
    direct.raw(1, 1, 1, 0, "fn", *direct.head, *first)
    assert len(calls[0]) == 13 + len(first)


def test_direct_launcher_refuses_unknown_structures(monkeypatch):
    from triton.backends.nvidia import driver as nvdriver

    monkeypatch.setattr(nvdriver, "_BASE_ARGS_FORMAT_LEN", 14, raising=False)  # another base format
    assert FL._direct_for(_fake_compiled(True, [])) is None
    monkeypatch.setattr(nvdriver, "_BASE_ARGS_FORMAT_LEN", 13, raising=False)
    ck = _fake_compiled(True, [])
    ck.run.global_scratch_size = 128  # needs scratch memory: Triton's launcher allocates it
    assert FL._direct_for(ck) is None
    plain = FL._direct_for(_fake_compiled(False, []))
    assert plain is not None and plain.descs == {}
