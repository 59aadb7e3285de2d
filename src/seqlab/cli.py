"""Command-line entry point: ``seqlab <command>``.

Each subpackage contributes its commands through a ``register(subparsers)`` function in its own
``cli`` module, so the systems stay independent:

    seqlab demo                    quick check + timing table of every system (CPU or GPU)
    seqlab bench attention         FlashAttention benchmark (see benchmarks/attention.py)
    seqlab s4 ...                  S4 commands (seqlab.ssm.cli)
    seqlab nape ...                GENNAPE commands (seqlab.nape.cli)
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules providing ``register(subparsers)``; missing optional dependencies only hide a command.
_COMMAND_MODULES = ("seqlab.demo", "seqlab.attention.cli", "seqlab.ssm.cli", "seqlab.nape.cli")


def build_parser() -> argparse.ArgumentParser:
    from seqlab import __version__

    parser = argparse.ArgumentParser(prog="seqlab", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"seqlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:  # an optional extra is not installed
            if exc.name and exc.name.startswith("seqlab"):
                continue
            print(f"seqlab: commands of {name} unavailable ({exc})", file=sys.stderr)
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
