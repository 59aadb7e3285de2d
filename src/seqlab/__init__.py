"""seqlab: FlashAttention, S4 state-space layers and GENNAPE in PyTorch + Triton.

Subpackages:
    seqlab.attention  exact tiled attention (Triton kernels, autograd functions, modules)
    seqlab.ssm        S4 / S4D structured state-space layers
    seqlab.nape       GENNAPE neural architecture performance estimation
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
