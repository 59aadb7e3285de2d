"""``seqlab demo``: check each system against its reference and time it, on whatever device is present.

Every subpackage may provide ``seqlab.<pkg>.demo.run(device, quick) -> list[dict]``; each dict is
one table row with the keys ``system``, ``case``, ``check`` (e.g. a relative error and pass/fail),
``seqlab_ms``, ``reference_ms`` and ``speedup``. Sections whose optional dependencies are missing are
skipped with a note.
"""

from __future__ import annotations

import argparse
import importlib
import time

_SECTIONS = ("seqlab.attention.demo", "seqlab.ssm.demo", "seqlab.nape.demo")
_COLUMNS = ("system", "case", "check", "seqlab_ms", "reference_ms", "speedup")


def _format_table(rows: list[dict]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)

    cells = [[cell(r.get(c, "")) for c in _COLUMNS] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(_COLUMNS)]
    line = "  ".join(c.ljust(w) for c, w in zip(_COLUMNS, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(out)


def run_demo(device: str | None = None, quick: bool = False) -> list[dict]:
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"seqlab demo on {device}" + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else ""))
    rows: list[dict] = []
    for name in _SECTIONS:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            print(f"  [skip] {name}: {exc}")
            continue
        t0 = time.perf_counter()
        section = module.run(device=device, quick=quick)
        print(f"  {name.split('.')[1]:<10s} done in {time.perf_counter() - t0:.1f}s")
        rows.extend(section)
    print()
    print(_format_table(rows))
    failed = [r for r in rows if str(r.get("check", "")).endswith("FAIL")]
    if failed:
        print(f"\n{len(failed)} check(s) FAILED")
    else:
        print("\nall checks passed")
    return rows


def _cmd(args: argparse.Namespace) -> int:
    rows = run_demo(device=args.device, quick=args.quick)
    return 1 if any(str(r.get("check", "")).endswith("FAIL") for r in rows) else 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="check every system against its reference and time it")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--quick", action="store_true", help="smallest sizes only")
    p.set_defaults(func=_cmd)
