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


def test_launch_tma_replays_the_first_launch_and_misses_on_any_change(monkeypatch):
    """launch_tma keys its replay table on addresses, layouts, scalars, grid and constexprs; a replay passes
    the same arguments as a fresh direct launch, with tensors as integer addresses."""
    import types

    from triton.backends.nvidia import driver as nvdriver

    monkeypatch.setattr(nvdriver, "_BASE_ARGS_FORMAT_LEN", 13, raising=False)
    monkeypatch.setattr(nvdriver, "make_tensordesc_arg",
                        lambda arg, meta: [("map", arg.base.data_ptr(), tuple(arg.shape)), *arg.shape, *arg.strides])
    monkeypatch.setattr(FL, "_runtime", (lambda idx: 1234, types.SimpleNamespace(launch_enter_hook=None,
                                                                                 launch_exit_hook=None)))
    monkeypatch.setattr(FL, "_enabled", True)
    monkeypatch.setattr(FL, "_cache", {})
    monkeypatch.setattr(FL, "_plans", {})
    calls, compiled = [], []

    class Kernel:
        arg_names = ["desc", "lse", "n", "scale", "BLOCK"]

        def __getitem__(self, grid):
            def run(*args, **consts):
                compiled.append((grid, args, consts))
                return _fake_compiled(True, calls)
            return run

    fn = Kernel()
    x, lse = torch.zeros(8, 16), torch.zeros(8)
    make = lambda t, rows: _Desc(t, list(t.shape))  # noqa: E731
    FL.launch_tma(fn, (2, 1, 1), ((x, 16),), (lse, 8, 0.5), {"BLOCK": 16}, make, 0)  # compiles
    assert len(compiled) == 1 and not calls
    FL.launch_tma(fn, (2, 1, 1), ((x, 16),), (lse, 8, 0.5), {"BLOCK": 16}, make, 0)  # replayed
    assert len(compiled) == 1 and len(calls) == 1
    grid_stream_fn, head, kernel_args = calls[0][:5], calls[0][5:13], calls[0][13:]
    assert grid_stream_fn == (2, 1, 1, 1234, "fn") and head[4] == "meta"
    assert kernel_args == (("map", x.data_ptr(), (8, 16)), 8, 16, 16, 1, lse.data_ptr(), 8, 0.5, 16)
    for change in (dict(args=(torch.zeros(8), 8, 0.5)), dict(args=(lse, 8, 0.25)), dict(grid=(3, 1, 1)),
                   dict(descs=((torch.zeros(8, 16), 16),)), dict(consts={"BLOCK": 32})):
        kw = dict(descs=((x, 16),), args=(lse, 8, 0.5), grid=(2, 1, 1), consts={"BLOCK": 16}) | change
        before = len(FL._plans)
        FL.launch_tma(fn, kw["grid"], kw["descs"], kw["args"], kw["consts"], make, 0)
        assert len(FL._plans) == before + 1, change  # a miss: launched through the normal path, new plan


def test_direct_launch_of_a_pointer_kernel_passes_the_arguments_through(monkeypatch):
    import types

    monkeypatch.setattr(FL, "_runtime", (lambda idx: 99, types.SimpleNamespace(launch_enter_hook=None,
                                                                               launch_exit_hook=None)))
    monkeypatch.setattr(FL, "_enabled", True)
    monkeypatch.setattr(FL, "_cache", {})
    calls, compiled = [], []

    class Kernel:
        arg_names = ["x", "n", "BLOCK"]

        def __getitem__(self, grid):
            def run(*args, **consts):
                compiled.append(args)
                return _fake_compiled(False, calls)
            return run

    fn, x = Kernel(), torch.zeros(4)
    FL.launch(fn, (3,), (x, 5), {"BLOCK": 16}, 0)
    FL.launch(fn, (3,), (x, 5), {"BLOCK": 16}, 0)
    assert len(compiled) == 1 and len(calls) == 1
    assert calls[0][:5] == (3, 1, 1, 99, "fn") and calls[0][13:] == (x, 5, 16)


def test_launch_tma_falls_back_when_the_launcher_rejects_a_replay(monkeypatch):
    import types

    from triton.backends.nvidia import driver as nvdriver

    monkeypatch.setattr(nvdriver, "_BASE_ARGS_FORMAT_LEN", 13, raising=False)
    monkeypatch.setattr(nvdriver, "make_tensordesc_arg", lambda arg, meta: [arg.base.data_ptr(), *arg.shape])
    monkeypatch.setattr(FL, "_runtime", (lambda idx: 0, types.SimpleNamespace(launch_enter_hook=None,
                                                                              launch_exit_hook=None)))
    monkeypatch.setattr(FL, "_enabled", True)
    monkeypatch.setattr(FL, "_cache", {})
    monkeypatch.setattr(FL, "_plans", {})
    compiled = []

    def rejecting(*a):
        raise TypeError("another launcher convention")

    class Kernel:
        arg_names = ["desc", "n", "BLOCK"]

        def __getitem__(self, grid):
            def run(*args, **consts):
                compiled.append(args)
                return _fake_compiled(True, [])
            return run

    fn, x = Kernel(), torch.zeros(4, 4)
    make = lambda t, rows: _Desc(t, list(t.shape))  # noqa: E731
    FL.launch_tma(fn, (1, 1, 1), ((x, 4),), (3,), {"BLOCK": 4}, make, 0)
    key = next(iter(FL._plans))
    raw, function, rest, ck = FL._plans[key]
    FL._plans[key] = (rejecting, function, rest, ck)
    FL.launch_tma(fn, (1, 1, 1), ((x, 4),), (3,), {"BLOCK": 4}, make, 0)  # replay rejected: Triton's path
    assert len(compiled) == 2 and not FL.enabled() and not FL._plans
    FL.set_enabled(True)
