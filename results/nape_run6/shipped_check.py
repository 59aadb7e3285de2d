"""Run 6: the shipped predictor on the plain path ``load_pretrained().predict([ComputationGraph.from_module(m, x)])``
(NASWOT now computed by default), on unseen PyTorch families, and what the default costs when tracing.

    PYTHONPATH=src python results/nape_run6/shipped_check.py   (output: shipped_check.txt)

No labels exist for these families: the check is that the plain path equals the (module, input) path, that list
and one-by-one predictions agree, which graphs get the proxy term, and the tracing time with and without it
(one CPU thread).
"""

import time

import numpy as np
import torch
from torch import nn

from seqlab.nape import ComputationGraph, load_pretrained

torch.set_num_threads(1)
m = load_pretrained(device="cpu")
x32 = torch.zeros(1, 3, 32, 32)


def vgg(depth, w):
    torch.manual_seed(0)
    layers, c = [], 3
    for i in range(depth):
        layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
        c = w
        if i % 2 == 1:
            layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10)).eval()


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.sc = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                   if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        return torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(x))))) + self.sc(x))


def resnet(blocks, w):
    torch.manual_seed(0)
    layers, c = [nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU()], w
    for stage, n in enumerate(blocks):
        for i in range(n):
            cout = w * 2**stage
            layers.append(Block(c, cout, 2 if (i == 0 and stage > 0) else 1))
            c = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10)).eval()


class TinyViT(nn.Module):
    def __init__(self, dim, depth, patch=4):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Conv2d(3, dim, patch, patch)
        layer = nn.TransformerEncoderLayer(dim, 4, 2 * dim, dropout=0.0, activation="gelu", batch_first=True)
        self.enc = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        return self.head(self.enc(self.embed(x).flatten(2).transpose(1, 2)).mean(1))


def check(title, nets, x):
    print(f"\n{title}")
    t0 = time.perf_counter()
    bare = [ComputationGraph.from_module(n, x, proxies=False) for _, n in nets]
    t1 = time.perf_counter()
    cgs = [ComputationGraph.from_module(n, x) for _, n in nets]  # the plain, default path
    t2 = time.perf_counter()
    p = m.predict(cgs)
    pairs = m.predict([(n, x) for _, n in nets])
    alone = np.array([m.predict([g])[0] for g in cgs])
    print(f"  tracing s/net: {(t1 - t0) / len(nets):.3f} without NASWOT, {(t2 - t1) / len(nets):.3f} default; "
          f"max |plain CG - (module, x)| = {np.abs(p - pairs).max():.1e}, max |list - alone| = "
          f"{np.abs(p - alone).max():.1e}")
    g_only = m.predict(bare)
    for (name, _), pi, gi, cg in zip(nets, p, g_only, cgs):
        nw = cg.proxies.get("naswot")
        print(f"  {name}: {pi:.2f}% (GNN only {gi:.2f}%), naswot {'none' if nw is None else f'{nw:.1f}'}")


print(f"proxy_weight {m.cfg.proxy_weight}, proxy_ref {m.proxy_ref:.3f}, proxy_scale {m.proxy_scale:.3f}")
check("VGG (BN, ReLU), 32x32", [(f"vgg depth {d} width {w}", vgg(d, w)) for d in (2, 4, 6) for w in (16, 32, 64)],
      x32)
check("ResNet (basic blocks), 32x32", [(f"resnet {b} width {w}", resnet(b, w))
                                       for b in ((1, 1, 1), (2, 2, 2), (3, 3, 3)) for w in (16, 32)], x32)
check("tiny ViT (GELU, LayerNorm), 32x32", [(f"vit dim {d} depth {k}", TinyViT(d, k).eval())
                                            for d in (32, 64) for k in (2, 4)], x32)
check("ResNet-18-like at 224x224 (cost of the default)", [("resnet (2,2,2,2) width 64", resnet((2, 2, 2, 2), 64))],
      torch.zeros(1, 3, 224, 224))
