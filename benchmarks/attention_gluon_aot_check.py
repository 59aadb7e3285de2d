"""Groundwork for a Gluon (Hopper) attention kernel: compile a Gluon wgmma kernel for sm_90 without a GPU.

Triton ships ptxas, so ``triton.compile`` with an explicit ``GPUTarget`` builds a cubin on a CPU-only machine.
That lets a Gluon kernel (warpgroup MMA, TMA, mbarriers, ``gl.warp_specialize``) be type-checked and compiled
locally against the device's Triton before any device time is spent. Gluon's API moves between Triton releases,
so compile against the device's version (3.6 in this project's runs):

    pip download triton==3.6.0 --no-deps -d /tmp/tw && python3 -m venv /tmp/t36 \\
        && /tmp/t36/bin/pip install /tmp/tw/triton-3.6.0-*.whl "numpy<2.3"
    /tmp/t36/bin/python benchmarks/attention_gluon_aot_check.py

Prints the cubin size and whether the PTX contains ``wgmma``; exits 1 otherwise.
"""
import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import fence_async_shared, warpgroup_mma, warpgroup_mma_wait


@gluon.jit
def _tile_matmul(a_ptr, b_ptr, c_ptr, M: gl.constexpr, N: gl.constexpr, K: gl.constexpr):
    """c (M, N) fp32 = a (M, K) bf16 @ b (K, N) bf16, one warpgroup, operands staged through shared memory."""
    blk: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [4, 1], [1, 0])
    rm = gl.arange(0, M, layout=gl.SliceLayout(1, blk))
    rk_col = gl.arange(0, K, layout=gl.SliceLayout(0, blk))
    rk_row = gl.arange(0, K, layout=gl.SliceLayout(1, blk))
    rn = gl.arange(0, N, layout=gl.SliceLayout(0, blk))
    a = gl.load(a_ptr + rm[:, None] * K + rk_col[None, :])
    b = gl.load(b_ptr + rk_row[:, None] * N + rn[None, :])
    a_s = gl.allocate_shared_memory(gl.bfloat16, [M, K], gl.NVMMASharedLayout.get_default_for([M, K], gl.bfloat16), a)
    b_s = gl.allocate_shared_memory(gl.bfloat16, [K, N], gl.NVMMASharedLayout.get_default_for([K, N], gl.bfloat16), b)
    fence_async_shared()
    acc_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, N, 16])
    acc = warpgroup_mma(a_s, b_s, gl.zeros([M, N], gl.float32, acc_layout), is_async=True)
    acc = warpgroup_mma_wait(0, deps=[acc])
    gl.store(c_ptr + rm[:, None] * N + rn[None, :], gl.convert_layout(acc, blk))


def main() -> int:
    src = gluon._runtime.GluonASTSource(
        _tile_matmul, signature={"a_ptr": "*bf16", "b_ptr": "*bf16", "c_ptr": "*fp32", "M": "constexpr",
                                 "N": "constexpr", "K": "constexpr"}, constexprs={"M": 64, "N": 64, "K": 64})
    kernel = triton.compile(src, target=GPUTarget("cuda", 90, 32))
    has_wgmma = "wgmma" in kernel.asm["ptx"]
    print(f"triton {triton.__version__}: sm_90 cubin {len(kernel.asm['cubin'])} bytes, wgmma in PTX: {has_wgmma}")
    return 0 if has_wgmma else 1


if __name__ == "__main__":
    sys.exit(main())
