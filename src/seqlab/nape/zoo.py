"""Compact plain-PyTorch builders of CIFAR-sized (3x32x32 in, 10 classes) networks from families that the
shipped predictor's training families (NB-201 cells, NB-101 cells, NAS-Bench-Macro MobileNetV2 blocks) do not
contain: for zero-shot stress tests of :class:`seqlab.nape.GENNAPE` (``benchmarks/nape_unseen.py``).

The builders are written from the papers' block descriptions, scaled to CIFAR (3x3 stems, no ImageNet
down-sampling), with a few depth/width variants each; they are not faithful reproductions of any reference
implementation, and none of these networks has a known CIFAR-10 accuracy here (no labels).

>>> from seqlab.nape import zoo
>>> sorted(zoo.FAMILIES)[:3]
['convnext', 'densenet', 'inception']
>>> model = zoo.build("resnet", "resnet20")     # eval mode, CPU, seeded init
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

INPUT_SHAPE = (1, 3, 32, 32)
CLASSES = 10


def _cbr(cin, cout, k=3, s=1, bn=True, act: type[nn.Module] | None = nn.ReLU, groups=1, dil=1) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, s, dil * (k - 1) // 2, dilation=dil, groups=groups,
                                         bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


def _head(c: int) -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, CLASSES))


# ----------------------------------------------------------------------------- plain CNNs
def vgg(cfg: tuple, bn: bool = True, dropout: float = 0.0, act: type[nn.Module] = nn.ReLU) -> nn.Module:
    """VGG (Simonyan & Zisserman 2015): conv3x3(-BN)-ReLU stacks, ``"M"`` = 2x2 max-pool; CIFAR head."""
    layers, c = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers.append(_cbr(c, v, bn=bn, act=act))
            c = v
    head = [nn.Flatten(), nn.Dropout(dropout), nn.Linear(c, c), act(), nn.Linear(c, CLASSES)] \
        if dropout else [nn.Flatten(), nn.Linear(c, CLASSES)]
    return nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), *head)


# ----------------------------------------------------------------------------- residual networks
class _Basic(nn.Module):
    def __init__(self, cin, cout, s, preact=False, dropout=0.0):
        super().__init__()
        self.preact = preact
        if preact:  # He et al. 2016b: BN-ReLU-conv x2, identity path untouched
            self.bn1, self.bn2 = nn.BatchNorm2d(cin), nn.BatchNorm2d(cout)
            self.c1 = nn.Conv2d(cin, cout, 3, s, 1, bias=False)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.drop = nn.Dropout(dropout)
        else:
            self.body = nn.Sequential(_cbr(cin, cout, 3, s), _cbr(cout, cout, 3, 1, act=None))
        self.short = (nn.Conv2d(cin, cout, 1, s, bias=False) if preact else _cbr(cin, cout, 1, s, act=None)) \
            if (s != 1 or cin != cout) else nn.Identity()

    def forward(self, x):
        if self.preact:
            o = F.relu(self.bn1(x))
            sc = self.short(o) if not isinstance(self.short, nn.Identity) else x
            o = self.c2(self.drop(F.relu(self.bn2(self.c1(o)))))
            return o + sc
        o = self.body(x)
        o += self.short(x)  # in-place add
        return F.relu(o, inplace=True)


class _Bottleneck(nn.Module):
    def __init__(self, cin, mid, s, groups=1, expansion=4):
        super().__init__()
        cout = mid * expansion
        self.body = nn.Sequential(_cbr(cin, mid, 1), _cbr(mid, mid, 3, s, groups=groups), _cbr(mid, cout, 1, act=None))
        self.short = _cbr(cin, cout, 1, s, act=None) if (s != 1 or cin != cout) else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.body(x) + self.short(x))


class _ResNet(nn.Module):
    def __init__(self, blocks: list[nn.Module], stem: nn.Module, c_out: int, final_bn: bool = False):
        super().__init__()
        self.stem, self.blocks = stem, nn.Sequential(*blocks)
        self.final = nn.Sequential(nn.BatchNorm2d(c_out), nn.ReLU()) if final_bn else nn.Identity()
        self.head = _head(c_out)

    def forward(self, x):
        return self.head(self.final(self.blocks(self.stem(x))))


def resnet(depth: int = 20, width: int = 16, preact: bool = False, widen: int = 1, dropout: float = 0.0) -> nn.Module:
    """CIFAR ResNet (He et al. 2016) with basic blocks, ``depth = 6n + 2``; ``preact``: pre-activation
    (He et al. 2016b); ``widen`` > 1 with ``depth = 6n + 4``-style counting gives a Wide ResNet (Zagoruyko &
    Komodakis 2016: preact blocks, widths 16k/32k/64k, optional dropout between the convs)."""
    n = (depth - 2) // 6
    widths = [width * widen, 2 * width * widen, 4 * width * widen]
    blocks, c = [], width
    for i, w in enumerate(widths):
        for j in range(n):
            blocks.append(_Basic(c, w, 2 if (i > 0 and j == 0) else 1, preact=preact, dropout=dropout))
            c = w
    stem = nn.Conv2d(3, width, 3, 1, 1, bias=False) if preact else _cbr(3, width)
    return _ResNet(blocks, stem, c, final_bn=preact)


def bottleneck_resnet(depth: int = 29, width: int = 16, groups: int = 1, expansion: int = 4) -> nn.Module:
    """CIFAR ResNet with bottleneck blocks, ``depth = 9n + 2``; ``groups`` > 1: ResNeXt (Xie et al. 2017,
    grouped 3x3 conv)."""
    n = (depth - 2) // 9
    blocks, c = [], width
    for i, w in enumerate([width, 2 * width, 4 * width]):
        mid = w * (2 if groups > 1 else 1)
        for j in range(n):
            blocks.append(_Bottleneck(c, mid, 2 if (i > 0 and j == 0) else 1, groups, expansion))
            c = mid * expansion
    return _ResNet(blocks, _cbr(3, width), c)


# ----------------------------------------------------------------------------- DenseNet
class _DenseLayer(nn.Module):
    def __init__(self, cin, growth):
        super().__init__()
        mid = 4 * growth
        self.f = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, mid, 1, bias=False),
                               nn.BatchNorm2d(mid), nn.ReLU(), nn.Conv2d(mid, growth, 3, 1, 1, bias=False))

    def forward(self, x):
        return torch.cat([x, self.f(x)], 1)


def densenet(depth: int = 40, growth: int = 12) -> nn.Module:
    """DenseNet-BC (Huang et al. 2017): BN-ReLU-conv1x1-BN-ReLU-conv3x3 layers concatenated, transitions with
    compression 0.5 and 2x2 average pooling, ``depth = 6n + 4``."""
    n = (depth - 4) // 6
    c = 2 * growth
    layers: list[nn.Module] = [nn.Conv2d(3, c, 3, 1, 1, bias=False)]
    for i in range(3):
        for _ in range(n):
            layers.append(_DenseLayer(c, growth))
            c += growth
        if i < 2:
            layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2)]
            c //= 2
    return nn.Sequential(*layers, nn.BatchNorm2d(c), nn.ReLU(), _head(c))


# ----------------------------------------------------------------------------- Inception
class _Inception(nn.Module):
    def __init__(self, cin, c1, c3r, c3, c5r, c5, cp):
        super().__init__()
        self.b1 = _cbr(cin, c1, 1)
        self.b2 = nn.Sequential(_cbr(cin, c3r, 1), _cbr(c3r, c3, 3))
        self.b3 = nn.Sequential(_cbr(cin, c5r, 1), _cbr(c5r, c5, 3), _cbr(c5, c5, 3))  # 5x5 as two 3x3
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), _cbr(cin, cp, 1))
        self.cout = c1 + c3 + c5 + cp

    def forward(self, x):
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


def inception(modules_per_stage: int = 2, width: int = 32) -> nn.Module:
    """GoogLeNet-style (Szegedy et al. 2015) CIFAR network: 4-branch Inception modules (1x1 / 1x1-3x3 /
    1x1-3x3-3x3 / maxpool-1x1, concatenated), two stages separated by a 3x3 stride-2 max-pool."""
    w = width
    layers: list[nn.Module] = [_cbr(3, 2 * w)]
    c = 2 * w
    for stage in range(2):
        for _ in range(modules_per_stage):
            m = _Inception(c, w, w, 2 * w, w // 2, w // 2, w // 2)
            layers.append(m)
            c = m.cout
        if stage == 0:
            layers.append(nn.MaxPool2d(3, 2, 1))
            w *= 2
    return nn.Sequential(*layers, _head(c))


# ----------------------------------------------------------------------------- MobileNetV3
class _SE(nn.Module):
    def __init__(self, c, r=4):
        super().__init__()
        self.f = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, max(8, c // r), 1), nn.ReLU(),
                               nn.Conv2d(max(8, c // r), c, 1), nn.Hardsigmoid())

    def forward(self, x):
        return x * self.f(x)


class _MBV3Block(nn.Module):
    def __init__(self, cin, exp, cout, k, s, se, act):
        super().__init__()
        layers = [] if exp == cin else [_cbr(cin, exp, 1, act=act)]
        layers += [_cbr(exp, exp, k, s, groups=exp, act=act)]
        if se:
            layers.append(_SE(exp))
        layers.append(_cbr(exp, cout, 1, act=None))
        self.f = nn.Sequential(*layers)
        self.res = s == 1 and cin == cout

    def forward(self, x):
        return x + self.f(x) if self.res else self.f(x)


def mobilenetv3(mult: float = 1.0, large: bool = False) -> nn.Module:
    """MobileNetV3-Small/-Large-like (Howard et al. 2019): inverted residuals with depthwise convs,
    squeeze-excitation (``x * hardsigmoid(...)``), hardswish; CIFAR strides (stem stride 1)."""
    hs, re_ = nn.Hardswish, nn.ReLU
    small = [(3, 16, 16, True, re_, 2), (3, 72, 24, False, re_, 2), (3, 88, 24, False, re_, 1),
             (5, 96, 40, True, hs, 2), (5, 240, 40, True, hs, 1), (5, 120, 48, True, hs, 1),
             (5, 288, 96, True, hs, 1), (5, 576, 96, True, hs, 1)]
    big = [(3, 16, 16, False, re_, 1), (3, 64, 24, False, re_, 2), (3, 72, 24, False, re_, 1),
           (5, 72, 40, True, re_, 2), (5, 120, 40, True, re_, 1), (3, 240, 80, False, hs, 2),
           (3, 200, 80, False, hs, 1), (3, 480, 112, True, hs, 1), (5, 672, 160, True, hs, 1),
           (5, 960, 160, True, hs, 1)]

    def r(v):
        return max(8, int(v * mult + 4) // 8 * 8)

    c = r(16)
    layers: list[nn.Module] = [_cbr(3, c, act=hs)]
    for k, e, o, se, act, s in big if large else small:
        layers.append(_MBV3Block(c, r(e), r(o), k, s, se, act))
        c = r(o)
    last = r(576 if not large else 960)
    return nn.Sequential(*layers, _cbr(c, last, 1, act=hs), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(last, 1024 if large else 512), nn.Hardswish(), nn.Dropout(0.2),
                         nn.Linear(1024 if large else 512, CLASSES))


# ----------------------------------------------------------------------------- ShuffleNetV2
def _shuffle(x, groups=2):
    b, c, h, w = x.shape
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class _ShuffleUnit(nn.Module):
    def __init__(self, cin, cout, s):
        super().__init__()
        self.s = s
        mid = cout // 2
        bin_ = cin if s > 1 else cin // 2
        self.b2 = nn.Sequential(_cbr(bin_, mid, 1), _cbr(mid, mid, 3, s, groups=mid, act=None), _cbr(mid, mid, 1))
        if s > 1:
            self.b1 = nn.Sequential(_cbr(cin, cin, 3, s, groups=cin, act=None), _cbr(cin, mid, 1))

    def forward(self, x):
        if self.s == 1:
            a, b = x.chunk(2, dim=1)
            out = torch.cat([a, self.b2(b)], 1)
        else:
            out = torch.cat([self.b1(x), self.b2(x)], 1)
        return _shuffle(out)


def shufflenetv2(mult: float = 1.0, repeats: tuple = (4, 8, 4)) -> nn.Module:
    """ShuffleNetV2 (Ma et al. 2018): channel split (``chunk``), branch conv1x1-dw3x3-conv1x1, concat, channel
    shuffle (reshape-transpose-reshape); CIFAR stem."""
    widths = {0.5: (48, 96, 192), 1.0: (116, 232, 464), 1.5: (176, 352, 704)}[mult]
    layers: list[nn.Module] = [_cbr(3, 24)]
    c = 24
    for w, n in zip(widths, repeats):
        for j in range(n):
            layers.append(_ShuffleUnit(c, w, 2 if j == 0 else 1))
            c = w
    return nn.Sequential(*layers, _cbr(c, 1024, 1), _head(1024))


# ----------------------------------------------------------------------------- ConvNeXt
class _LayerNorm2d(nn.Module):
    """LayerNorm over the channels of an NCHW tensor, as ConvNeXt's down-sampling layers do it
    (``permute`` to channels-last, ``F.layer_norm``, ``permute`` back)."""

    def __init__(self, c):
        super().__init__()
        self.ln = nn.LayerNorm(c, eps=1e-6)

    def forward(self, x):
        return self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _ConvNeXtBlock(nn.Module):
    def __init__(self, c, scale=1e-6):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, 1, 3, groups=c)
        self.norm = nn.LayerNorm(c, eps=1e-6)
        self.pw1, self.act, self.pw2 = nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.full((c,), scale))

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        y = self.gamma * self.pw2(self.act(self.pw1(self.norm(y))))
        return x + y.permute(0, 3, 1, 2)


def convnext(depths: tuple = (1, 1, 3, 1), dims: tuple = (32, 64, 128, 256)) -> nn.Module:
    """ConvNeXt (Liu et al. 2022): patchify stem (2x2, stride 2 for CIFAR), blocks dw7x7 -> LayerNorm over
    channels-last -> Linear 4x -> GELU -> Linear -> layer scale, LayerNorm + 2x2 stride-2 conv down-sampling."""
    layers: list[nn.Module] = [nn.Conv2d(3, dims[0], 2, 2), _LayerNorm2d(dims[0])]
    for i, (d, c) in enumerate(zip(depths, dims)):
        if i > 0:
            layers += [_LayerNorm2d(dims[i - 1]), nn.Conv2d(dims[i - 1], c, 2, 2)]
        layers += [_ConvNeXtBlock(c) for _ in range(d)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(dims[-1]),
                         nn.Linear(dims[-1], CLASSES))


# ----------------------------------------------------------------------------- ViT / Mixer
class _Attn(nn.Module):
    """Multi-head self-attention on (B, L, D) tokens: ``"mha"`` nn.MultiheadAttention, ``"sdpa"``
    F.scaled_dot_product_attention, ``"manual"`` q @ k^T -> softmax -> @ v written out."""

    def __init__(self, d, heads, kind):
        super().__init__()
        self.kind, self.h = kind, heads
        if kind == "mha":
            self.mha = nn.MultiheadAttention(d, heads, batch_first=True)
        else:
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x):
        if self.kind == "mha":
            return self.mha(x, x, x)[0]
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4).unbind(0)
        if self.kind == "sdpa":
            o = F.scaled_dot_product_attention(q, k, v)
        else:
            a = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d // self.h))
            o = a.softmax(-1) @ v
        return self.proj(o.transpose(1, 2).reshape(b, n, d))


class _TBlock(nn.Module):
    def __init__(self, d, heads, kind, mlp=2):
        super().__init__()
        self.n1, self.att, self.n2 = nn.LayerNorm(d), _Attn(d, heads, kind), nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, mlp * d), nn.GELU(), nn.Linear(mlp * d, d))

    def forward(self, x):
        x = x + self.att(self.n1(x))
        return x + self.mlp(self.n2(x))


class ViT(nn.Module):
    """Vision Transformer (Dosovitskiy et al. 2021): conv patch embedding (4x4 -> 64 tokens), learned position
    embedding, pre-norm blocks, class token (``pool="cls"``) or mean pooling."""

    def __init__(self, dim=64, depth=4, heads=4, patch=4, attn="manual", pool="cls"):
        super().__init__()
        n = (32 // patch) ** 2
        self.pool = pool
        self.embed = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        self.pos = nn.Parameter(0.02 * torch.randn(1, n + (pool == "cls"), dim))
        self.blocks = nn.Sequential(*[_TBlock(dim, heads, attn) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, CLASSES)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)
        if self.cls is not None:
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.norm(self.blocks(x + self.pos))
        return self.head(x[:, 0] if self.cls is not None else x.mean(1))


class _MixerBlock(nn.Module):
    def __init__(self, tokens, d):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.tok = nn.Sequential(nn.Linear(tokens, tokens * 2), nn.GELU(), nn.Linear(tokens * 2, tokens))
        self.ch = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        x = x + self.tok(self.n1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.ch(self.n2(x))


def mixer(dim: int = 128, depth: int = 4, patch: int = 4) -> nn.Module:
    """MLP-Mixer (Tolstikhin et al. 2021): token-mixing MLP on the transposed token matrix, channel MLP."""
    n = (32 // patch) ** 2
    return nn.Sequential(nn.Conv2d(3, dim, patch, patch), nn.Flatten(2), _Transpose(),
                         *[_MixerBlock(n, dim) for _ in range(depth)], nn.LayerNorm(dim), _MeanTokens(),
                         nn.Linear(dim, CLASSES))


class _Transpose(nn.Module):
    def forward(self, x):
        return x.transpose(1, 2)


class _MeanTokens(nn.Module):
    def forward(self, x):
        return x.mean(dim=1)


# ----------------------------------------------------------------------------- odd ones
class ConvRNN(nn.Module):
    """Conv stem, then the 8 rows of the 8x8 feature map as a sequence through an LSTM or GRU (ops outside
    the CG vocabulary: they must come out as ``"other"``)."""

    def __init__(self, c=64, hidden=128, cell="lstm"):
        super().__init__()
        self.stem = nn.Sequential(_cbr(3, c), nn.MaxPool2d(2), _cbr(c, c), nn.MaxPool2d(2))
        self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(c * 8, hidden, batch_first=True)
        self.head = nn.Linear(hidden, CLASSES)

    def forward(self, x):
        f = self.stem(x)  # (B, C, 8, 8)
        seq = f.permute(0, 2, 1, 3).flatten(2)  # (B, 8 rows, C * 8)
        out, _ = self.rnn(seq)
        return self.head(out[:, -1])


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.sign(x)

    @staticmethod
    def backward(ctx, g):
        return g


class OddOps(nn.Module):
    """Grab-bag: dilated and grouped convs, a custom autograd Function (sign), ``cumsum`` and ``fft`` (no CG
    type), PixelShuffle / F.interpolate up-sampling, ``torch.cat`` along H and W, in-place ops, Dropout,
    AdaptiveMaxPool."""

    def __init__(self, c=32):
        super().__init__()
        self.c1 = _cbr(3, c)
        self.dil = _cbr(c, c, 3, dil=2)
        self.grp = _cbr(c, 2 * c, 3, 2, groups=4)
        self.up = nn.Sequential(nn.Conv2d(2 * c, 4 * c, 1), nn.PixelShuffle(2))  # back to 32x32, c channels
        self.c2 = _cbr(c, c, 3, 2)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Sequential(nn.AdaptiveMaxPool2d(2), nn.Flatten(), nn.Linear(c * 4, CLASSES))

    def forward(self, x):
        x = self.c1(x)
        y = self.dil(x)
        y.mul_(0.5).add_(x)  # in-place
        z = self.up(self.grp(y))  # (B, c, 32, 32)
        z = z + _SignSTE.apply(z) * 0.1
        z = torch.cumsum(z, dim=-1) / z.shape[-1]
        top, bottom = z.split(16, dim=2)
        z = torch.cat([bottom, top], dim=2)  # cat along H
        left, right = z.chunk(2, dim=3)
        z = torch.cat([right, left], dim=3)  # cat along W
        z = self.c2(z)  # 16x16
        z = F.interpolate(z, scale_factor=0.5, mode="bilinear", align_corners=False)
        z = z + torch.fft.fft2(z).real * 1e-3
        return self.head(self.drop(z))


class DynamicDepth(nn.Module):
    """Data-dependent Python control flow (``torch.fx.symbolic_trace`` cannot trace it): the number of
    residual blocks applied depends on the input's statistics, and a ``while`` loop on a tensor norm."""

    def __init__(self, c=32, max_blocks=4):
        super().__init__()
        self.stem = _cbr(3, c)
        self.blocks = nn.ModuleList([_cbr(c, c) for _ in range(max_blocks)])
        self.head = _head(c)

    def forward(self, x):
        x = self.stem(x)
        n = 2 if float(x.mean()) > 0 else 1
        for b in self.blocks[: 2 * n]:
            x = x + b(x)
        while x.norm() > 1e3 * x.numel() ** 0.5:
            x = x * 0.5
        return self.head(x)


