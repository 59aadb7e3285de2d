"""Execution tracer: ``nn.Module`` -> :class:`ComputationGraph` through ``TorchFunctionMode``.

Every torch function call made while the module runs is intercepted once (the mode is disabled
inside its own handler, so ``F.batch_norm`` is recorded but not the ``torch.batch_norm`` it calls).
A call becomes a CG node when at least one of its tensor arguments was produced by the traced data
flow (the input or an earlier node); weights (``nn.Parameter`` and other constants) only shape the
node's features.

Python-level composite functions that would otherwise be one opaque node are recorded as the ops they are made
of (:data:`_DECOMPOSE`: ``F.multi_head_attention_forward``, i.e. ``nn.MultiheadAttention``, becomes its input
projection ``linear``, the head reshapes, ``matmul``/``softmax`` or ``scaled_dot_product_attention`` and the
output projection ``linear``, with their weights). 4-D tensors moved to channels-last by ``permute(0, 2, 3, 1)``
(ConvNeXt / Swin blocks: ``LayerNorm``, ``Linear`` and activations over the last dim) are recorded with their
shapes in NCHW order, so that channel and resolution features mean the same as for convolutions.
"""

from __future__ import annotations

import types
import warnings

import torch
from torch.overrides import TorchFunctionMode

from .graph import _CL_KEEP, _PASSTHROUGH, _TORCH_OPS, ComputationGraph, Node


def _canon(func) -> str:
    name = getattr(func, "__name__", str(func))
    if name == "__get__":  # property access such as Tensor.shape / Tensor.T
        name = getattr(getattr(func, "__self__", None), "__name__", "__get__")
    return name.strip("_")


# Python functions recorded as the ops they are made of (their torch-function guard is bypassed, see
# _unguarded) rather than as one node; if that fails they fall back to their _TORCH_OPS type.
_DECOMPOSE = {"multi_head_attention_forward"}
_UNGUARDED: dict = {}


def _unguarded(func):
    """A copy of the Python function ``func`` whose ``has_torch_function`` guard is always false, so that its body
    runs under the active mode (which then records the ops inside); ``None`` if ``func`` is not such a function."""
    if func not in _UNGUARDED:
        code = getattr(func, "__code__", None)
        f = None
        if code is not None and "has_torch_function" in code.co_names:
            g = dict(func.__globals__)
            g["has_torch_function"] = lambda *a, **k: False
            f = types.FunctionType(code, g, func.__name__, func.__defaults__, func.__closure__)
            f.__kwdefaults__ = func.__kwdefaults__
        _UNGUARDED[func] = f
    return _UNGUARDED[func]


def _perm_layout(name: str, args, kwargs, ndim: int, cl: bool) -> bool | None:
    """Layout after a ``permute``/``movedim`` of a 4-D tensor: True = channels-last, False = NCHW, None = not
    a layout move (other dims order: treated as NCHW)."""
    if ndim != 4:
        return None
    if name == "permute":
        dims = kwargs.get("dims", args[1:] if len(args) > 1 else ())
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = dims[0]
        try:
            dims = tuple(int(d) % 4 for d in dims)
        except (TypeError, ValueError):
            return None
        if dims == (0, 2, 3, 1):
            return not cl
        if dims == (0, 3, 1, 2):
            return False
        return None
    src = args[1] if len(args) > 1 else kwargs.get("source")
    dst = args[2] if len(args) > 2 else kwargs.get("destination")
    if isinstance(src, int) and isinstance(dst, int):
        src, dst = src % 4, dst % 4
        if (src, dst) == (1, 3):
            return not cl
        if (src, dst) == (3, 1):
            return False
    return None


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
        self.cl: set[int] = set()  # ids of traced 4-D tensors in channels-last order (B, H, W, C)

    def track(self, t: torch.Tensor, node: int, cl: bool = False) -> None:
        self.producer[id(t)] = node
        self.keep.append(t)
        if cl and t.dim() == 4:
            self.cl.add(id(t))
        else:
            self.cl.discard(id(t))

    def shape(self, t: torch.Tensor, cl: bool | None = None) -> list[int]:
        """``t``'s shape, in NCHW order if it is channels-last."""
        s = list(t.shape)
        if (id(t) in self.cl if cl is None else cl) and len(s) == 4:
            return [s[0], s[3], s[1], s[2]]
        return s

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _canon(func)
        if name in _DECOMPOSE and (inner := _unguarded(func)) is not None:
            with self:  # record the ops it is made of
                return inner(*args, **kwargs)
        out = func(*args, **kwargs)
        ins = _tensors(list(args) + list(kwargs.values()), [])
        srcs = [self.producer[id(t)] for t in ins if id(t) in self.producer]
        # ``t[idx] = v`` returns None: its result is the written tensor
        outs = [args[0]] if name == "setitem" and isinstance(args[0], torch.Tensor) else _tensors(out, [])
        if not srcs or not outs:
            return out
        data_in = [t for t in ins if id(t) in self.producer]
        cl_in = id(data_in[0]) in self.cl
        if name in _PASSTHROUGH or name in ("size", "dim", "numel", "shape", "dtype", "device"):
            for o in outs:
                self.track(o, srcs[0], cl_in and o.shape == data_in[0].shape)
            return out
        op = _TORCH_OPS.get(name)
        if op is None and name.endswith("_"):
            op = _TORCH_OPS.get(name.rstrip("_"))
        if op is None:
            op = "other"
        weights = [t for t in ins if id(t) not in self.producer]
        if name in ("permute", "movedim", "moveaxis"):
            cl_out = bool(_perm_layout(name, args, kwargs, data_in[0].dim(), cl_in))
        else:
            cl_out = (cl_in and op in _CL_KEEP and outs[0].dim() == 4
                      and tuple(outs[0].shape[:3]) == tuple(data_in[0].shape[:3]))
        node = Node(op, in_shape=self.shape(data_in[0]), out_shape=self.shape(outs[0], cl_out), name=name)
        if op == "mul" and any(isinstance(a, (int, float)) and a == 0 for a in args):
            node.op = "zero"
        traced = [isinstance(a, torch.Tensor) and id(a) in self.producer for a in args[:3]]
        if name in ("addmm", "matmul", "mm") and len(args) >= (3 if name == "addmm" else 2):
            # x @ W (+ b) with a constant 2-D W: a linear layer, recorded as from F.linear (weight (out, in)), as
            # from_onnx types MatMul by a constant matrix; both operands traced: a matmul
            a_, w_ = (args[1], args[2]) if name == "addmm" else (args[0], args[1])
            t_a, t_w = (traced[1], traced[2]) if name == "addmm" else (traced[0], traced[1])
            if t_a and not t_w and isinstance(w_, torch.Tensor) and w_.dim() == 2:
                node.op = "linear"
                node.weight_shape = [int(w_.shape[1]), int(w_.shape[0])]
                node.bias = name == "addmm" and isinstance(args[0], torch.Tensor) and not traced[0]
            else:
                node.op = "matmul"
                mats = [t for t, tr in ((a_, t_a), (w_, t_w)) if isinstance(t, torch.Tensor) and not tr]
                node.weight_shape = list(mats[0].shape) if mats else None
        elif op in ("conv", "linear") and weights:
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
            self.track(o, idx, cl_out and o.shape == outs[0].shape)
        return out


