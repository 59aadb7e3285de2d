"""Run 5: data-free proxies (seqlab.nape.proxies) on benchmark networks built by seqlab.nape.spaces.

    SEQLAB_NAPE_DATA=../shared/data/nape PYTHONPATH=src python results/nape_run5/measure.py FAMILY N [--start K]

Takes a fixed random order of the family's ids (numpy default_rng(0).permutation), scores ids
[start, start + N) of it and appends one CSV row per network to results/nape_run5/<family>_proxies.csv
(id, naswot, synflow, seconds per proxy); ids already in the CSV are skipped. Each network is built
after torch.manual_seed(0) (deterministic init); one CPU thread.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch

from seqlab.nape import data, proxies, spaces

OUT = Path(__file__).resolve().parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("family", choices=data.FAMILIES)
    ap.add_argument("n", type=int)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(1)
    fam = data.load_family(a.family)
    order = np.random.default_rng(0).permutation(len(fam.ids))
    path = OUT / f"{a.family}_proxies.csv"
    done = set()
    if path.exists():
        with open(path) as f:
            done = {r["id"] for r in csv.DictReader(f)}
    new = not path.exists()
    x = spaces.example_input()
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["id", "order", "naswot", "synflow", "t_naswot_s", "t_synflow_s"])
        for k in range(a.start, min(a.start + a.n, len(order))):
            arch = fam.ids[order[k]]
            if arch in done:
                continue
            torch.manual_seed(0)
            m = fam.build(arch)
            t0 = time.perf_counter()
            nw = proxies.naswot(m, x, batch=a.batch, seed=0)
            t1 = time.perf_counter()
            sf = proxies.synflow(m, x)
            t2 = time.perf_counter()
            w.writerow([arch, k, f"{nw:.6f}", f"{sf:.6f}", f"{t1 - t0:.3f}", f"{t2 - t1:.3f}"])
            f.flush()


if __name__ == "__main__":
    main()
