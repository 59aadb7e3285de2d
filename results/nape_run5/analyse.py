"""Run 5: SRCC / tau / NDCG@10 of the data-free proxies against the labels, next to the shared CSVs'
real-data proxies, FLOPs/params and run 3's GENNAPE zero-shot predictions, on the same networks.

    SEQLAB_NAPE_DATA=../shared/data/nape PYTHONPATH=src python results/nape_run5/analyse.py
        -> results/nape_run5/proxy_srcc.json, proxy_srcc.md
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from seqlab.nape import data
from seqlab.nape.metrics import all_metrics

OUT = Path(__file__).resolve().parent
ROOT = OUT.parent.parent


def rows(fam):
    p = OUT / f"{fam}_proxies.csv"
    if not p.exists():
        return []
    with open(p) as f:
        return list(csv.DictReader(f))


def main():
    run3 = dict(np.load(ROOT / "results/nape_run3/nape_preds.npz"))
    res, lines = {}, []
    lines.append("| family | subset | n | signal | SRCC | τ | NDCG@10 |")
    lines.append("|---|---|---|---|---|---|---|")
    for name in data.FAMILIES:
        r = rows(name)
        if not r:
            continue
        fam = data.load_family(name)
        pos = {a: i for i, a in enumerate(fam.ids)}
        idx = np.array([pos[x["id"]] for x in r])
        sig = {
            "naswot (data-free, ours)": np.array([float(x["naswot"]) for x in r]),
            "synflow (data-free, ours)": np.array([float(x["synflow"]) for x in r]),
            "flops (file)": fam.flops[idx],
            "params (file)": fam.params[idx],
            "GENNAPE zero-shot (run 3)": run3[name][idx].astype(np.float64),
        }
        for k in ("nwot", "synflow", "jacov"):
            if k in fam.proxies:
                sig[f"{k} (shared CSV, CIFAR-10)"] = fam.proxies[k][idx]
        subsets = {"all measured": np.ones(len(idx), bool)}
        if name == "nb101":
            gs = data.family_graphs(fam, progress=False)
            subsets["190 consistent cells"] = data.nb101_consistent(fam, gs)[idx]
        acc = fam.acc[idx]
        t = {k: float(np.mean([float(x[f"t_{k}_s"]) for x in r])) for k in ("naswot", "synflow")}
        res[name] = {"n": len(idx), "seconds_per_net": t, "family_size": len(fam), "metrics": {}}
        for sname, m in subsets.items():
            res[name]["metrics"][sname] = {}
            for k, v in sig.items():
                met = all_metrics(v[m], acc[m], with_mae=False)
                res[name]["metrics"][sname][k] = met
                lines.append(f"| {name} | {sname} | {met['n']} | {k} | {met['srcc']:.3f} | {met['kendall']:.3f} | "
                             f"{met['ndcg10']:.3f} |")
        # correlation between our data-free naswot and the CSV's real-data nwot
        if "nwot" in fam.proxies:
            from scipy.stats import spearmanr
            res[name]["srcc_naswot_vs_csv_nwot"] = float(spearmanr(sig["naswot (data-free, ours)"],
                                                                   fam.proxies["nwot"][idx])[0])
        from scipy.stats import spearmanr
        res[name]["srcc_naswot_vs_flops"] = float(spearmanr(sig["naswot (data-free, ours)"], fam.flops[idx])[0])
    (OUT / "proxy_srcc.json").write_text(json.dumps(res, indent=1))
    (OUT / "proxy_srcc.md").write_text("\n".join(lines) + "\n\n" + "\n".join(
        f"- {n}: {v['n']} of {v['family_size']} nets; seconds/net naswot {v['seconds_per_net']['naswot']:.2f}, "
        f"synflow {v['seconds_per_net']['synflow']:.2f}; SRCC(naswot, flops) {v['srcc_naswot_vs_flops']:.3f}"
        + (f"; SRCC(naswot, CSV nwot) {v['srcc_naswot_vs_csv_nwot']:.3f}" if "srcc_naswot_vs_csv_nwot" in v else "")
        for n, v in res.items()) + "\n")
    print((OUT / "proxy_srcc.md").read_text())


if __name__ == "__main__":
    main()
