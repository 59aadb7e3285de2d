"""Run 11: fine-tuning schedule sweep for the 50-shot protocol (epochs x learning rate of GENNAPE.fine_tune).

Rule, fixed before any number of this sweep was seen: the candidates are (epochs, lr) in
{(60, 1e-3) = the current default, (150, 1e-3), (60, 3e-3), (150, 3e-3), (300, 1e-3)}. The winner is the
candidate with the best mean SRCC of the fine-tuned GNN alone on the remaining networks over the two *development*
families, NAS-Bench-Macro and NB-101 (10 draws of 50 each, seeds 1000+d as benchmarks/nape.py), each family's
zero-shot model trained on the other two families. A candidate replaces the default only if it beats it by more
than 0.005 there. NB-201 (the family with the 0.91 target) chooses nothing: for it every candidate is scored with
the full protocol (w by 5-fold CV on the samples, as GENNAPE.fine_tune(proxy="cv")), 5 draws, reported.

    PYTHONPATH=src python results/nape_run11/ft_sweep.py FAMILY MODEL.pt OUT.json EPOCHS LR DRAWS [--cv]

The confirmation step (after the sweep chose 150 epochs, lr 3e-3) runs the same script with --cv on all three
families, one process per draw (DRAWS = d:d+1).
"""
import copy
import json
import sys
import time

import numpy as np
import torch

from seqlab.nape import data
from seqlab.nape.data import read_proxy_scores
from seqlab.nape.metrics import srcc
from seqlab.nape.predictor import GENNAPE

held, mpath, out = sys.argv[1:4]
# DRAWS: a count (draws 0..DRAWS-1) or a range A:B (draws A..B-1, to spread the draws over processes)
epochs, lr = int(sys.argv[4]), float(sys.argv[5])
a, _, b = sys.argv[6].rpartition(":")
draws = range(int(a or 0), int(b))
cv = "--cv" in sys.argv
f = data.load_family(held, ".nape_data")
gs = data.family_graphs(f, progress=False)
idx, sc = read_proxy_scores("results/nape_run10", held, ".nape_data")
gs.proxy = np.full(len(gs), np.nan)
gs.proxy[idx] = sc
base = GENNAPE.load(mpath, device="cuda" if torch.cuda.is_available() else "cpu")
rows = []
for d in draws:
    t = time.time()
    pick = np.random.default_rng(1000 + d).choice(len(f), size=50, replace=False)
    rest = np.setdiff1d(np.arange(len(f)), pick)
    if cv:  # the library's own CV path with this schedule; its final fine-tune is the plain one
        m = copy.deepcopy(base).fine_tune(gs.select(pick), f.acc[pick], n=50, epochs=epochs, lr=lr, seed=d, proxy="cv")
        row = {"draw": d, "cv_mix": srcc(m.score(gs.select(rest)), f.acc[rest]), "w": m.cfg.proxy_weight}
    else:
        m, row = copy.deepcopy(base)._fine_tune(gs.select(pick), f.acc[pick], epochs, lr, d), {"draw": d}
    m.cfg.proxy_weight = 0.0
    row["gnn"] = srcc(m.score(gs.select(rest)), f.acc[rest])
    row["s"] = round(time.time() - t, 1)
    rows.append(row)
    print(held, epochs, lr, row, flush=True)
json.dump({"family": held, "epochs": epochs, "lr": lr, "rows": rows,
           "gnn_mean": float(np.mean([r["gnn"] for r in rows])),
           "cv_mix_mean": float(np.mean([r["cv_mix"] for r in rows])) if cv else None}, open(out, "w"), indent=1)
