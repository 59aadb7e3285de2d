"""Run 5, stage 1: the GNN fits for choosing and testing the proxy weight (no proxy needed to train).

    SEQLAB_NAPE_DATA=../shared/data/nape PYTHONPATH=src python results/nape_run5/fit_gnns.py OUTDIR

Run 3's CPU settings (2 seeds, 2 + 6 epochs, 1,024 graphs/family, batch 128, rank targets), beta 0.5
(the CLI default), seed 0; NB-101 trains on its 190 consistent cells. Fits: each single family (for the
inner leave-one-family-out choice of w) and each pair of families (the outer zero-shot protocol).
Writes OUTDIR/fit_<families>.pt.
"""

from __future__ import annotations

import sys
import time
from itertools import combinations
from pathlib import Path

import torch

from seqlab.nape import data
from seqlab.nape.predictor import GENNAPE

CFG = dict(ensemble=2, epochs=6, pretrain_epochs=2, max_graphs_per_family=1024, batch_size=128, rank_targets=True,
           beta=0.5)


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    fams = data.training_families(progress=False)
    names = list(data.FAMILIES)
    for k in (1, 2):
        for combo in combinations(names, k):
            path = out / f"fit_{'+'.join(combo)}.pt"
            if path.exists():
                continue
            t0 = time.time()
            m = GENNAPE(device="cpu", **CFG).fit({n: fams[n] for n in combo}, seed=0, progress=False)
            m.save(path)
            print(f"{path.name}: {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
