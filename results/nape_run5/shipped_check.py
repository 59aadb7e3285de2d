"""Shipped predictor (NASWOT term on): batch independence and a sanity ranking on unseen PyTorch families.

    PYTHONPATH=src python results/nape_run5/shipped_check.py   (output: shipped_check.txt)

Modules are passed as (module, example input) pairs, so the predictor computes their NASWOT score; the same
CGs traced without the score get the GNN-only prediction (second column).
"""

import numpy as np
import torch
from torch import nn

from seqlab.nape import ComputationGraph, load_pretrained

m = load_pretrained(device="cpu")
x = torch.zeros(1, 3, 32, 32)


def vgg(depth, w):
    torch.manual_seed(0)
    layers, c = [], 3
    for i in range(depth):
        layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
        c = w
        if i % 2 == 1:
            layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10)).eval()


print(f"proxy_weight {m.cfg.proxy_weight}, proxy_ref {m.proxy_ref:.3f}, proxy_scale {m.proxy_scale:.3f}")
nets = [(d, w) for d in (2, 4, 6) for w in (16, 32, 64)]
pairs = [(vgg(d, w), x) for d, w in nets]
together = m.predict(pairs)
alone = np.array([m.predict([p])[0] for p in pairs])
bare = m.predict([ComputationGraph.from_module(p[0], x, proxies=False) for p in pairs])
cgs = [ComputationGraph.from_module(p[0], x, proxies=True) for p in pairs]
print("max |list - alone| =", np.abs(together - alone).max())
for (d, w), p, b, g in zip(nets, together, bare, cgs):
    print(f"vgg depth {d} width {w}: {p:.2f}% (GNN only {b:.2f}%), naswot {g.proxies['naswot']:.1f}")
