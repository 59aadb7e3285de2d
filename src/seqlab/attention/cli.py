"""``seqlab bench attention``: the FlashAttention speed benchmark with a progress bar and a table."""

from __future__ import annotations


def _bench(args) -> int:
    from .bench import run_from_args

    return run_from_args(args)


def register(sub) -> None:
    from .bench import add_arguments

    bench = sub.add_parser("bench", help="benchmarks (attention)")
    bsub = bench.add_subparsers(dest="bench_command", metavar="BENCH")
    p = bsub.add_parser("attention", help="FlashAttention speed vs SDPA backends and FlexAttention (needs a GPU)")
    add_arguments(p)
    p.set_defaults(func=_bench)