def trace_module(model, example_input, name: str = "") -> ComputationGraph:
    """Run ``model`` on ``example_input`` and record the CG (see :meth:`ComputationGraph.from_module`)."""
    if not callable(model):
        raise TypeError(f"model must be an nn.Module (or a callable), got {type(model).__name__}")
    inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        got = type(example_input).__name__ if not isinstance(example_input, (tuple, list)) else \
            f"{type(example_input).__name__} of {[type(t).__name__ for t in example_input]}"
        raise ValueError(f"example_input must be a tensor or a tuple of tensors, got {got}")
    cg = ComputationGraph(name=name or type(model).__name__)
    cg.nodes.append(Node("input", out_shape=list(inputs[0].shape)))
    rec = _Recorder(cg)
    # Fresh aliases so that the caller's tensors are not confused with intermediate ones.
    inputs = tuple(t.detach().clone() if t.device.type != "meta" else t.new_empty(t.shape) for t in inputs)
    for t in inputs:
        rec.track(t, 0)
    try:
        with torch.no_grad(), rec:
            out = model(*inputs)
    except Exception as exc:  # noqa: BLE001 - whatever the module raises, say which call failed
        desc = ", ".join(f"{tuple(t.shape)} {str(t.dtype).replace('torch.', '')}" for t in inputs)
        raise ValueError(f"tracing failed: {type(model).__name__} raised {type(exc).__name__} on example_input "
                         f"[{desc}]: {exc} (is example_input shaped as the module expects, and the module in "
                         "eval mode?)") from exc
    outs = _tensors(out, [])
    srcs = [rec.producer[id(t)] for t in outs if id(t) in rec.producer]
    if not srcs:
        scripted = [n or "the module itself" for n, m in model.named_modules()
                    if isinstance(m, torch.jit.ScriptModule)] if isinstance(model, torch.nn.Module) else []
        hint = (f": it has TorchScript submodules ({', '.join(scripted[:3])}), whose ops the tracer cannot see; trace "
                "the plain (not scripted) module") if scripted else \
            " (or reaches it only through code the tracer cannot see: TorchScript, C++ extensions, .numpy()/.item())"
        raise ValueError(f"the module's output does not depend on its input: nothing to trace{hint}")
    shape = list(outs[0].shape)
    cg.nodes.append(Node("output", in_shape=shape, out_shape=shape))
    cg.edges.extend((s, len(cg.nodes) - 1) for s in dict.fromkeys(srcs))
    cg = cg.pruned()
    # only ops that reach the output (not e.g. the comparisons of Python control flow, which are pruned)
    unknown = sorted({n.name for n in cg.nodes if n.op == "other"})
    if unknown:
        warnings.warn(f"ops not in the CG vocabulary, typed 'other': {unknown}", stacklevel=3)
    return cg
