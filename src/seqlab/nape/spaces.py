"""PyTorch builders for the networks of three NAS benchmarks (written from the papers' descriptions).

* NAS-Bench-201 (Dong & Yang, ICLR 2020): stem 3x3 conv (16 ch) + BN; three stages of 5 cells at
  16/32/64 channels separated by a residual reduction block (ReLU-conv3x3/s2-BN, ReLU-conv3x3-BN,
  shortcut avg-pool 2x2 + 1x1 conv); BN + ReLU, global average pool, linear classifier. A cell is a
  4-node DAG; node j sums ``op(node i)`` over i < j; ops are ``none`` (zero), ``skip_connect``,
  ``nor_conv_1x1`` / ``nor_conv_3x3`` (ReLU-conv-BN) and ``avg_pool_3x3`` (stride 1, padding 1).
* NAS-Bench-101 (Ying et al., ICML 2019): stem conv3x3-BN-ReLU (128 ch); three stacks of 3 cells,
  2x2 max-pool (stride 2) and channel doubling between stacks; global average pool and a linear
  classifier. A cell is a DAG of up to 7 vertices given by an upper-triangular adjacency matrix and
  ops (conv3x3-BN-ReLU, conv1x1-BN-ReLU, maxpool3x3); the output concatenates the interior vertices
  that feed it (channels split evenly among them), inputs of interior vertices are summed, the cell
  input reaches interior vertices through 1x1 conv-BN-ReLU projections and, if wired to the output,
  is projected and added to the concatenation.
* NAS-Bench-Macro (Su et al., 2021): stem conv3x3-BN-ReLU (32 ch); 8 searchable layers in stages
  of 2/3/3 whose first layer has stride 2 and doubles the channels (64/128/256); each layer is
  ``0`` identity (a 1x1 conv-BN when the shape changes), ``1`` MobileNetV2 inverted residual with
  expansion 3 and a 3x3 depthwise kernel, ``2`` expansion 6 and 5x5 kernel (residual when the
  shape is kept); then conv1x1 to 1280-BN-ReLU, global average pool, linear classifier.
"""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# NASLib's integer encoding of the NB-201 ops (the ``(4, 0, 3, 1, 4, 3)`` tuples of the CSVs).
NASLIB_NB201_OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
# NASLib's NB-101 op codes: index into ("input", "output", "maxpool3x3", "conv1x1-bn-relu",
# "conv3x3-bn-relu"). Checked on the 500 labelled cells: with this map the parameter count of every
# built network equals the one the file lists (500/500); with 2 and 4 swapped only 188/500 match.
NB101_OPS = {0: "input", 1: "output", 2: "maxpool3x3", 3: "conv1x1-bn-relu", 4: "conv3x3-bn-relu"}


# ----------------------------------------------------------------------------- NAS-Bench-201
class _ReLUConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1):
        super().__init__(nn.ReLU(inplace=False), nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
                         nn.BatchNorm2d(cout))


def parse_nb201(arch: str) -> list[tuple[str, int, int]]:
    """``'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'`` -> list of ``(op, src, dst)`` for the 6 cell edges."""
    nodes = arch.strip().strip("+").split("+")
    if len(nodes) != 3:
        raise ValueError(f"NB-201 arch string needs 3 '+'-separated nodes: {arch!r}")
    edges = []
    for dst, node in enumerate(nodes, start=1):
        parts = [p for p in node.split("|") if p]
        if len(parts) != dst:
            raise ValueError(f"NB-201 node {dst} needs {dst} inputs: {arch!r}")
        for p in parts:
            m = re.fullmatch(r"([a-z0-9_x]+)~(\d+)", p)
            if not m or m.group(1) not in NB201_OPS or int(m.group(2)) >= dst:
                raise ValueError(f"bad NB-201 edge {p!r} in {arch!r}")
            edges.append((m.group(1), int(m.group(2)), dst))
    return edges


def nb201_from_naslib(ops: tuple[int, ...] | str) -> str:
    """NASLib op tuple (6 ints) -> NB-201 arch string."""
    if isinstance(ops, str):
        ops = tuple(int(v) for v in re.findall(r"-?\d+", ops))
    if len(ops) != 6:
        raise ValueError(f"NASLib NB-201 tuple needs 6 ops: {ops}")
    # NASLib orders the edges (0,1), (0,2), (0,3), (1,2), (1,3), (2,3)
    n = [NASLIB_NB201_OPS[i] for i in ops]
    return f"|{n[0]}~0|+|{n[1]}~0|{n[3]}~1|+|{n[2]}~0|{n[4]}~1|{n[5]}~2|"