# ----------------------------------------------------------------------------- registry
Builder = Callable[[], nn.Module]
FAMILIES: dict[str, dict[str, Builder]] = {
    "vgg": {
        "vgg8-bn": lambda: vgg((32, "M", 64, "M", 128, "M", 256, "M")),
        "vgg11-bn-w0.5": lambda: vgg((32, "M", 64, "M", 128, 128, "M", 256, 256, "M", 256, 256, "M")),
        "vgg11-nobn-w0.5": lambda: vgg((32, "M", 64, "M", 128, 128, "M", 256, 256, "M", 256, 256, "M"), bn=False),
        "vgg16-bn-w0.5": lambda: vgg((32, 32, "M", 64, 64, "M", 128, 128, 128, "M", 256, 256, 256, "M",
                                      256, 256, 256, "M"), dropout=0.5),
        "vgg11-bn": lambda: vgg((64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")),
    },
    "resnet": {
        "resnet8": lambda: resnet(8), "resnet14": lambda: resnet(14), "resnet20": lambda: resnet(20),
        "resnet32": lambda: resnet(32), "resnet56": lambda: resnet(56), "resnet20-w32": lambda: resnet(20, 32),
    },
    "resnet-bottleneck": {
        "resnet29b": lambda: bottleneck_resnet(29), "resnet47b": lambda: bottleneck_resnet(47),
        "resnet29b-w32": lambda: bottleneck_resnet(29, 32),
    },
    "preact-resnet": {
        "preact20": lambda: resnet(20, preact=True), "preact32": lambda: resnet(32, preact=True),
        "preact20-w32": lambda: resnet(20, 32, preact=True),
    },
    "wide-resnet": {
        "wrn-10-2": lambda: resnet(8, preact=True, widen=2), "wrn-16-2": lambda: resnet(14, preact=True, widen=2),
        "wrn-16-4": lambda: resnet(14, preact=True, widen=4, dropout=0.3),
        "wrn-22-4": lambda: resnet(20, preact=True, widen=4),
        # the largest: 10.5 GFLOPs (NASWOT at batch 64 still under the auto cap), 16 GFLOPs (over it: no NASWOT)
        "wrn-28-10": lambda: resnet(26, preact=True, widen=10, dropout=0.3),
        "wrn-40-10": lambda: resnet(38, preact=True, widen=10),
    },
    "resnext": {
        "resnext29-4x8d": lambda: bottleneck_resnet(29, 16, groups=4, expansion=2),
        "resnext29-8x8d": lambda: bottleneck_resnet(29, 32, groups=8, expansion=2),
    },
    "densenet": {
        "densenet-bc-22-12": lambda: densenet(22, 12), "densenet-bc-40-12": lambda: densenet(40, 12),
        "densenet-bc-40-24": lambda: densenet(40, 24),
    },
    "inception": {
        "inception-1x16": lambda: inception(1, 16), "inception-2x16": lambda: inception(2, 16),
        "inception-2x32": lambda: inception(2, 32), "inception-3x32": lambda: inception(3, 32),
    },
    "mobilenetv3": {
        "mbv3-small-0.5": lambda: mobilenetv3(0.5), "mbv3-small-1.0": lambda: mobilenetv3(1.0),
        "mbv3-large-0.5": lambda: mobilenetv3(0.5, large=True), "mbv3-large-1.0": lambda: mobilenetv3(1.0, large=True),
    },
    "shufflenetv2": {
        "shufflev2-0.5-short": lambda: shufflenetv2(0.5, (2, 4, 2)), "shufflev2-0.5": lambda: shufflenetv2(0.5),
        "shufflev2-1.0": lambda: shufflenetv2(1.0), "shufflev2-1.5": lambda: shufflenetv2(1.5),
    },
    "convnext": {
        "convnext-1131-32": lambda: convnext((1, 1, 3, 1), (32, 64, 128, 256)),
        "convnext-2262-32": lambda: convnext((2, 2, 6, 2), (32, 64, 128, 256)),
        "convnext-2262-48": lambda: convnext((2, 2, 6, 2), (48, 96, 192, 384)),
    },
    "vit": {
        "vit-d64-l2-manual": lambda: ViT(64, 2), "vit-d64-l4-manual": lambda: ViT(64, 4),
        "vit-d128-l6-manual": lambda: ViT(128, 6, 8), "vit-d64-l4-mha": lambda: ViT(64, 4, attn="mha"),
        "vit-d64-l4-sdpa-mean": lambda: ViT(64, 4, attn="sdpa", pool="mean"),
        "vit-d128-l6-mha": lambda: ViT(128, 6, 8, attn="mha"),
    },
    "mlp-mixer": {
        "mixer-d64-l2": lambda: mixer(64, 2), "mixer-d128-l4": lambda: mixer(128, 4),
        "mixer-d128-l8": lambda: mixer(128, 8),
    },
    "odd": {
        "conv-lstm": lambda: ConvRNN(cell="lstm"), "conv-gru": lambda: ConvRNN(cell="gru"),
        "odd-ops": lambda: OddOps(), "dynamic-depth": lambda: DynamicDepth(),
        "tanh-vgg": lambda: vgg((32, "M", 64, "M", 128, "M"), act=nn.Tanh),  # no rectifier: no NASWOT
    },
}
# one small variant per family, for quick runs and tests
QUICK: dict[str, str] = {f: next(iter(v)) for f, v in FAMILIES.items()}


def build(family: str, variant: str, seed: int = 0) -> nn.Module:
    """The network ``variant`` of ``family`` (see :data:`FAMILIES`), freshly initialised from ``seed``, in eval mode."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose from {sorted(FAMILIES)}")
    if variant not in FAMILIES[family]:
        raise ValueError(f"unknown variant {variant!r} of {family}; choose from {sorted(FAMILIES[family])}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return FAMILIES[family][variant]().eval()
