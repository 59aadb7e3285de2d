"""Computation graphs (CGs) of atomic operations, as in GENNAPE (Mills et al., AAAI 2023).

A :class:`ComputationGraph` is a DAG whose nodes are atomic operations (one convolution, one batch norm,
one activation, one addition, ...) and whose edges are directed and featureless (data flows from the
source op to the destination op). Every node records the shapes around it, so that node features
(op-type one-hot, normalised input/output resolution and channels, kernel/weight shape, stride,
groups, bias flag, cost) can be computed without the original network.

Two front ends build CGs:

* :meth:`ComputationGraph.from_module` runs the module once under a ``TorchFunctionMode`` that
  records every ``torch`` function call with its input/output tensors (shape propagation by
  execution). Unlike ``torch.fx.symbolic_trace`` this follows data-dependent Python control flow
  and sees through ``nn.Module`` boundaries to the functional ops, so attention blocks
  (``scaled_dot_product_attention`` / ``linear`` / ``matmul`` / ``softmax``) and SSM blocks
  (``linear``, ``conv1d``, elementwise ops, ``fft``...) decompose into their ops. Modules built on the
  ``meta`` device trace without any arithmetic.
* :meth:`ComputationGraph.from_onnx` reads an ONNX file (with ``onnx.shape_inference``).

Unknown operations become the explicit ``"other"`` type with a warning.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Op vocabulary. The order defines the one-hot layout of node features: append only (saved
# predictors depend on it).
OP_TYPES: tuple[str, ...] = (
    "input", "output", "conv", "linear", "matmul", "batchnorm", "layernorm",
    "relu", "relu6", "gelu", "silu", "sigmoid", "tanh", "hardswish",
    "add", "mul", "concat", "maxpool", "avgpool", "adaptivepool", "mean",
    "reshape", "identity", "softmax", "attention", "slice", "zero", "other",
)
OP_INDEX = {name: i for i, name in enumerate(OP_TYPES)}

# torch function name (leading/trailing underscores stripped) -> CG op type.
_TORCH_OPS: dict[str, str] = {
    **{k: "conv" for k in ("conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                           "conv_transpose3d", "convolution")},
    "linear": "linear", "addmm": "linear", "bilinear": "linear",
    **{k: "matmul" for k in ("matmul", "mm", "bmm", "baddbmm", "einsum", "mv", "dot")},
    "batch_norm": "batchnorm", "instance_norm": "batchnorm",
    "layer_norm": "layernorm", "group_norm": "layernorm", "rms_norm": "layernorm",
    "normalize": "layernorm",
    "relu": "relu", "leaky_relu": "relu", "prelu": "relu", "elu": "relu", "selu": "relu",
    "celu": "relu", "threshold": "relu", "relu6": "relu6", "hardtanh": "relu6",
    "clamp": "relu6", "clip": "relu6",
    "gelu": "gelu", "silu": "silu", "mish": "silu", "softplus": "silu",
    "sigmoid": "sigmoid", "hardsigmoid": "sigmoid", "logsigmoid": "sigmoid", "glu": "sigmoid",
    "tanh": "tanh", "hardswish": "hardswish",
    "add": "add", "iadd": "add", "sub": "add", "isub": "add", "rsub": "add", "radd": "add",
    "mul": "mul", "imul": "mul", "rmul": "mul", "div": "mul", "truediv": "mul", "rtruediv": "mul",
    "neg": "mul", "exp": "mul", "sqrt": "mul", "rsqrt": "mul", "pow": "mul", "square": "mul",
    "reciprocal": "mul", "erf": "mul",  # as the ONNX map below (Reciprocal, Erf: a hand-written GELU)
    "setitem": "concat",  # t[idx] = v: merges v into t, as a concatenation merges its inputs
    "cat": "concat", "concat": "concat", "stack": "concat", "hstack": "concat", "vstack": "concat",
    **{k: "maxpool" for k in ("max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices",
                              "max_pool2d_with_indices", "max_pool3d_with_indices")},
    **{k: "avgpool" for k in ("avg_pool1d", "avg_pool2d", "avg_pool3d", "lp_pool2d")},
    **{k: "adaptivepool" for k in ("adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
                                   "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
                                   "adaptive_max_pool2d_with_indices")},
    "mean": "mean", "sum": "mean", "amax": "mean", "max": "mean", "logsumexp": "mean",
    **{k: "reshape" for k in ("view", "reshape", "flatten", "permute", "transpose", "t", "squeeze",
                              "unsqueeze", "expand", "expand_as", "repeat", "movedim", "unflatten",
                              "pixel_shuffle", "pixel_unshuffle", "interpolate", "upsample",
                              "roll", "flip", "pad", "view_as", "swapaxes", "mT", "moveaxis")},
    "softmax": "softmax", "log_softmax": "softmax",
    "scaled_dot_product_attention": "attention", "multi_head_attention_forward": "attention",
    **{k: "slice" for k in ("getitem", "split", "chunk", "narrow", "select", "index_select", "unbind",
                            "gather", "tensor_split")},
    "zeros_like": "zero", "mul_zero": "zero",
}
# Calls whose tensor output is the input under another name (no node is created).
_PASSTHROUGH = {
    "contiguous", "clone", "detach", "to", "type", "float", "double", "half", "bfloat16", "cpu",
    "cuda", "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
    "requires_grad", "identity", "type_as", "set_", "as_strided",
}

# ONNX op_type -> CG op type.
_ONNX_OPS: dict[str, str] = {
    "Conv": "conv", "ConvTranspose": "conv", "Gemm": "linear", "MatMul": "matmul", "Einsum": "matmul",
    "BatchNormalization": "batchnorm", "InstanceNormalization": "batchnorm",
    "LayerNormalization": "layernorm", "GroupNormalization": "layernorm",
    "Relu": "relu", "LeakyRelu": "relu", "PRelu": "relu", "Elu": "relu", "Selu": "relu", "Clip": "relu6",
    "Gelu": "gelu", "Sigmoid": "sigmoid", "HardSigmoid": "sigmoid", "Tanh": "tanh",
    "HardSwish": "hardswish", "Softplus": "silu", "Mish": "silu",
    "Add": "add", "Sub": "add", "Sum": "add", "Mul": "mul", "Div": "mul", "Pow": "mul", "Sqrt": "mul",
    "Exp": "mul", "Neg": "mul", "Reciprocal": "mul", "Erf": "mul",
    "Concat": "concat", "MaxPool": "maxpool", "AveragePool": "avgpool",
    "GlobalAveragePool": "adaptivepool", "GlobalMaxPool": "adaptivepool",
    "ReduceMean": "mean", "ReduceSum": "mean", "ReduceMax": "mean",
    "Reshape": "reshape", "Flatten": "reshape", "Transpose": "reshape", "Squeeze": "reshape",
    "Unsqueeze": "reshape", "Expand": "reshape", "Resize": "reshape", "Pad": "reshape",
    "Identity": "identity", "Softmax": "softmax", "LogSoftmax": "softmax", "Attention": "attention",
    "Slice": "slice", "Split": "slice", "Gather": "slice",
}
_ONNX_PASSTHROUGH = {"Dropout", "Cast", "Identity"}
_ONNX_SKIP = {"Constant", "Shape", "ConstantOfShape", "Range", "Size"}

# op types after which a channels-last 4-D tensor (B, H, W, C) stays channels-last when batch, H and W are kept;
# both front ends record such tensors' shapes in NCHW order (ConvNeXt/Swin blocks: LayerNorm, Linear, GELU over C)
_CL_KEEP = {"linear", "layernorm", "relu", "relu6", "gelu", "silu", "sigmoid", "tanh", "hardswish", "add", "mul",
            "zero", "softmax", "slice", "concat", "identity", "other"}


def _nchw(shape: list[int] | None) -> list[int] | None:
    """A channels-last 4-D shape (B, H, W, C) in NCHW order."""
    return [shape[0], shape[3], shape[1], shape[2]] if shape and len(shape) == 4 else shape


# Node feature layout after the one-hot part (see ComputationGraph.node_features).
NUMERIC_FEATURES: tuple[str, ...] = (
    "in_channels", "out_channels", "in_res_rel", "out_res_rel", "in_res", "out_res", "kernel_h",
    "kernel_w", "stride", "groups", "depthwise", "bias", "weight_size", "flops", "fan_in", "seq",
)
NUM_NODE_FEATURES = len(OP_TYPES) + len(NUMERIC_FEATURES)
GRAPH_FEATURES: tuple[str, ...] = ("log_flops", "log_params", "log_nodes", "depth", "n_conv", "n_skip")


@dataclass
class Node:
    """One atomic operation. Shapes are full tensor shapes including the batch dimension."""

    op: str
    in_shape: list[int] | None = None
    out_shape: list[int] | None = None
    weight_shape: list[int] | None = None
    kernel: list[int] | None = None
    stride: int = 1
    groups: int = 1
    bias: bool = False
    name: str = ""

    def to_dict(self) -> dict:
        # omit fields at their defaults (compact JSON); `is`-free comparison would drop bias=True == 1
        defaults = {"in_shape": None, "out_shape": None, "weight_shape": None, "kernel": None, "stride": 1,
                    "groups": 1, "bias": False, "name": ""}
        return {k: v for k, v in self.__dict__.items()
                if k == "op" or type(v) is not type(defaults[k]) or v != defaults[k]}

    @classmethod
    def from_dict(cls, d: dict) -> Node:
        if not isinstance(d, dict) or "op" not in d:
            raise ValueError(f"malformed CG node entry: {d!r}")
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"CG node has unknown fields {sorted(unknown)}")
        node = cls(**d)
        if node.op not in OP_INDEX:
            warnings.warn(f"unknown op type {node.op!r} in CG file: mapped to 'other'", stacklevel=2)
            node.op = "other"
        return node


def _spatial(shape: Sequence[int] | None) -> tuple[int, int, int]:
    """(channels, height, width) of a tensor shape; sequences (B, L, D) give (D, L, 1)."""
    if not shape:
        return 1, 1, 1
    s = list(shape)
    if len(s) >= 4:
        return s[1], s[-2], s[-1]
    if len(s) == 3:  # (B, L, D) token sequences: channels are the last dim
        return s[2], s[1], 1
    if len(s) == 2:
        return s[1], 1, 1
    return s[0], 1, 1


def _numel(shape: Sequence[int] | None) -> int:
    return int(np.prod(shape)) if shape else 1


# auto mode of ComputationGraph.from_module: skip the NASWOT pass when 64 x the network's FLOPs (as the CG counts
# them) exceed this: 1e12 keeps every benchmark network at CIFAR size (NB-101's largest: 64 x 9e9) and costs at
# most ~30 s on one CPU thread (results/nape_run6/shipped_check.txt: 3.5e12 took 109 s); the CG then has no score
# and predictors use the graph alone
AUTO_PROXY_MAX_FLOPS = 1.0e12
# The synthetic inputs of from_module's NASWOT pass (results/nape_run10: 1/f images rank NB-201 at SRCC 0.853
# against 0.811 for white noise); the score is stored under proxies.naswot_key(noise).
PROXY_NOISE = "pink"
_RECTIFIER_OPS = {"relu", "relu6", "gelu", "silu", "hardswish"}


def _auto_proxy_ok(cg, model, example_input) -> bool:
    """Whether ``from_module(..., proxies=None)`` computes NASWOT: rectifier ops in the CG, real weights, one
    floating non-meta input tensor, and an affordable batch-64 pass."""
    import torch

    if not any(n.op in _RECTIFIER_OPS for n in cg.nodes):
        return False
    x = example_input
    if isinstance(x, (tuple, list)):
        if len(x) != 1:
            return False
        x = x[0]
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.device.type == "meta" or x.dim() < 2:
        return False
    if not isinstance(model, torch.nn.Module):
        return False
    if any(t.device.type == "meta" for t in list(model.parameters()) + list(model.buffers())):
        return False
    return 64.0 * cg.flops() / max(int(x.shape[0]), 1) <= AUTO_PROXY_MAX_FLOPS


def _log2n(x: float, scale: float) -> float:
    return math.log2(1.0 + max(float(x), 0.0)) / scale


@dataclass
class ComputationGraph:
    """A network as a DAG of atomic ops.

    Attributes:
        nodes: the ops, in topological order (node 0 is the ``input``; the last is the ``output``).
        edges: ``(src, dst)`` pairs of node indices, ``src < dst``.
        name: free text (family / architecture code).
        proxies: graph-level zero-cost scores of the traced module at initialisation (``{"naswot": float}``,
            see :mod:`seqlab.nape.proxies`); filled by :meth:`from_module` by default when the module has
            rectifier-like activations (see its ``proxies`` argument). CGs from ONNX files (no module to run)
            or JSON without them have none, and the predictor then uses the graph alone.
    """

    nodes: list[Node] = field(default_factory=list)
    edges: list[tuple[int, int]] = field(default_factory=list)
    name: str = ""
    proxies: dict[str, float] = field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_module(cls, model, example_input, name: str = "", proxies: bool | None = None,
                    proxy_noise: str | None = None) -> ComputationGraph:
        """Trace ``model(example_input)`` into a CG.

        Args:
            model: any ``torch.nn.Module`` (or callable); put it in eval mode first if it matters.
            example_input: a tensor (e.g. float32 ``(1, 3, 32, 32)``), or a tuple of positional inputs.
                ``meta``-device modules and inputs work and cost no arithmetic.
            proxies: whether to compute the data-free NASWOT score of the module
                (:func:`seqlab.nape.proxies.naswot`: 64 seeded synthetic inputs shaped like ``example_input``, one
                forward pass at batch 64 on a deep copy; the module and the global RNG are untouched) and store it
                in ``cg.proxies[naswot_key(proxy_noise)]`` (``"naswot_pink"`` by default), which the shipped
                predictor mixes into its score (results/nape_run5, nape_run6, nape_run10).

                * ``None`` (default, "auto"): computed when the traced graph has a rectifier-like activation
                  (ReLU/ReLU6/GELU/SiLU/hardswish/...), the module has real (not ``meta``) weights, the example
                  input is one floating tensor and the batch-64 pass is not huge (64 x the CG's FLOPs at most
                  :data:`AUTO_PROXY_MAX_FLOPS`); otherwise, or when the module fails on the noise batch, the CG
                  simply has no score (silently) and predictors use the graph alone. The environment variable
                  ``SEQLAB_NAPE_PROXY`` overrides: ``0`` = never, ``1`` = as ``True``.
                * ``True``: always try; a module that cannot be scored warns and gets no score.
                * ``False``: never (tracing stays one batch-1 pass; the family caches use this).
        Returns:
            the CG; ops the tracer does not know are typed ``"other"`` (with a warning).
        Raises:
            TypeError: ``model`` is not callable, or ``proxies`` is not ``None``/``True``/``False``.
            ValueError: ``example_input`` is not a tensor (or tuple of tensors), the module fails on it (the
                message names the input shapes and the module's exception), or its output does not depend on it.
        """
        import os

        from ._trace import trace_module

        if proxies is not None and not isinstance(proxies, (bool, np.bool_)):
            raise TypeError(f"proxies must be None (auto), True or False, got {proxies!r}")
        from .proxies import naswot_key

        noise = PROXY_NOISE if proxy_noise is None else proxy_noise
        key = naswot_key(noise)  # ValueError for an unknown noise

        cg = trace_module(model, example_input, name=name)
        explicit = proxies is not None
        env = os.environ.get("SEQLAB_NAPE_PROXY", "")
        if proxies is None:
            proxies = {"0": False, "1": True}.get(env, None)
            explicit = proxies is not None
        if proxies is None:  # auto
            proxies = _auto_proxy_ok(cg, model, example_input)
        if proxies:
            from .proxies import naswot

            try:
                score = naswot(model, example_input, noise=noise)
            except Exception as exc:  # noqa: BLE001 - any failure of the extra pass must not break tracing
                if explicit:
                    warnings.warn(f"no NASWOT score for {cg.name}: {exc}", stacklevel=2)
            else:
                if math.isfinite(score):
                    cg.proxies[key] = score
        return cg

    @classmethod
    def from_onnx(cls, path: str | Path, name: str = "") -> ComputationGraph:
        """Build a CG from an ONNX model file (shapes from ``onnx.shape_inference``).

        The CG has no NASWOT score (there is no module to run at initialisation), so the shipped predictor
        scores it with the GNN alone, while the same network traced with :meth:`from_module` also gets the
        proxy term: compare networks traced the same way.
        """
        import onnx
        from onnx import numpy_helper, shape_inference

        path = Path(path)
        try:
            model = onnx.load(str(path))
        except Exception as exc:  # onnx raises DecodeError / OSError variants
            raise ValueError(f"cannot read ONNX file {path}: {exc}") from exc
        try:
            # data_prop: shapes computed in the graph (Shape -> Gather -> Concat -> Reshape, as exporters write
            # flatten/view) are propagated too; without it such Reshape outputs have no shape
            model = shape_inference.infer_shapes(model, data_prop=True)
        except Exception as exc:
            warnings.warn(f"ONNX shape inference failed ({exc}); shapes may be missing", stacklevel=2)
        g = model.graph
        inits = {t.name: list(t.dims) for t in g.initializer}
        consts: set[str] = set(inits)
        shapes: dict[str, list[int]] = {}
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            dims = vi.type.tensor_type.shape.dim
            shapes[vi.name] = [d.dim_value if d.dim_value > 0 else 1 for d in dims]
        cg = cls(name=name or path.stem)
        producer: dict[str, int] = {}
        graph_inputs = [i for i in g.input if i.name not in inits]
        if not graph_inputs:
            raise ValueError(f"ONNX file {path} has no graph input")
        cg.nodes.append(Node("input", out_shape=shapes.get(graph_inputs[0].name)))
        for gi in graph_inputs:
            producer[gi.name] = 0
        unknown: set[str] = set()
        mm_linear: set[int] = set()  # nodes typed linear from a MatMul by a constant matrix, bias not yet seen
        cl: set[str] = set()  # values in channels-last order (after Transpose perm (0, 2, 3, 1)), see _CL_KEEP
        uses: dict[str, int] = {}  # how many nodes (or graph outputs) read each value
        for n in g.node:
            for i in n.input:
                uses[i] = uses.get(i, 0) + 1
        for o in g.output:
            uses[o.name] = uses.get(o.name, 0) + 1
        for n in g.node:
            if n.op_type == "Constant":
                for o in n.output:
                    consts.add(o)
                    for a in n.attribute:
                        if a.name == "value":
                            inits[o] = list(numpy_helper.to_array(a.t).shape)
                continue
            data_in = [i for i in n.input if i and i in producer]
            if n.op_type in _ONNX_SKIP or not data_in:
                consts.update(o for o in n.output if o)
                if n.op_type == "Identity" and n.input and n.input[0] in inits:
                    inits[n.output[0]] = inits[n.input[0]]  # exporters alias duplicate initializers this way
                continue
            if n.op_type in _ONNX_PASSTHROUGH:
                for o in n.output:
                    producer[o] = producer[data_in[0]]
                    if data_in[0] in cl:
                        cl.add(o)
                continue
            if n.op_type == "Add" and len(data_in) == 1 and len(n.input) == 2:
                # the bias of a MatMul-typed linear layer (exporters write Linear on >2-D inputs as MatMul + Add)
                src = producer[data_in[0]]
                other = n.input[1] if n.input[0] == data_in[0] else n.input[0]
                prev = cg.nodes[src]
                if (src in mm_linear and uses.get(data_in[0], 0) == 1 and inits.get(other) is not None
                        and [d for d in inits[other] if d != 1] == prev.weight_shape[:1]):
                    prev.bias = True
                    mm_linear.discard(src)
                    producer[n.output[0]] = src
                    if data_in[0] in cl:
                        cl.add(n.output[0])
                    continue
            op = _ONNX_OPS.get(n.op_type)
            if op is None:
                unknown.add(n.op_type)
                op = "other"
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
            node = Node(op, in_shape=shapes.get(data_in[0]), out_shape=shapes.get(n.output[0]),
                        name=n.name or n.op_type)
            weights = [inits[i] for i in n.input[1:] if i in inits]
            if op in ("conv", "linear", "matmul", "batchnorm", "layernorm") and weights:
                node.weight_shape = weights[0]
                node.bias = op in ("conv", "linear") and len(weights) > 1
                if op == "linear" and attrs.get("transB", 0) == 0 and len(node.weight_shape) == 2:
                    node.weight_shape = node.weight_shape[::-1]  # Gemm stores (in, out) unless transB
            if (n.op_type == "MatMul" and len(data_in) == 1 and n.input[0] == data_in[0]
                    and len(inits.get(n.input[1]) or []) == 2):
                # x @ W with a constant (in, out) matrix: a linear layer, as from_module records it (a bias Add
                # right after it is folded in above)
                node.op = "linear"
                node.weight_shape = inits[n.input[1]][::-1]
                mm_linear.add(len(cg.nodes))
            if op == "conv":
                node.kernel = list(attrs.get("kernel_shape", (node.weight_shape or [1, 1, 1, 1])[2:]))
                node.stride = int(max(attrs.get("strides", [1])))
                node.groups = int(attrs.get("group", 1))
            elif op in ("maxpool", "avgpool"):
                node.kernel = list(attrs.get("kernel_shape", [1]))
                node.stride = int(max(attrs.get("strides", [1])))
            cl_in, si, so = data_in[0] in cl, node.in_shape, node.out_shape
            if n.op_type == "Transpose":
                cl_out = not cl_in and list(attrs.get("perm", [])) == [0, 2, 3, 1]
            else:
                cl_out = (cl_in and node.op in _CL_KEEP and si is not None and so is not None and len(so) == 4
                          and list(so[:3]) == list(si[:3]))
            if cl_in:
                node.in_shape = _nchw(si)
            if cl_out:
                node.out_shape = _nchw(so)
                cl.add(n.output[0])
            idx = len(cg.nodes)
            cg.nodes.append(node)
            for src in dict.fromkeys(producer[i] for i in data_in):
                cg.edges.append((src, idx))
            for o in n.output:
                if o:
                    producer[o] = idx
        if unknown:
            warnings.warn(f"ONNX ops not in the CG vocabulary, typed 'other': {sorted(unknown)}", stacklevel=2)
        out = Node("output")
        outs = [producer[o.name] for o in g.output if o.name in producer]
        out.in_shape = cg.nodes[outs[0]].out_shape if outs else None
        out.out_shape = out.in_shape
        cg.nodes.append(out)
        cg.edges.extend((s, len(cg.nodes) - 1) for s in dict.fromkeys(outs))
        return cg.pruned()

    def pruned(self) -> ComputationGraph:
        """Drop nodes that do not lie on an input->output path (dead code, shape bookkeeping)."""
        n = len(self.nodes)
        fwd = [[] for _ in range(n)]
        bwd = [[] for _ in range(n)]
        for s, d in self.edges:
            fwd[s].append(d)
            bwd[d].append(s)

        def reach(start, adj):
            seen = {start}
            stack = [start]
            while stack:
                for v in adj[stack.pop()]:
                    if v not in seen:
                        seen.add(v)
                        stack.append(v)
            return seen

        keep = sorted(reach(0, fwd) & reach(n - 1, bwd)) if n else []
        if len(keep) == n:
            return self
        remap = {old: new for new, old in enumerate(keep)}
        return ComputationGraph(
            nodes=[self.nodes[i] for i in keep],
            edges=[(remap[s], remap[d]) for s, d in self.edges if s in remap and d in remap],
            name=self.name,
            proxies=dict(self.proxies),
        )

    # ------------------------------------------------------------------ features
    def __len__(self) -> int:
        return len(self.nodes)

    def batch(self) -> int:
        """Batch size of the traced input: the first dim of the input node's shape when it has two or more
        dims (``example_input``'s convention, as for the NASWOT pass), else 1."""
        s = self.nodes[0].out_shape if self.nodes else None
        return max(int(s[0]), 1) if s and len(s) >= 2 else 1

    def node_flops(self, per_sample: bool = False) -> np.ndarray:
        """Per-node multiply-accumulate-style cost, float64 ``(N,)`` (2*MACs for conv/linear/matmul), for the
        traced batch, or divided by its size (:meth:`batch`) with ``per_sample``."""
        out = np.zeros(len(self.nodes))
        for i, nd in enumerate(self.nodes):
            o = _numel(nd.out_shape)
            if nd.op == "conv" and nd.weight_shape:
                out[i] = 2.0 * o * _numel(nd.weight_shape[1:])
            elif nd.op == "linear" and nd.weight_shape:
                out[i] = 2.0 * o * nd.weight_shape[-1]
            elif nd.op == "matmul" and nd.in_shape:
                out[i] = 2.0 * o * nd.in_shape[-1]
            elif nd.op == "attention" and nd.in_shape:
                # softmax(q k^T) v with q (..., L, d), out (..., L, d_v): 2 L S (d + d_v) multiply-adds over the
                # batch/heads; the key length S is not recorded, taken = L (self-attention)
                out[i] = 2.0 * nd.in_shape[-2] * (o + _numel(nd.in_shape)) if len(nd.in_shape) >= 2 else float(o)
            elif nd.op in ("input", "output", "reshape", "identity", "slice", "zero"):
                out[i] = 0.0
            else:
                out[i] = float(o)
        return out / self.batch() if per_sample else out

    def flops(self, per_sample: bool = False) -> float:
        """Total FLOPs of one forward pass at the traced input size (batch included; ``per_sample``: divided by
        the batch size, what the node/graph features and the predictor use, so that a network scores the same
        whatever batch it was traced at)."""
        return float(self.node_flops(per_sample).sum())

    def params(self) -> int:
        """Number of weights (conv/linear/norm weights + biases) seen by the tracer."""
        total = 0
        for nd in self.nodes:
            if nd.weight_shape:
                w = _numel(nd.weight_shape)
                if nd.op in ("batchnorm", "layernorm"):
                    w *= 2  # scale and shift
                elif nd.bias:
                    w += nd.weight_shape[0]
                total += w
        return total

    def node_features(self) -> np.ndarray:
        """Node feature matrix, float32 ``(N, NUM_NODE_FEATURES)``.

        Columns: op-type one-hot (``OP_TYPES``) then ``NUMERIC_FEATURES``. Everything is scaled to
        roughly [0, 1] with fixed, family-independent constants (log2 for channels, sizes and costs;
        resolutions also relative to the network input's), so CGs of unseen families land in the
        same ranges as the training families.
        """
        n = len(self.nodes)
        x = np.zeros((n, NUM_NODE_FEATURES), dtype=np.float32)
        _, h0, _ = _spatial(self.nodes[0].out_shape if self.nodes else None)
        h0 = max(h0, 1)
        fl = self.node_flops(per_sample=True)
        off = len(OP_TYPES)
        for i, nd in enumerate(self.nodes):
            x[i, OP_INDEX.get(nd.op, OP_INDEX["other"])] = 1.0
            cin, hin, _ = _spatial(nd.in_shape or nd.out_shape)
            cout, hout, _ = _spatial(nd.out_shape or nd.in_shape)
            k = nd.kernel or []
            w = nd.weight_shape or []
            seq = 1.0 if (nd.out_shape and len(nd.out_shape) == 3) else 0.0
            x[i, off:] = (
                _log2n(cin, 12), _log2n(cout, 12), min(hin / h0, 2.0), min(hout / h0, 2.0),
                _log2n(hin, 10), _log2n(hout, 10),
                (k[0] if k else 0) / 7.0, (k[-1] if k else 0) / 7.0, nd.stride / 2.0,
                _log2n(nd.groups - 1, 10), float(nd.groups > 1 and nd.groups == cin),
                float(nd.bias), _log2n(_numel(w) if w else 0, 24), _log2n(fl[i], 32),
                _log2n(_numel(w[1:]) if len(w) > 1 else 0, 16), seq,
            )
        return x

    def graph_features(self) -> np.ndarray:
        """Graph-level features, float32 ``(len(GRAPH_FEATURES),)``: log FLOPs/params/size, depth, counts."""
        depth = self.depths()
        n_conv = sum(nd.op in ("conv", "linear", "matmul") for nd in self.nodes)
        n_skip = sum(1 for s, d in self.edges if self.nodes[d].op == "add")
        return np.array(
            [
                _log2n(self.flops(per_sample=True), 36), _log2n(self.params(), 28), _log2n(len(self.nodes), 12),
                _log2n(max(depth) if depth else 0, 10), _log2n(n_conv, 10), _log2n(n_skip, 10),
            ],
            dtype=np.float32,
        )

    def depths(self) -> list[int]:
        """Longest-path depth of each node counted in weighted ops (conv/linear/matmul)."""
        d = [0] * len(self.nodes)
        preds = [[] for _ in self.nodes]
        for s, t in self.edges:
            preds[t].append(s)
        for i, nd in enumerate(self.nodes):
            base = max((d[p] for p in preds[i]), default=0)
            d[i] = base + int(nd.op in ("conv", "linear", "matmul"))
        return d

    def edge_index(self) -> np.ndarray:
        """Directed edges as int64 ``(2, E)`` (source row, destination row)."""
        if not self.edges:
            return np.zeros((2, 0), dtype=np.int64)
        return np.asarray(self.edges, dtype=np.int64).T.copy()

    def laplacian_signature(self, bins: int = 16) -> np.ndarray:
        """Histogram of the symmetric normalised Laplacian spectrum, float32 ``(bins,)``.

        Eigenvalues lie in [0, 2]; a density histogram makes graphs of different sizes comparable.
        Used to weight positive pairs in contrastive pretraining.
        """
        n = len(self.nodes)
        a = np.zeros((n, n))
        for s, d in self.edges:
            a[s, d] = a[d, s] = 1.0
        deg = a.sum(1)
        inv = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1e-12)), 0.0)
        lap = np.eye(n) - inv[:, None] * a * inv[None, :]
        ev = np.linalg.eigvalsh(lap)
        hist, _ = np.histogram(np.clip(ev, 0, 2), bins=bins, range=(0.0, 2.0))
        return (hist / max(n, 1)).astype(np.float32)

    def to_pyg(self):
        """``torch_geometric.data.Data`` with ``x`` float32 (N, F), ``edge_index`` int64 (2, E), ``g`` (1, G)."""
        import torch
        from torch_geometric.data import Data

        return Data(
            x=torch.from_numpy(self.node_features()),
            edge_index=torch.from_numpy(self.edge_index()),
            g=torch.from_numpy(self.graph_features())[None],
        )

    # ------------------------------------------------------------------ IO
    def to_dict(self) -> dict:
        d = {"format": "seqlab-cg/1", "name": self.name, "nodes": [n.to_dict() for n in self.nodes],
             "edges": [list(e) for e in self.edges]}
        if self.proxies:
            d["proxies"] = {k: float(v) for k, v in self.proxies.items()}
        return d

    @classmethod
    def from_dict(cls, d: Any) -> ComputationGraph:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` on malformed input."""
        if not isinstance(d, dict) or d.get("format") != "seqlab-cg/1":
            raise ValueError("not a seqlab computation graph (missing format 'seqlab-cg/1')")
        nodes = d.get("nodes")
        edges = d.get("edges")
        if not isinstance(nodes, list) or not isinstance(edges, list) or not nodes:
            raise ValueError("CG needs non-empty 'nodes' and an 'edges' list")
        try:
            nodes = [Node.from_dict(n) for n in nodes]
            edges = [(int(s), int(t)) for s, t in edges]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"malformed CG: {exc}") from exc
        for s, t in edges:
            if not (0 <= s < len(nodes) and 0 <= t < len(nodes)) or s == t:
                raise ValueError(f"CG edge ({s}, {t}) out of range for {len(nodes)} nodes")
        prox = d.get("proxies", {})
        if not isinstance(prox, dict):
            raise ValueError("CG 'proxies' must be a mapping of name -> score")
        try:
            prox = {str(k): float(v) for k, v in prox.items()}
        except (TypeError, ValueError) as exc:
            raise ValueError(f"malformed CG proxies: {exc}") from exc
        return cls(nodes=nodes, edges=edges, name=str(d.get("name", "")), proxies=prox)

    def save(self, path: str | Path) -> None:
        """Write the CG as JSON."""
        Path(path).write_text(json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> ComputationGraph:
        """Read a CG JSON file written by :meth:`save`; ``ValueError`` if it is not one."""
        try:
            d = json.loads(Path(path).read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
        return cls.from_dict(d)

    def draw(self, path: str | Path, max_nodes: int = 400) -> None:
        """Render the CG to a PNG (nodes layered by longest path from the input, coloured by op)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n = min(len(self.nodes), max_nodes)
        level = [0] * len(self.nodes)
        for s, d in sorted(self.edges, key=lambda e: e[1]):
            level[d] = max(level[d], level[s] + 1)
        slots: dict[int, int] = {}
        pos = []
        for i in range(n):
            pos.append((slots.get(level[i], 0), -level[i]))
            slots[level[i]] = slots.get(level[i], 0) + 1
        height = max(4.0, 0.25 * (max(level[:n]) + 1))
        fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * max(slots.values())), height))
        cmap = plt.get_cmap("tab20")
        for s, d in self.edges:
            if s < n and d < n:
                ax.annotate("", xy=pos[d], xytext=pos[s], arrowprops={"arrowstyle": "->", "lw": 0.5})
        for i in range(n):
            op = self.nodes[i].op
            ax.scatter(*pos[i], s=60, color=cmap(OP_INDEX.get(op, 0) % 20), zorder=3)
            ax.text(pos[i][0] + 0.08, pos[i][1], op, fontsize=6, va="center")
        ax.set_axis_off()
        ax.set_title(f"{self.name or 'CG'}: {len(self.nodes)} ops, {len(self.edges)} edges", fontsize=8)
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
