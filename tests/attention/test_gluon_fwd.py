"""The Gluon forward (Hopper only) cannot run here: Gluon has no interpreter. What CI can check is that the kernel
compiles for sm_90 with this machine's Triton (``triton.compile`` with an explicit target; Triton bundles ptxas)
and that the dispatcher never picks it off a Hopper GPU. The numerics are checked on the H100 by
``benchmarks/attention_check.py`` (see benchmarks/NOTES.md)."""
import pytest
import torch

from seqlab.attention import _gluon_fwd as G

_COMPILE = """
import sys, torch, triton
from triton.backends.compiler import GPUTarget
from triton.runtime.jit import mangle_type
from seqlab.attention import _gluon_fwd as G

dtype, d, causal = getattr(torch, sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
half_m, block_n, stages = G.TILES[d]
x = torch.empty(2, 256, 4, d, dtype=dtype)
qd, kd, vd = G.descriptors(x, x, x, half_m, block_n)
tdt = {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
sig = {"q_desc": mangle_type(qd), "k_desc": mangle_type(kd), "v_desc": mangle_type(vd), "o_ptr": "*" + tdt,
       "lse_ptr": "*fp32", "stride_ob": "i32", "stride_on": "i32", "stride_lb": "i32", "stride_lh": "i32",
       "group": "i32", "seqlen_q": "i32", "seqlen_k": "i32", "qk_scale": "fp32", "HALF_M": "constexpr",
       "BLOCK_N": "constexpr", "HEAD_D": "constexpr", "STAGES": "constexpr", "CAUSAL": "constexpr"}
src = G.gluon._runtime.GluonASTSource(G._attn_fwd_gluon, signature=sig, constexprs={
    "HALF_M": half_m, "BLOCK_N": block_n, "HEAD_D": d, "STAGES": stages, "CAUSAL": causal})
k = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
ptx = k.asm["ptx"]
print(ptx.count("wgmma.mma_async"), int("setmaxnreg" in ptx), int("cp.async.bulk.tensor" in ptx), k.metadata.shared)
"""


def _compile(dtype: str, d: int, causal: bool) -> list[int]:
    # in a fresh process: the test session runs with TRITON_INTERPRET=1, under which Gluon kernels cannot compile
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    # the seqlab this test imported (not whichever checkout is installed)
    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(G.__file__))))
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    r = subprocess.run([sys.executable, "-c", _COMPILE, dtype, str(d), str(int(causal))], capture_output=True,
                       text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return [int(x) for x in r.stdout.split()[-4:]]


@pytest.mark.skipif(not G._API_OK, reason="this Triton's Gluon lacks the Hopper API the kernel uses")
@pytest.mark.parametrize("dtype,d,causal", [("bfloat16", 128, False), ("float16", 64, True)])
def test_gluon_forward_compiles_for_sm90(dtype, d, causal):
    wgmma, setmaxnreg, tma_loads, shared = _compile(dtype, d, causal)
    # two consumer warpgroups x (QK^T, PV) in the prologue / loop / tail, register reallocation, TMA loads
    assert wgmma >= 8 and setmaxnreg and tma_loads
    assert shared <= 232448  # fits the H100's shared memory per block (227 KB)


def test_gluon_forward_is_never_chosen_off_hopper(monkeypatch):
    q = torch.randn(1, 4096, 2, 128, dtype=torch.bfloat16)
    for causal in (False, True):
        assert not G.usable(q, q, q, causal, interpreting=False)  # CPU tensors
        assert not G.usable(q, q, q, causal, interpreting=True)
    monkeypatch.setenv("SEQLAB_ATTN_GLUON", "0")
    assert G.mode() == "0" and not G.usable(q, q, q, False, interpreting=False)


def test_gluon_forward_dispatch_rule():
    assert G.preferred(128, False, 1024) and G.preferred(128, True, 4096) and G.preferred(128, False, 16384)
    assert not G.preferred(128, False, 512) and not G.preferred(128, True, 2048)
    assert not any(G.preferred(64, c, n) for c in (False, True) for n in (512, 4096, 16384))


def test_a_failed_launch_disables_the_kernel_with_one_warning(monkeypatch):
    monkeypatch.setattr(G, "_BROKEN", [])
    with pytest.warns(RuntimeWarning, match="Gluon attention forward failed"):
        G.disable(RuntimeError("async_copy_global_to_shared has been removed"))
    q = torch.randn(1, 4096, 2, 128, dtype=torch.bfloat16)
    assert G._BROKEN and not G.usable(q, q, q, False, interpreting=False)
