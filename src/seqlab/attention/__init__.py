"""seqlab.attention: exact FlashAttention in Triton with a flash-attn 2.x compatible API.

    from seqlab.attention import flash_attn_func
    out = flash_attn_func(q, k, v, causal=True)      # q, k, v: (batch, seqlen, nheads, headdim)

CUDA tensors run the Triton kernels; CPU tensors run an exact chunked PyTorch path (or the Triton
kernels through Triton's interpreter when ``TRITON_INTERPRET=1``).
"""

from .interface import (
    flash_attn_func,
    flash_attn_kvpacked_func,
    flash_attn_qkvpacked_func,
    flash_attn_varlen_func,
    flash_attn_varlen_kvpacked_func,
    flash_attn_varlen_qkvpacked_func,
)
from .kvcache import flash_attn_with_kvcache
from .modules import MultiheadAttention
from .ops import use_backend
from .reference import attention_flops, attention_ref

__all__ = [
    "flash_attn_func",
    "flash_attn_qkvpacked_func",
    "flash_attn_kvpacked_func",
    "flash_attn_varlen_func",
    "flash_attn_varlen_qkvpacked_func",
    "flash_attn_varlen_kvpacked_func",
    "flash_attn_with_kvcache",
    "MultiheadAttention",
    "attention_ref",
    "attention_flops",
    "use_backend",
]
