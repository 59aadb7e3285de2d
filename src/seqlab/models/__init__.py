"""seqlab.models: model definitions shared by the systems' benchmarks.

* :class:`Transformer` (``seqlab.models.transformer``): pre-norm encoder with ``attn_impl='seqlab'``
  (FlashAttention) or ``'math'``; :func:`transformer_ff_for_params` parameter-matches it.
* :class:`SequenceModel` (re-exported from :mod:`seqlab.ssm`): the stacked S4 model.
"""

from .transformer import MathAttention, Transformer, TransformerBlock, transformer_ff_for_params


def __getattr__(name):
    # lazy so that importing seqlab.models does not pull in the SSM package
    if name == "SequenceModel":
        from seqlab.ssm import SequenceModel

        return SequenceModel
    raise AttributeError(f"module 'seqlab.models' has no attribute {name!r}")


__all__ = ["Transformer", "TransformerBlock", "MathAttention", "transformer_ff_for_params", "SequenceModel"]