class NB201Cell(nn.Module):
    """One NB-201 cell; ``none`` edges are omitted (they add zeros)."""

    def __init__(self, arch: str, channels: int):
        super().__init__()
        self.edges = [(op, s, d) for op, s, d in parse_nb201(arch) if op != "none"]
        mods = []
        for op, _, _ in self.edges:
            if op == "skip_connect":
                mods.append(nn.Identity())
            elif op == "avg_pool_3x3":
                mods.append(nn.AvgPool2d(3, 1, 1, count_include_pad=False))
            else:
                mods.append(_ReLUConvBN(channels, channels, 1 if op == "nor_conv_1x1" else 3))
        self.ops = nn.ModuleList(mods)

    def forward(self, x):
        states = [x]
        for dst in (1, 2, 3):
            terms = [m(states[s]) for (_, s, d), m in zip(self.edges, self.ops) if d == dst]
            if not terms:
                states.append(x.mul(0))  # every input edge is `none`
                continue
            acc = terms[0]
            for t in terms[1:]:
                acc = acc + t
            states.append(acc)
        return states[3]


class _NB201Reduction(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.a = _ReLUConvBN(cin, cout, 3, 2)
        self.b = _ReLUConvBN(cout, cout, 3, 1)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x):
        return self.b(self.a(x)) + self.shortcut(x)


class NB201Network(nn.Module):
    """NB-201 network for ``arch``; input float ``(B, 3, H, W)`` -> logits ``(B, num_classes)``."""

    def __init__(self, arch: str, channels: int = 16, cells_per_stage: int = 5, num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels)]
        c = channels
        for stage in range(3):
            if stage:
                layers.append(_NB201Reduction(c, 2 * c))
                c *= 2
            layers += [NB201Cell(arch, c) for _ in range(cells_per_stage)]
        layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


def nb201(arch: str, num_classes: int = 10) -> NB201Network:
    """Build the NB-201 network of an arch string (see :func:`parse_nb201`)."""
    return NB201Network(arch, num_classes=num_classes)


# ----------------------------------------------------------------------------- NAS-Bench-101
def parse_nb101_key(key: str) -> tuple[np.ndarray, list[int]]:
    """NASLib key ``'(a00, ..., a66, op0, ..., op6)'`` (49 + 7 ints) -> (adjacency int ``(7, 7)``, ops)."""
    vals = [int(v) for v in re.findall(r"-?\d+", key)]
    if len(vals) != 56:
        raise ValueError(f"NB-101 key needs 49 adjacency entries + 7 ops, got {len(vals)} ints")
    return np.asarray(vals[:49], dtype=np.int64).reshape(7, 7), vals[49:]


def _prune_nb101(adj: np.ndarray, ops: list[int]) -> tuple[np.ndarray, list[int]]:
    """Keep vertices on an input->output path (as the NB-101 model spec does)."""
    n = len(ops)
    adj = np.triu(np.asarray(adj), 1)
    fwd, bwd = {0}, {n - 1}
    for i in range(n):
        if i in fwd:
            fwd.update(j for j in range(n) if adj[i, j])
    for j in range(n - 1, -1, -1):
        if j in bwd:
            bwd.update(i for i in range(n) if adj[i, j])
    keep = sorted(fwd & bwd)
    if 0 not in keep or n - 1 not in keep:
        raise ValueError("NB-101 cell has no path from input to output")
    return adj[np.ix_(keep, keep)], [ops[i] for i in keep]


def _nb101_channels(cin: int, cout: int, adj: np.ndarray) -> list[int]:
    n = adj.shape[0]
    ch = [0] * n
    ch[0], ch[-1] = cin, cout
    if n == 2:
        return ch
    k = int(adj[1:, -1].sum())  # interior vertices feeding the output
    base, extra = divmod(cout, max(k, 1))
    for v in range(1, n - 1):
        if adj[v, -1]:
            ch[v] = base + (1 if extra > 0 else 0)
            extra -= 1
    for v in range(n - 3, 0, -1):
        if not adj[v, -1]:
            for d in range(v + 1, n - 1):
                if adj[v, d]:
                    ch[v] = max(ch[v], ch[d])
    return ch


