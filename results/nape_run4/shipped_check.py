"""Shipped predictor: batch independence and a sanity ranking on PyTorch families it never saw.

    PYTHONPATH=src python results/nape_run4/shipped_check.py   (output: shipped_check.txt)
"""
import sys

sys.path.insert(0, "src")
import numpy as np
import torch
from torch import nn

from seqlab.nape import ComputationGraph, load_pretrained

torch.manual_seed(0)
m = load_pretrained(device="cpu")
x = torch.zeros(1, 3, 32, 32)
def vgg(depth, w):
    layers, c = [], 3
    for i in range(depth):
        layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
        c = w
        if i % 2 == 1:
            layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10)).eval()
nets = [(d, w) for d in (2, 4, 6) for w in (16, 32, 64)]
gs = [ComputationGraph.from_module(vgg(d, w), x) for d, w in nets]
together = m.predict(gs)
alone = np.array([m.predict([g])[0] for g in gs])
print("max |list - alone| =", np.abs(together - alone).max())
for (d, w), p in zip(nets, together):
    print(f"vgg depth {d} width {w}: {p:.2f}%")
