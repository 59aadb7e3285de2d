"""FlashAttention speed benchmark: seqlab against PyTorch SDPA backends and FlexAttention.

    PYTHONPATH=src python benchmarks/attention.py [--quick] --out results/attention_bench.json

Same as ``seqlab bench attention``; see ``seqlab.attention.bench`` for the protocol.
"""

from seqlab.attention.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
