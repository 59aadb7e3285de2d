"""Run 6: 50-shot fine-tuning with the NASWOT term on (strict: nothing chosen with the held-out family's labels
beyond the 50 drawn samples).

    SEQLAB_NAPE_DATA=.nape_data PYTHONPATH=src python results/nape_run6/finetune_proxy.py FITDIR [FAMILY...]
        -> results/nape_run6/finetune_proxy_<family>.json, finetune_proxy.md
    PYTHONPATH=src python results/nape_run6/finetune_proxy.py --report   # the .md from the .json files

For held-out H: the outer zero-shot model (FITDIR/fit_<A>+<B>.pt, run 5's fits), 5 draws of 50 samples
(``default_rng(1000 + d)``, as benchmarks/nape.py), ``fine_tune(..., n=50, seed=d)`` on them, scored on the
remaining networks of H. Whole-family NASWOT scores from results/nape_run6/<family>_proxies.csv.

* ``ft`` : fine-tuned GNN alone (w = 0), the existing protocol.
* ``ft + w0*`` : the zero-shot inner-LOFO weight of H (mix_whole.json, no gate), proxy constants of the training
  families, i.e. what ``fine_tune`` does today with a proxy-on model.
* ``ft + w_cv`` : w chosen on the 50 samples only: 5-fold cross-fitting (fine-tune on 40, predict the other 10;
  out-of-fold predictions of all 50), SRCC of the 50 out-of-fold mixed scores on the grid 0, 0.1, ..., 1 (first
  maximum); the proxy standardised with the 50 samples' own NASWOT mean/std (label-free); then the model
  fine-tuned on all 50 is mixed with that w.
"""

from __future__ import annotations

import copy
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
    targets = sys.argv[2:] or ["nb201"]
    torch.set_num_threads(1)
    wz = json.loads((OUT / "mix_whole.json").read_text())["variants"]["none"]["inner"]
    if sys.argv[1] == "--report":
        return report()
    train_sc = {}
    for n in FAMS:
        fam = data.load_family(n)
        idx, sc = read_proxy_scores(OUT, n)
        if n == "nb101":
            keep = data.nb101_consistent(fam, data.family_graphs(fam, progress=False))[idx]
            sc = sc[keep]
        train_sc[n] = sc
    for h in targets:
        a, b = [f for f in FAMS if f != h]
        base = GENNAPE.load(fitdir / f"fit_{a}+{b}.pt", device="cpu")
        base.set_proxy({a: train_sc[a], b: train_sc[b]}, 0.0)
        fam = data.load_family(h)
        gs = data.family_graphs(fam, progress=False)
        idx, sc = read_proxy_scores(OUT, h)
        order = np.argsort(idx)
        assert np.array_equal(idx[order], np.arange(len(fam)))
        nw = sc[order]
        gs.proxy = nw
        w0 = wz[h]["w"]
        draws = []
        for d in range(5):
            rng = np.random.default_rng(1000 + d)
            pick = rng.choice(len(fam), size=50, replace=False)
            rest = np.setdiff1d(np.arange(len(fam)), pick)
            y = fam.acc[pick]
            # w on the 50 samples only (5-fold cross-fitting)
            oof_s = np.zeros(50)
            folds = np.array_split(np.random.default_rng(d).permutation(50), 5)
            for te in folds:
                tr = np.setdiff1d(np.arange(50), te)
                mk = copy.deepcopy(base).fine_tune(gs.select(pick[tr]), y[tr], n=50, seed=d)
                mk.cfg.proxy_weight = 0.0
                oof_s[te] = mk.score(gs.select(pick[te]))
            z50 = nw[pick]
            ref, scale = float(z50.mean()), float(max(z50.std(), 1e-6))
            zp = (z50 - ref) / scale
            # out-of-fold GNN scores come from 5 different models: standardise them per fold before mixing
            oof = oof_s.copy()
            for te in folds:
                oof[te] = (oof_s[te] - oof_s[te].mean()) / (oof_s[te].std() + 1e-6)
            cv = [srcc((1 - w) * oof + w * zp, y) for w in GRID]
            w_cv = GRID[int(np.argmax(cv))]
            m = copy.deepcopy(base).fine_tune(gs.select(pick), y, n=50, seed=d)
            m.cfg.proxy_weight = 0.0
            s = m.score(gs.select(rest))
            z_tr = (nw[rest] - base.proxy_ref) / base.proxy_scale
            z_own = (nw[rest] - ref) / scale
            acc = fam.acc[rest]
            r = {"w0*": w0, "w_cv": w_cv, "cv_curve": cv,
                 "ft": all_metrics(m._to_percent(s), acc),
                 "ft + w0*": all_metrics(m._to_percent((1 - w0) * s + w0 * z_tr), acc),
                 "ft + w_cv": all_metrics(m._to_percent((1 - w_cv) * s + w_cv * z_own), acc),
                 "curve_own_constants": [srcc((1 - w) * s + w * z_own, acc) for w in GRID]}
            draws.append(r)
            print(f"{h} draw {d}: ft {r['ft']['srcc']:.3f}  +w0*={w0} {r['ft + w0*']['srcc']:.3f}  "
                  f"+w_cv={w_cv} {r['ft + w_cv']['srcc']:.3f}", flush=True)
        summ = {k: {m_: {"mean": float(np.mean([r[k][m_] for r in draws])),
                         "std": float(np.std([r[k][m_] for r in draws]))}
                    for m_ in ("srcc", "kendall", "ndcg10", "mae")} for k in ("ft", "ft + w0*", "ft + w_cv")}
        (OUT / f"finetune_proxy_{h}.json").write_text(
            json.dumps({"draws": draws, "summary": summ, "n_rest": int(len(fam) - 50)}, indent=1))
    report()


def report():
    """finetune_proxy.md from every finetune_proxy_<family>.json present."""
    res = {h: json.loads((OUT / f"finetune_proxy_{h}.json").read_text()) for h in FAMS
           if (OUT / f"finetune_proxy_{h}.json").exists()}
    lines = ["| held-out | variant | SRCC | τ | NDCG@10 | MAE | w per draw |", "|---|---|---|---|---|---|---|"]
    for h, r in res.items():
        for k, v in r["summary"].items():
            ws = {"ft": "0", "ft + w0*": str(r["draws"][0]["w0*"]),
                  "ft + w_cv": ", ".join(str(x["w_cv"]) for x in r["draws"])}[k]
            lines.append(f"| {h} | {k} | {v['srcc']['mean']:.3f} ± {v['srcc']['std']:.3f} | "
                         f"{v['kendall']['mean']:.3f} ± {v['kendall']['std']:.3f} | {v['ndcg10']['mean']:.3f} | "
                         f"{v['mae']['mean']:.2f} ± {v['mae']['std']:.2f} | {ws} |")
        lines.append(f"| {h} | (reported only) SRCC over w with the samples' constants, mean of draws | "
                     + ", ".join(f"{x:.3f}" for x in np.mean([d['curve_own_constants'] for d in r['draws']], 0))
                     + " | | | | |")
    (OUT / "finetune_proxy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
