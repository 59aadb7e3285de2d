"""S4 benchmarks: kernel generation (naive vs Triton), layer fwd+bwd, Table 3, generation.

    PYTHONPATH=src python benchmarks/s4.py --out results/s4_bench.json --png results/s4_bench.png
    PYTHONPATH=src python benchmarks/s4.py --device cpu --quick          # CPU smoke test

Same as ``seqlab s4 bench``; see ``seqlab.ssm.bench`` for the protocol and ``benchmarks/NOTES_s4.md``.
"""

import sys

from seqlab.ssm.cli import _bench, register

if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="benchmarks/s4.py")
    register(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["s4", "bench", *sys.argv[1:]])
    raise SystemExit(_bench(args))
