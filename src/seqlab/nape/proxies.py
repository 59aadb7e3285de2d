"""Data-free zero-cost proxies computed from an ``nn.Module`` at initialisation.

No dataset is needed: inputs are synthetic (seeded Gaussian noise, or ones), shaped like the example
input that is used for tracing the network's computation graph (``(1, 3, 32, 32)`` for the benchmark
families). The module is never modified: the proxies run on a deep copy.

* :func:`naswot` -- NASWOT (Mellor et al., ICML 2021, "Neural Architecture Search without Training"):
  for a mini-batch of ``B`` inputs, every rectifier-like activation unit gives a binary code
  ``c_i = 1[pre-activation > 0]`` per input; ``K[i, j] = N_A - Hamming(c_i, c_j)`` (``N_A`` = number
  of units) and the score is ``log|det K|``. High when the network separates the inputs into many
  distinct linear regions at initialisation. Mellor et al. (and the shared CSV's ``nwot``) use real
  CIFAR images; here the batch is standard Gaussian noise, so the score only depends on the module.
* :func:`synflow` -- SynFlow (Tanaka et al., NeurIPS 2020; as a NAS proxy, Abdelfattah et al., ICLR
  2021): with every parameter replaced by its absolute value and an all-ones input, in float64,
  ``R = sum(f(1))`` and the score is ``sum |theta * dR/dtheta|`` over the parameters; returned as its
  natural log (the raw value overflows for deep networks). Data-free by construction; batch norm runs
  in eval mode (at initialisation it is the identity up to ``eps``, i.e. "BN disabled" as in the paper).

Cost (CPU, one thread): :func:`naswot` is one forward pass of ``B`` inputs plus a ``(B, B)`` Gram matrix
per activation (about 0.1-0.5 s for NB-201 / NAS-Bench-Macro networks at ``B = 64``, a few seconds
for NB-101's 128-channel networks); :func:`synflow` is one forward + backward at batch 1 in float64.
"""

from __future__ import annotations

import contextlib
import copy
import math

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

# activation functions whose sign pattern defines the "linear region" code (their input > 0)
_RECTIFIERS = {"relu", "relu6", "hardtanh", "leaky_relu", "prelu", "elu", "selu", "celu", "gelu", "silu",
               "hardswish", "mish", "threshold"}

PROXIES = ("naswot", "synflow")


def _canon(func) -> str:
    return getattr(func, "__name__", str(func)).strip("_")


class _CodeKernel(TorchFunctionMode):
    """Accumulates ``K = sum_layers c c^T + (1 - c)(1 - c)^T`` over rectifier calls, float64 ``(B, B)``."""

    def __init__(self, batch: int):
        super().__init__()
        self.batch = batch
        self.k = None  # float64 (B, B), on the activations' device (one transfer at the end, not per layer)
        self.units = 0
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _canon(func)
        if name in _RECTIFIERS and args and isinstance(args[0], torch.Tensor):
            x = args[0]
            if x.dim() >= 1 and x.shape[0] == self.batch and x.is_floating_point():
                c = (x.detach().reshape(self.batch, -1) > 0).to(torch.float32)
                # c c^T + (1 - c)(1 - c)^T = 2 c c^T - r 1^T - 1 r^T + n  (r: row sums, n: units), one Gram
                # matrix instead of two; c c^T counts stay below float32's exact-integer limit (2^24) for
                # layers of up to 16.7 M units, the rest is float64
                n = c.shape[1]
                r = c.sum(1, dtype=torch.float64)
                kk = 2.0 * (c @ c.T).to(torch.float64) - r[:, None] - r[None, :] + float(n)
                self.k = kk if self.k is None else self.k + kk
                self.units += c.shape[1]
                self.calls += 1
        return func(*args, **kwargs)


def _check_input(example_input) -> torch.Tensor:
    if isinstance(example_input, (tuple, list)):
        if len(example_input) != 1:
            raise ValueError("data-free proxies take one example input tensor, got a tuple of "
                             f"{len(example_input)}")
        example_input = example_input[0]
    if not isinstance(example_input, torch.Tensor):
        raise ValueError(f"example_input must be a tensor, got {type(example_input).__name__}")
    if example_input.dim() < 2:
        raise ValueError(f"example_input needs a batch dimension and at least one more: shape "
                         f"{tuple(example_input.shape)}")
    if not example_input.is_floating_point():
        raise ValueError(f"example_input must be floating point (synthetic Gaussian inputs), got {example_input.dtype}")
    if example_input.device.type == "meta":
        raise ValueError("data-free proxies need real tensors: the example input is on the meta device")
    return example_input


def _copy(model: nn.Module) -> nn.Module:
    if any(p.device.type == "meta" for p in model.parameters()):
        raise ValueError("data-free proxies need real weights: the module is on the meta device")
    return copy.deepcopy(model)


def _run(model: nn.Module, x: torch.Tensor):
    try:
        return model(x)
    except (RuntimeError, TypeError, IndexError) as exc:
        raise ValueError(f"module failed on a synthetic input of shape {tuple(x.shape)} "
                         f"(shaped like the example input): {exc}") from exc


@contextlib.contextmanager
def _full_precision():
    """Turn TF32 off for the duration (CUDA convs use it by default): the codes are signs of
    pre-activations, and TF32 rounding flips the ones near zero, so GPU scores would drift from CPU ones."""
    flags = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


NOISES = ("gaussian", "pink")


def naswot_key(noise: str) -> str:
    """The ``ComputationGraph.proxies`` key of a NASWOT score computed with ``noise`` inputs: ``"naswot"`` for
    Gaussian noise (runs 5-9), ``"naswot_pink"`` for 1/f images (run 10, the default of ``from_module``)."""
    if noise not in NOISES:
        raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")
    return "naswot" if noise == "gaussian" else f"naswot_{noise}"


