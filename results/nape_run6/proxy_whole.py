"""Run 6: the data-free proxies alone on whole families (no training), next to FLOPs/params and the shared
CSVs' real-data proxies where the files have them.

    SEQLAB_NAPE_DATA=.nape_data PYTHONPATH=src python results/nape_run6/proxy_whole.py
        -> results/nape_run6/proxy_whole.{md,json}

SynFlow was measured only in device call 1 (a random subset: the first networks of each family's fixed
permutation); its rows say how many networks they cover.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from seqlab.nape import data
from seqlab.nape.metrics import all_metrics

OUT = Path(__file__).resolve().parent


def main():
    res, lines = {}, ["| family | subset | n | signal | SRCC | τ | NDCG@10 |", "|---|---|---|---|---|---|---|"]
    for name in data.FAMILIES:
        fam = data.load_family(name)
        pos = {a: i for i, a in enumerate(fam.ids)}
        with open(OUT / f"{name}_proxies.csv") as f:
            rows = list(csv.DictReader(f))
        idx = np.array([pos[r["id"]] for r in rows])
        nw = np.array([float(r["naswot"]) for r in rows])
        sf = np.array([float(r["synflow"]) if r["synflow"] else np.nan for r in rows])
        acc = fam.acc[idx]
        sig = {"naswot (data-free)": nw, "synflow (data-free)": sf, "flops (file)": fam.flops[idx],
               "params (file)": fam.params[idx]}
        for k in ("nwot", "synflow"):
            if k in fam.proxies:
                sig[f"{k} (shared CSV)"] = fam.proxies[k][idx]
        subsets = {"all": np.ones(len(idx), bool)}
        if name == "nb101":
            subsets["190 consistent"] = data.nb101_consistent(fam, data.family_graphs(fam, progress=False))[idx]
        res[name] = {}
        for sn, m in subsets.items():
            res[name][sn] = {}
            for k, v in sig.items():
                ok = m & np.isfinite(v)
                if ok.sum() < 10:
                    continue
                met = all_metrics(v[ok], acc[ok], with_mae=False)
                res[name][sn][k] = met
                lines.append(f"| {name} | {sn} | {met['n']} | {k} | {met['srcc']:.3f} | {met['kendall']:.3f} | "
                             f"{met['ndcg10']:.3f} |")
    (OUT / "proxy_whole.json").write_text(json.dumps(res, indent=1))
    (OUT / "proxy_whole.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
