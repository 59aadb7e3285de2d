"""Run 6: merge the whole-family proxy scores and check them against run 5's CPU scores.

    SEQLAB_NAPE_DATA=.nape_data PYTHONPATH=src python results/nape_run6/merge.py CPU_DIR...
        -> results/nape_run6/{nb201,macro,nb101}_proxies.csv, agreement.md

Sources, in order of precedence: gpu_call1/ (device call 1: naswot + synflow), gpu_call2/ (device call 2:
naswot only), then the CPU folders given (measure_gpu.py --device cpu, naswot only: the networks the GPU calls
did not reach). Output columns: id, order, naswot, synflow (empty where not measured), source. Agreement: on the
networks that run 5 scored on the CPU (results/nape_run5), SRCC and max |diff| of the GPU scores vs run 5's.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from seqlab.nape import data

HERE = Path(__file__).resolve().parent
FAMS = ("nb201", "macro", "nb101")


def read(path):
    if not path.exists():
        return {}
    with open(path) as f:
        return {r["id"]: r for r in csv.DictReader(f)}


def main():
    sources = [("gpu_call1", HERE / "gpu_call1"), ("gpu_call2", HERE / "gpu_call2")]
    sources += [(f"cpu{i + 1}", Path(p)) for i, p in enumerate(sys.argv[1:])]
    lines = ["| family | proxy | n overlap with run 5 (CPU) | SRCC(GPU, CPU) | max abs diff | median abs diff |",
             "|---|---|---|---|---|---|"]
    for n in FAMS:
        ids = data.load_family(n).ids
        merged = {}
        for tag, d in sources:
            for k, r in read(d / f"{n}_proxies.csv").items():
                if k not in merged:
                    merged[k] = dict(r, source=tag)
        missing = [k for k in ids if k not in merged]
        print(f"{n}: {len(merged)} of {len(ids)} scored; missing {len(missing)}; by source "
              + str({t: sum(r['source'] == t for r in merged.values()) for t, _ in sources}))
        with open(HERE / f"{n}_proxies.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "order", "naswot", "synflow", "source"])
            for r in sorted(merged.values(), key=lambda r: int(r["order"])):
                sf = r["synflow"] if r["synflow"] not in ("nan", "") else ""
                w.writerow([r["id"], r["order"], r["naswot"], sf, r["source"]])
        run5 = read(HERE.parent / "nape_run5" / f"{n}_proxies.csv")
        for col in ("naswot", "synflow"):
            ov = [k for k in run5 if k in merged and merged[k]["source"].startswith("gpu")
                  and merged[k][col] not in ("nan", "")]
            a = np.array([float(merged[k][col]) for k in ov])
            b = np.array([float(run5[k][col]) for k in ov])
            d = np.abs(a - b)
            lines.append(f"| {n} | {col} | {len(ov)} | {spearmanr(a, b)[0]:.6f} | {d.max():.2g} | {np.median(d):.2g} |")
    (HERE / "agreement.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
