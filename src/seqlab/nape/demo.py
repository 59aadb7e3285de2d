"""``seqlab demo`` section for GENNAPE: trace a few modules, predict with the shipped predictor."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn


def _small_resnet() -> nn.Module:
    def block(c):
        return nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                             nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))

    class Res(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.body = block(c)

        def forward(self, x):
            return torch.relu(self.body(x) + x)

    return nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1), nn.ReLU(), Res(32), nn.MaxPool2d(2), nn.Conv2d(32, 64, 1),
                         Res(64), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


def _row(case, ok, ms, detail=""):
    return {"system": "GENNAPE", "case": case, "check": f"{detail} {'ok' if ok else 'FAIL'}".strip(),
            "seqlab_ms": ms, "reference_ms": "", "speedup": ""}


def run(device: str = "cpu", quick: bool = False) -> list[dict]:
    """Demo rows (see ``seqlab.demo``): CG tracing, prediction range, ranking of a few NB-201 cells."""
    from . import spaces
    from .graph import ComputationGraph
    from .predictor import load_pretrained

    rows = []
    try:
        model = load_pretrained(device=device)
    except (FileNotFoundError, ValueError) as exc:
        return [_row(f"load_pretrained ({exc})", False, "")]
    x = torch.zeros(1, 3, 32, 32)
    mods = {"small ResNet": _small_resnet(), "NAS-Bench-Macro 12120120": spaces.macro("12120120"),
            "NB-201 all-conv3x3": spaces.nb201("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+"
                                               "|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")}
    for name, m in mods.items():
        t0 = time.perf_counter()
        cg = ComputationGraph.from_module(m.eval(), x)
        p = float(model.predict([cg])[0])
        ms = 1e3 * (time.perf_counter() - t0)
        rows.append(_row(f"trace+predict {name} ({len(cg)} ops)", np.isfinite(p) and 0 <= p <= 100, ms,
                         f"{p:.1f}%"))
    try:
        from . import data

        fam = data.load_nb201()
    except (FileNotFoundError, ValueError):
        return rows
    # a handful of cells spread over the accuracy range
    order = np.argsort(fam.acc)
    pick = order[np.linspace(len(order) * 0.05, len(order) - 1, 6 if quick else 10).astype(int)]
    t0 = time.perf_counter()
    graphs = [ComputationGraph.from_module(spaces.nb201(fam.ids[i]).eval(), x) for i in pick]
    pred = model.predict(graphs)
    ms = 1e3 * (time.perf_counter() - t0)
    from .metrics import srcc

    s = srcc(pred, fam.acc[pick])
    rows.append(_row(f"rank {len(pick)} NB-201 cells", s > 0.5, ms, f"SRCC {s:.2f}"))
    return rows
