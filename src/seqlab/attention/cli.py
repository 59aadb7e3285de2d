"""``seqlab bench attention``: the FlashAttention speed benchmark with a progress bar and a table."""

from __future__ import annotations


def _bench(args) -> int:
    from .bench import main

    argv = list(args.rest)
    return main(argv)


def register(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks (attention)")
    bsub = bench.add_subparsers(dest="bench_command", metavar="BENCH")
    p = bsub.add_parser("attention", help="FlashAttention speed vs SDPA backends (needs a GPU)",
                        add_help=False)
    p.add_argument("rest", nargs="...", help="arguments of benchmarks/attention.py (--quick, --out, ...)")
    p.set_defaults(func=_bench)