class _ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int):
        super().__init__(nn.Conv2d(cin, cout, k, 1, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class NB101Cell(nn.Module):
    def __init__(self, adj: np.ndarray, ops: list[int], cin: int, cout: int):
        super().__init__()
        self.adj = adj
        self.n = n = adj.shape[0]
        self.ch = ch = _nb101_channels(cin, cout, adj)
        self.vertex = nn.ModuleList()
        self.proj = nn.ModuleList()
        for v in range(n):
            if 0 < v < n - 1:
                op = NB101_OPS.get(ops[v])
                if op == "conv3x3-bn-relu":
                    self.vertex.append(_ConvBNReLU(ch[v], ch[v], 3))
                elif op == "conv1x1-bn-relu":
                    self.vertex.append(_ConvBNReLU(ch[v], ch[v], 1))
                elif op == "maxpool3x3":
                    self.vertex.append(nn.MaxPool2d(3, 1, 1))
                else:
                    raise ValueError(f"unknown NB-101 interior op code {ops[v]} (2 maxpool3x3, 3 conv1x1, "
                                     "4 conv3x3 expected)")
            else:
                self.vertex.append(nn.Identity())
            # input projections to every vertex wired to the cell input (the output's is added)
            self.proj.append(_ConvBNReLU(cin, ch[v], 1) if v > 0 and adj[0, v] else nn.Identity())

    def forward(self, x):
        n, adj, ch = self.n, self.adj, self.ch
        states = [x]
        for v in range(1, n - 1):
            terms = [states[s][:, : ch[v]] for s in range(1, v) if adj[s, v]]
            if adj[0, v]:
                terms.append(self.proj[v](x))
            acc = terms[0]
            for t in terms[1:]:
                acc = acc + t
            states.append(self.vertex[v](acc))
        feeds = [states[s] for s in range(1, n - 1) if adj[s, -1]]
        if not feeds:  # input wired straight to the output
            return self.proj[n - 1](x)
        out = torch.cat(feeds, 1) if len(feeds) > 1 else feeds[0]
        if adj[0, -1]:
            out = out + self.proj[n - 1](x)
        return out


class NB101Network(nn.Module):
    """NB-101 network; input float ``(B, 3, H, W)`` -> logits ``(B, num_classes)``."""

    def __init__(self, adj, ops: list[int], channels: int = 128, num_classes: int = 10):
        super().__init__()
        adj, ops = _prune_nb101(np.asarray(adj), list(ops))
        layers: list[nn.Module] = [_ConvBNReLU(3, channels, 3)]
        cin = c = channels
        for stack in range(3):
            if stack:
                layers.append(nn.MaxPool2d(2, 2))
                c *= 2
            for _ in range(3):
                layers.append(NB101Cell(adj, ops, cin, c))
                cin = c
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


def nb101(adj, ops: list[int], num_classes: int = 10) -> NB101Network:
    """Build an NB-101 network from a 7x7 (or smaller) adjacency and op codes (NASLib convention)."""
    return NB101Network(adj, ops, num_classes=num_classes)


# ----------------------------------------------------------------------------- NAS-Bench-Macro
class _MacroIdentity(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else None)

    def forward(self, x):
        return x if self.down is None else self.down(x)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand-BN-ReLU, kxk depthwise-BN-ReLU, 1x1 project-BN (+x if same shape)."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, k: int):
        super().__init__()
        hid = cin * expand
        self.body = nn.Sequential(
            nn.Conv2d(cin, hid, 1, bias=False), nn.BatchNorm2d(hid), nn.ReLU(),
            nn.Conv2d(hid, hid, k, stride, k // 2, groups=hid, bias=False), nn.BatchNorm2d(hid), nn.ReLU(),
            nn.Conv2d(hid, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return y + x if self.residual else y


class MacroNetwork(nn.Module):
    """NAS-Bench-Macro network for an 8-digit code; input ``(B, 3, 32, 32)`` -> ``(B, num_classes)``."""

    def __init__(self, code: str, num_classes: int = 10, stages=(2, 3, 3), channels: int = 32):
        super().__init__()
        code = str(code)
        if len(code) != sum(stages) or any(ch not in "012" for ch in code):
            raise ValueError(f"NAS-Bench-Macro code must be {sum(stages)} digits in 0/1/2: {code!r}")
        layers: list[nn.Module] = [nn.Conv2d(3, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels),
                                   nn.ReLU()]
        c, i = channels, 0
        for n in stages:
            for j in range(n):
                stride, cout = (2, 2 * c) if j == 0 else (1, c)
                digit = code[i]
                if digit == "0":
                    layers.append(_MacroIdentity(c, cout, stride))
                elif digit == "1":
                    layers.append(InvertedResidual(c, cout, stride, 3, 3))
                else:
                    layers.append(InvertedResidual(c, cout, stride, 6, 5))
                c, i = cout, i + 1
        layers += [nn.Conv2d(c, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                   nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


def macro(code: str, num_classes: int = 10) -> MacroNetwork:
    """Build the NAS-Bench-Macro network of an 8-digit code."""
    return MacroNetwork(code, num_classes=num_classes)


def example_input(device: str | torch.device = "cpu") -> torch.Tensor:
    """CIFAR-sized example input, float32 ``(1, 3, 32, 32)``, used for tracing all three families."""
    return torch.zeros(1, 3, 32, 32, device=device)
