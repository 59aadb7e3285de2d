"""GENNAPE: neural architecture performance estimation from computation graphs (Mills et al., AAAI 2023).

Public API: :class:`ComputationGraph` (``from_module`` / ``from_onnx`` / JSON / ``draw``),
:mod:`seqlab.nape.spaces` (NB-201, NB-101, NAS-Bench-Macro builders), :class:`GENNAPE`
(``fit`` / ``predict`` / ``fine_tune`` / ``save`` / ``load``) and :func:`load_pretrained`.
"""

from . import spaces
from .graph import ComputationGraph, Node

__all__ = ["ComputationGraph", "Node", "spaces", "GENNAPE", "load_pretrained"]


def __getattr__(name):
    # The predictor needs torch_geometric; import it lazily so CG tooling works without it.
    if name in ("GENNAPE", "load_pretrained"):
        from . import predictor

        return getattr(predictor, name)
    raise AttributeError(name)
