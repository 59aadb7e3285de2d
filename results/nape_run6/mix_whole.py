"""Run 6: strict inner-LOFO choice of the proxy weight w and the outer zero-shot scores on WHOLE families,
without and with the label-free family gate pre-registered in results/nape_summary.md (run 6).

    SEQLAB_NAPE_DATA=.nape_data PYTHONPATH=src python results/nape_run6/mix_whole.py FITDIR
        -> results/nape_run6/mix_whole.json, mix_whole.md

FITDIR holds run 5's GNN fits (results/nape_run5/fit_gnns.py: run 3's CPU settings, 2 seeds, seed 0; every
single family and every pair). Scores: results/nape_run6/<family>_proxies.csv (all 4,096 / 6,561 / 500 networks).
NB-101 as a training or inner-validation family = its 190 consistent cells; as the held-out family, all 500
(and the 190 reported). Protocol exactly as run 5's mix_lofo.py, per gate variant:

* w* for held-out H (training families {A, B}) = argmax over the grid 0, 0.1, ..., 1 (first maximum) of the mean
  SRCC of the single-family fits A -> B and B -> A (proxy constants from the fitted family; the gate computed on
  the validation family's networks from the fitted model's GNN score). H is never scored for the choice.
* outer: the fit on {A, B} (constants from A and B), the gate computed on all of H's networks, w = w*.
* ship: the three two-family fits each scored on the third (NB-101: 190 cells), mean SRCC over the grid.

Gate variants (g multiplies w for every network of the family; rho = SRCC over the family's networks):
  none        g = 1                                   (run 5's rule)
  gate-gnn    g = 1 if SRCC(naswot, s_gnn) >= 0.5     (the pre-registered primary rule)
  gate-flops  g = 1 if SRCC(naswot, ln FLOPs) >= 0.5  (secondary, reported only)
  soft-gnn    g = max(0, SRCC(naswot, s_gnn))         (secondary, reported only)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from seqlab.nape import data
from seqlab.nape.cli import read_proxy_scores
from seqlab.nape.metrics import all_metrics, srcc
from seqlab.nape.predictor import GENNAPE

OUT = Path(__file__).resolve().parent
GRID = [round(0.1 * i, 1) for i in range(11)]
FAMS = list(data.FAMILIES)
VARIANTS = ("none", "gate-gnn", "gate-flops", "soft-gnn")
TAU = 0.5


def gate(variant: str, s_gnn: np.ndarray, naswot: np.ndarray, flops: np.ndarray) -> tuple[float, dict]:
    ok = np.isfinite(naswot)
    r_gnn = float(spearmanr(naswot[ok], s_gnn[ok])[0])
    r_flops = float(spearmanr(naswot[ok], np.log(flops[ok]))[0])
    g = {"none": 1.0, "gate-gnn": float(r_gnn >= TAU), "gate-flops": float(r_flops >= TAU),
         "soft-gnn": max(0.0, r_gnn)}[variant]
    return g, {"rho_gnn": r_gnn, "rho_flops": r_flops}


def main():
    fitdir = Path(sys.argv[1])
    torch.set_num_threads(1)
    sets = {}
    for n in FAMS:
        fam = data.load_family(n)
        gs_all = data.family_graphs(fam, progress=False)
        idx, sc = read_proxy_scores(OUT, n)
        if len(idx) != len(fam.ids):
            raise SystemExit(f"{n}: {len(idx)} of {len(fam.ids)} networks scored")
        gs = gs_all.select(idx)
        gs.proxy = sc
        entry = {"all": (gs, fam.acc[idx], sc)}
        if n == "nb101":
            k = np.flatnonzero(data.nb101_consistent(fam, gs_all)[idx])
            g2 = gs.select(k)
            entry["train"] = (g2, fam.acc[idx][k], sc[k])
        else:
            entry["train"] = entry["all"]
        sets[n] = entry
    models = {p.stem[4:]: GENNAPE.load(p, device="cpu") for p in sorted(fitdir.glob("fit_*.pt"))}
    base, agree = {}, {}

    def scores(train, target, split):
        """(GNN score w = 0, proxy z-score) of the fit on ``train`` for ``target``'s networks."""
        key = ("+".join(train), target, split)
        m = models["+".join(sorted(train, key=FAMS.index))]
        m.set_proxy({t: sets[t]["train"][2] for t in train}, 0.0)
        gs, _, sc = sets[target][split]
        if key not in base:
            base[key] = m.score(gs)
            agree[key] = gate("none", base[key], sc, gs.flops)[1]
        z = (sc - m.proxy_ref) / m.proxy_scale
        return m, base[key], z

    def curve(train, target, split, variant, gate_split=None):
        """SRCC over GRID; the gate from ``gate_split``'s networks of ``target`` (default: the scored ones)."""
        m, s, z = scores(train, target, split)
        _, sg, _ = scores(train, target, gate_split or split)
        gs_g = sets[target][gate_split or split][0]
        g, _ = gate(variant, sg, sets[target][gate_split or split][2], gs_g.flops)
        acc = sets[target][split][1]
        return [srcc((1 - w * g) * s + w * g * z, acc) for w in GRID], g, m, s, z

    res = {"grid": GRID, "tau": TAU, "n": {n: {k: len(v[0]) for k, v in e.items()} for n, e in sets.items()},
           "variants": {}}
    for v in VARIANTS:
        rv = {"inner": {}, "outer": {}, "ship": {}}
        for h in FAMS:
            a, b = [f for f in FAMS if f != h]
            c1, g1, *_ = curve([a], b, "train", v)
            c2, g2, *_ = curve([b], a, "train", v)
            mean = np.mean([c1, c2], 0)
            w_star = GRID[int(np.argmax(mean))]
            rv["inner"][h] = {f"{a}->{b}": c1, f"{b}->{a}": c2, "gates": {f"{a}->{b}": g1, f"{b}->{a}": g2},
                              "mean": mean.tolist(), "w": w_star}
            # outer: gate from all of H's networks
            cv, g, m, s, z = curve([a, b], h, "all", v)
            out = {"gate": g, "curve": cv}
            for label, w in (("gnn", 0.0), ("w*", w_star)):
                mix = (1 - w * g) * s + w * g * z
                out[label] = {"all": all_metrics(m._to_percent(mix), sets[h]["all"][1])}
                if h == "nb101":
                    cv2, _, _, s2, z2 = curve([a, b], h, "train", v, gate_split="all")
                    mix2 = (1 - w * g) * s2 + w * g * z2
                    out[label]["consistent"] = all_metrics(m._to_percent(mix2), sets[h]["train"][1])
            rv["outer"][h] = out
        per = {}
        for h in FAMS:
            tr = [f for f in FAMS if f != h]
            cv, g, *_ = curve(tr, h, "train" if h == "nb101" else "all", v)
            per[h] = {"curve": cv, "gate": g}
        mean = np.mean([per[h]["curve"] for h in FAMS], 0)
        rv["ship"] = {"per_family": per, "mean": mean.tolist(), "w": GRID[int(np.argmax(mean))]}
        res["variants"][v] = rv
    res["agreement"] = {f"{k[0]} -> {k[1]} ({k[2]})": v for k, v in agree.items()}
    (OUT / "mix_whole.json").write_text(json.dumps(res, indent=1))

    lines = [f"Whole families (n: {res['n']}); gate threshold {TAU}.", "",
             "Label-free agreement of naswot with the fitted model's GNN score and with ln FLOPs (SRCC):", "",
             "| fit -> family (networks) | SRCC(naswot, s_gnn) | SRCC(naswot, ln FLOPs) |", "|---|---|---|"]
    lines += [f"| {k} | {v['rho_gnn']:.3f} | {v['rho_flops']:.3f} |" for k, v in res["agreement"].items()]
    for v in VARIANTS:
        rv = res["variants"][v]
        lines += ["", f"### variant {v}", "",
                  "| held-out | inner mean SRCC at w = " + ", ".join(map(str, GRID)) + " | inner gates | w* | "
                  "outer gate | outer GNN only | **outer at w*** (SRCC / τ / NDCG@10 / MAE) |",
                  "|---|---|---|---|---|---|---|"]
        for h in FAMS:
            i, o = rv["inner"][h], rv["outer"][h]
            m0, m1 = o["gnn"]["all"], o["w*"]["all"]
            extra = ""
            if h == "nb101":
                extra = (f" (190: {o['gnn']['consistent']['srcc']:.3f} -> "
                         f"{o['w*']['consistent']['srcc']:.3f})")
            lines.append(f"| {h} | " + ", ".join(f"{x:.3f}" for x in i["mean"]) + " | "
                         + ", ".join(f"{k} {g:.2f}" for k, g in i["gates"].items())
                         + f" | {i['w']} | {o['gate']:.2f} | "
                         f"{m0['srcc']:.3f} | **{m1['srcc']:.3f}** / {m1['kendall']:.3f} / {m1['ndcg10']:.3f} / "
                         f"{m1['mae']:.2f}{extra} |")
        lines.append("")
        lines.append("outer SRCC over the grid (reported, not used for any choice): " + "; ".join(
            f"{h}: " + ", ".join(f"{x:.3f}" for x in rv["outer"][h]["curve"]) for h in FAMS))
        lines.append("")
        lines.append("ship (three-family inner LOFO): " + ", ".join(f"{x:.3f}" for x in rv["ship"]["mean"])
                     + f" -> w = {rv['ship']['w']}; gates " + ", ".join(
                         f"{h} {rv['ship']['per_family'][h]['gate']:.2f}" for h in FAMS))
    (OUT / "mix_whole.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
