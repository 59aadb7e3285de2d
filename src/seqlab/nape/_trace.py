"""Execution tracer: ``nn.Module`` -> :class:`ComputationGraph` through ``TorchFunctionMode``.

Every torch function call made while the module runs is intercepted once (the mode is disabled
inside its own handler, so ``F.batch_norm`` is recorded but not the ``torch.batch_norm`` it calls).
A call becomes a CG node when at least one of its tensor arguments was produced by the traced data
flow (the input or an earlier node); weights (``nn.Parameter`` and other constants) only shape the
node's features.
"""

from __future__ import annotations

import warnings

import torch
from torch.overrides import TorchFunctionMode

from .graph import _PASSTHROUGH, _TORCH_OPS, ComputationGraph, Node


def _canon(func) -> str:
    name = getattr(func, "__name__", str(func))
    if name == "__get__":  # property access such as Tensor.shape / Tensor.T
        name = getattr(getattr(func, "__self__", None), "__name__", "__get__")
    return name.strip("_")


def _tensors(obj, out: list):
    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            _tensors(o, out)
    elif isinstance(obj, dict):
        for o in obj.values():
            _tensors(o, out)
    return out


class _Recorder(TorchFunctionMode):
    def __init__(self, cg: ComputationGraph):
        super().__init__()
        self.cg = cg
        self.producer: dict[int, int] = {}
        self.keep: list[torch.Tensor] = []  # keeps traced tensors alive so ids are not reused
        self.unknown: set[str] = set()

    def track(self, t: torch.Tensor, node: int) -> None:
        self.producer[id(t)] = node
        self.keep.append(t)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        ins = _tensors(list(args) + list(kwargs.values()), [])
        srcs = [self.producer[id(t)] for t in ins if id(t) in self.producer]
        outs = _tensors(out, [])
        if not srcs or not outs:
            return out
        name = _canon(func)
        if name in _PASSTHROUGH or name in ("size", "dim", "numel", "shape", "dtype", "device"):
            for o in outs:
                self.track(o, srcs[0])
            return out
        op = _TORCH_OPS.get(name)
        if op is None and name.endswith("_"):
            op = _TORCH_OPS.get(name.rstrip("_"))
        if op is None:
            self.unknown.add(name)
            op = "other"
        data_in = [t for t in ins if id(t) in self.producer]
        weights = [t for t in ins if id(t) not in self.producer]
        node = Node(op, in_shape=list(data_in[0].shape), out_shape=list(outs[0].shape), name=name)
        if op == "mul" and any(isinstance(a, (int, float)) and a == 0 for a in args):
            node.op = "zero"
        if op in ("conv", "linear") and weights:
            node.weight_shape = list(weights[0].shape)
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            node.bias = isinstance(bias, torch.Tensor)
            if op == "conv":
                node.kernel = list(node.weight_shape[2:])
                stride = args[3] if len(args) > 3 else kwargs.get("stride", 1)
                node.stride = int(max(stride) if isinstance(stride, (tuple, list)) else stride)
                groups = args[6] if len(args) > 6 else kwargs.get("groups", 1)
                node.groups = int(groups)
        elif op == "linear" and len(data_in) >= 2:  # addmm-like with traced operands
            node.op = "matmul"
        elif op in ("matmul",) and weights:
            node.weight_shape = list(weights[0].shape)
        elif op in ("batchnorm", "layernorm"):
            ws = [w for w in weights if w.dim() >= 1 and w.shape[0] > 1]
            if ws:
                node.weight_shape = [int(ws[0].shape[0])]
        elif op in ("maxpool", "avgpool"):
            k = args[1] if len(args) > 1 else kwargs.get("kernel_size", 1)
            k = list(k) if isinstance(k, (tuple, list)) else [int(k)]
            node.kernel = [int(v) for v in k]
            s = args[2] if len(args) > 2 else kwargs.get("stride")
            s = s if s not in (None, []) else k
            node.stride = int(max(s) if isinstance(s, (tuple, list)) else s)
        idx = len(self.cg.nodes)
        self.cg.nodes.append(node)
        for s in dict.fromkeys(srcs):
            self.cg.edges.append((s, idx))
        for o in outs:
            self.track(o, idx)
        return out


def trace_module(model, example_input, name: str = "") -> ComputationGraph:
    """Run ``model`` on ``example_input`` and record the CG (see :meth:`ComputationGraph.from_module`)."""
    inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise ValueError("example_input must be a tensor or a tuple of tensors")
    cg = ComputationGraph(name=name or type(model).__name__)
    cg.nodes.append(Node("input", out_shape=list(inputs[0].shape)))
    rec = _Recorder(cg)
    # Fresh aliases so that the caller's tensors are not confused with intermediate ones.
    inputs = tuple(t.detach().clone() if t.device.type != "meta" else t.new_empty(t.shape) for t in inputs)
    for t in inputs:
        rec.track(t, 0)
    with torch.no_grad(), rec:
        out = model(*inputs)
    outs = _tensors(out, [])
    srcs = [rec.producer[id(t)] for t in outs if id(t) in rec.producer]
    if not srcs:
        raise ValueError("the module's output does not depend on its input: nothing to trace")
    if rec.unknown:
        warnings.warn(f"ops not in the CG vocabulary, typed 'other': {sorted(rec.unknown)}", stacklevel=3)
    shape = list(outs[0].shape)
    cg.nodes.append(Node("output", in_shape=shape, out_shape=shape))
    cg.edges.extend((s, len(cg.nodes) - 1) for s in dict.fromkeys(srcs))
    return cg.pruned()
