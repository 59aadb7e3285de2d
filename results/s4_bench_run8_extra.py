"""Run 8 extra: CUDA kernels per generated token (6-layer H=256 N=64 S4 LM, batch 1), fused vs unfused block step.

    PYTHONPATH=src python3 results/s4_bench_run8_extra.py
"""

import os

import torch
from torch.profiler import ProfilerActivity, profile

from seqlab.ssm.blocks import SequenceModel

torch.manual_seed(0)
model = SequenceModel(0, 256, d_model=256, n_layers=6, vocab_size=256, d_state=64).cuda().eval()
model.setup_step()
tok = torch.zeros(1, dtype=torch.long, device="cuda")
for flag in ("1", "0"):
    os.environ["SEQLAB_S4_BLOCK_FUSED"] = flag
    with torch.no_grad():
        st = model.default_state(1)
        for _ in range(3):
            out, st = model.step(tok, st)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(10):
                out, st = model.step(tok, st)
                tok = out.argmax(-1)
            torch.cuda.synchronize()
    ev = [e for e in prof.events() if e.device_type.name == "CUDA"]
    gpu_us = sum(getattr(e, "device_time", 0) or getattr(e, "cuda_time", 0) for e in ev) / 10
    print(f"SEQLAB_S4_BLOCK_FUSED={flag}: {len(ev) / 10:.1f} kernels per token (incl. argmax), "
          f"{gpu_us:.1f} us summed kernel time per token")
    names = {}
    for e in ev:
        names[e.name] = names.get(e.name, 0) + 1
    for k, v in sorted(names.items(), key=lambda kv: -kv[1])[:12]:
        print(f"   {v / 10:5.1f}  {k[:110]}")
