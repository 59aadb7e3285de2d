"""seqlab.ssm: S4 / S4D structured state-space layers (Gu, Goel, Re, ICLR 2022).

Public API: :class:`S4` (layer), :class:`S4Block`, :class:`SequenceModel`, :func:`ssm_param_groups`,
the :mod:`seqlab.ssm.hippo` initialisations and the :mod:`seqlab.ssm.kernels` (Cauchy / Vandermonde,
naive and Triton, FFT convolution).
"""

from . import hippo, kernels
from .blocks import S4Block, SequenceModel
from .s4 import S4, SSMMatrices, ssm_param_groups

__all__ = ["S4", "S4Block", "SequenceModel", "SSMMatrices", "ssm_param_groups", "hippo", "kernels"]