def synthetic_batch(example_input: torch.Tensor, batch: int, seed: int, noise: str = "gaussian") -> torch.Tensor:
    """``(batch, ...)`` synthetic inputs shaped like ``example_input[0]``, float32 (or its dtype), on its device.

    ``"gaussian"``: i.i.d. standard normal values. ``"pink"``: for image-shaped inputs ``(N, C, H, W)``, each
    channel of each image has a 1/f amplitude spectrum over spatial frequency f (random phases, no DC term),
    the second-order statistics of natural images, scaled to zero mean and unit variance per channel, i.e. like
    normalised photographs rather than white noise (results/nape_run10: NASWOT's SRCC on NB-201 0.811 -> 0.853);
    inputs of any other shape have no spatial spectrum to shape and get the Gaussian batch. Both come from
    ``torch.Generator().manual_seed(seed)`` (same seed, same batch)."""
    if noise not in NOISES:
        raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")
    gen = torch.Generator().manual_seed(int(seed))
    shape = (batch, *example_input.shape[1:])
    if noise == "gaussian" or example_input.dim() != 4:
        return torch.randn(shape, generator=gen, dtype=example_input.dtype).to(example_input.device)
    h, w = shape[2], shape[3]
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
    f = torch.sqrt(fy ** 2 + fx ** 2)
    amp = torch.where(f > 0, 1.0 / f.clamp_min(1e-12), torch.zeros_like(f))
    spec = torch.complex(torch.randn((*shape[:2], h, w // 2 + 1), generator=gen, dtype=torch.float64),
                         torch.randn((*shape[:2], h, w // 2 + 1), generator=gen, dtype=torch.float64)) * amp
    x = torch.fft.irfft2(spec, s=(h, w))
    x = (x - x.mean(dim=(2, 3), keepdim=True)) / x.std(dim=(2, 3), keepdim=True).clamp_min(1e-12)
    return x.to(example_input.dtype).to(example_input.device)


def naswot(model: nn.Module, example_input: torch.Tensor, batch: int = 64, seed: int = 0,
           noise: str = "gaussian") -> float:
    """NASWOT score ``log|det K|`` on a seeded synthetic batch (see module docstring).

    Args:
        model: any ``nn.Module`` with rectifier-like activations (ReLU/ReLU6/LeakyReLU/GELU/SiLU/...,
            as modules or functions); not modified (a deep copy runs, with batch norm using batch
            statistics and dropout off).
        example_input: float tensor ``(N, ...)``; the batch is ``synthetic_batch(example_input, batch, seed,
            noise)``: standard normal noise by default.
        batch: mini-batch size ``B`` (>= 2); the kernel is ``(B, B)``.
        seed: the noise seed (same seed -> same score).
        noise: ``"gaussian"`` (default here, runs 5-9) or ``"pink"`` (1/f images, see ``synthetic_batch``; what
            ``ComputationGraph.from_module`` and the shipped predictor use since run 10).
    Returns:
        float: ``log det K`` (K is positive semi-definite); ``-inf`` if two inputs share their code.
    Raises:
        ValueError: bad input shape/dtype, a module that fails on the input, or no rectifier activation.
    """
    x0 = _check_input(example_input)
    if batch < 2:
        raise ValueError(f"naswot needs a batch of at least 2 inputs, got {batch}")
    x = synthetic_batch(x0, batch, seed, noise)
    net = _copy(model)
    net.eval()
    for m in net.modules():  # batch statistics, as at training time (running stats are still zero/one)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()
    mode = _CodeKernel(batch)
    with torch.no_grad(), _full_precision(), mode:
        _run(net, x)
    if mode.calls == 0:
        raise ValueError("naswot: the module has no rectifier-like activation (ReLU, GELU, SiLU, ...)")
    sign, logdet = torch.linalg.slogdet(mode.k.cpu())
    return float(logdet) if float(sign) > 0 else float("-inf")


def synflow(model: nn.Module, example_input: torch.Tensor) -> float:
    """Log SynFlow score: ``ln sum |theta * dR/dtheta|``, ``R = sum(f_|theta|(ones))`` in float64.

    Args:
        model: any ``nn.Module`` (not modified: a float64 deep copy in eval mode runs).
        example_input: float tensor ``(N, ...)``; one all-ones input ``(1, ...)`` is used.
    Returns:
        float: the log score (``-inf`` if every gradient is zero).
    Raises:
        ValueError: bad input shape/dtype or a module that fails on the input.
    """
    x0 = _check_input(example_input)
    net = _copy(model).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    x = torch.ones((1, *x0.shape[1:]), dtype=torch.float64, device=x0.device)
    out = _run(net, x)
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"synflow needs a tensor output, got {type(out).__name__}")
    out.sum().backward()
    terms = [(p.detach() * p.grad).abs().sum() for p in net.parameters() if p.grad is not None]
    total = float(torch.stack(terms).sum()) if terms else 0.0  # one device sync, not one per parameter
    return math.log(total) if total > 0 and math.isfinite(total) else (float("inf") if total > 0 else float("-inf"))


def compute(model: nn.Module, example_input: torch.Tensor, names=PROXIES, batch: int = 64,
            seed: int = 0) -> dict[str, float]:
    """``{name: score}`` for the proxies ``names`` (any of :data:`PROXIES`)."""
    out = {}
    for n in names:
        if n == "naswot":
            out[n] = naswot(model, example_input, batch=batch, seed=seed)
        elif n == "synflow":
            out[n] = synflow(model, example_input)
        else:
            raise ValueError(f"unknown proxy {n!r}; choose from {PROXIES}")
    return out
