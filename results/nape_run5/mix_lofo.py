"""Run 5, stage 2: choose the proxy weight w by inner leave-one-family-out, then the outer zero-shot scores.

    SEQLAB_NAPE_DATA=../shared/data/nape PYTHONPATH=src python results/nape_run5/mix_lofo.py FITDIR
        -> results/nape_run5/mix_lofo.json, mix_lofo.md

FITDIR holds fit_<families>.pt from fit_gnns.py. Only the networks with a measured NASWOT score
(<family>_proxies.csv) are scored; NB-101 as a training or inner-validation family means its 190
consistent cells (as in run 4), as the held-out family both all measured cells and the consistent ones.
For held-out H with training families {A, B}: w* = argmax over the grid of the mean SRCC of the inner fits
A -> B and B -> A (proxy constants from the fitted family only); H is never scored for the choice.
Outer: the fit on {A, B}, constants from A and B, w = w*, scored on H. "ship": w maximising the mean SRCC of
the three two-family fits on their third family (three-family inner LOFO of a model trained on all three).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from seqlab.nape import data
from seqlab.nape.cli import read_proxy_scores
from seqlab.nape.metrics import all_metrics, srcc
from seqlab.nape.predictor import GENNAPE

OUT = Path(__file__).resolve().parent
GRID = [round(0.1 * i, 1) for i in range(11)]
FAMS = list(data.FAMILIES)


def main():
    fitdir = Path(sys.argv[1])
    torch.set_num_threads(1)
    sets = {}  # name -> {"all": (gs, acc, proxy), "train": (...)}
    for n in FAMS:
        fam = data.load_family(n)
        gs_all = data.family_graphs(fam, progress=False)
        idx, sc = read_proxy_scores(OUT, n)
        gs = gs_all.select(idx)
        gs.proxy = sc
        entry = {"all": (gs, fam.acc[idx], sc)}
        if n == "nb101":
            keep = data.nb101_consistent(fam, gs_all)[idx]
            k = np.flatnonzero(keep)
            g2 = gs.select(k)
            entry["train"] = (g2, fam.acc[idx][k], sc[k])
        else:
            entry["train"] = entry["all"]
        sets[n] = entry
    models = {p.stem[4:]: GENNAPE.load(p, device="cpu") for p in sorted(fitdir.glob("fit_*.pt"))}
    base = {}

    def curve(train, target, split):
        """SRCC over GRID of the fit on ``train`` scored on ``target`` (proxy constants from ``train``)."""
        m = models["+".join(sorted(train, key=FAMS.index))]
        gs, acc, _ = sets[target][split]
        m.set_proxy({t: sets[t]["train"][2] for t in train}, 0.0)
        key = (id(m), target, split)
        if key not in base:  # the GNN score (w = 0), computed once; the grid only re-mixes it
            base[key] = m.score(gs)
        out = []
        for w in GRID:
            m.cfg.proxy_weight = w
            out.append(srcc(m._mix_proxy(base[key], gs), acc))
        m.cfg.proxy_weight = 0.0
        return out

    res = {"grid": GRID, "n": {n: {k: len(v[0]) for k, v in e.items()} for n, e in sets.items()}, "inner": {},
           "outer": {}, "ship": {}}
    lines = ["| held-out | inner fits (A → B, B → A) SRCC at w = " + ", ".join(map(str, GRID)) + " | w* |",
             "|---|---|---|"]
    for h in FAMS:
        a, b = [f for f in FAMS if f != h]
        c1, c2 = curve([a], b, "train"), curve([b], a, "train")
        mean = np.mean([c1, c2], 0)
        w_star = GRID[int(np.argmax(mean))]
        res["inner"][h] = {f"{a}->{b}": c1, f"{b}->{a}": c2, "mean": mean.tolist(), "w": w_star}
        lines.append(f"| {h} | " + ", ".join(f"{v:.3f}" for v in mean) + f" | {w_star} |")
        # outer
        m = models[f"{a}+{b}"]
        gs, acc, sc = sets[h]["all"]
        outer = {}
        for label, w in (("gnn (w=0)", 0.0), (f"mixed (w*={w_star})", w_star), ("proxy only (w=1)", 1.0)):
            m.set_proxy({t: sets[t]["train"][2] for t in (a, b)}, w)
            outer[label] = {"all": all_metrics(m.predict(gs), acc)}
            if h == "nb101":
                g2, acc2, _ = sets[h]["train"]
                outer[label]["consistent"] = all_metrics(m.predict(g2), acc2)
        outer["curve_all"] = curve([a, b], h, "all")
        res["outer"][h] = outer
    # ship: three-family inner LOFO
    per = {h: res["outer"][h]["curve_all"] if h != "nb101" else curve([f for f in FAMS if f != h], h, "train")
           for h in FAMS}
    mean = np.mean([per[h] for h in FAMS], 0)
    res["ship"] = {"per_family": per, "mean": mean.tolist(), "w": GRID[int(np.argmax(mean))]}
    lines += ["", "| outer held-out | signal | SRCC | τ | NDCG@10 | MAE | n |", "|---|---|---|---|---|---|---|"]
    for h in FAMS:
        for label, v in res["outer"][h].items():
            if label == "curve_all":
                continue
            for split, met in v.items():
                lines.append(f"| {h} ({split}) | {label} | {met['srcc']:.3f} | {met['kendall']:.3f} | "
                             f"{met['ndcg10']:.3f} | {met['mae']:.2f} | {met['n']} |")
    lines += ["", "outer SRCC over the grid (not used for any choice): " + "; ".join(
        f"{h}: " + ", ".join(f"{v:.3f}" for v in res["outer"][h]["curve_all"]) for h in FAMS),
        "", "ship (three-family inner LOFO, NB-101 as target = consistent cells): " + ", ".join(
        f"{v:.3f}" for v in mean) + f" -> w = {res['ship']['w']}"]
    (OUT / "mix_lofo.json").write_text(json.dumps(res, indent=1))
    (OUT / "mix_lofo.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
