"""Run 11, step 0 (exploratory): mixing rules on the 60-epoch fine-tunes of oof_ft.py (dev families only).

    python results/nape_run11/mix_rules.py ft_macro.npz ft_nb101.npz  # writes the table of mix_rules.txt
"""

import itertools
import json
import sys

import numpy as np
from scipy.stats import norm, rankdata, spearmanr


def srcc(a, b):
    return spearmanr(a, b).correlation


def simplex(k, step=0.1):
    n = int(round(1 / step))
    for c in itertools.product(range(n + 1), repeat=k - 1):
        if sum(c) <= n:
            yield np.array(list(c) + [n - sum(c)]) / n


def zc(v, ref):
    return (v - ref.mean()) / (ref.std() + 1e-9)


def run(path):
    z = np.load(path)
    rec = json.loads(str(z["rec"]))
    acc, nw, lf, lp, szs = z["acc"], z["naswot"], np.log(z["flops"]), np.log(z["params"]), z["s_zs"]
    res = {}
    for r in rec:
        pick = np.array(r["pick"])
        rest = np.setdiff1d(np.arange(len(acc)), pick)
        y, yr = acc[pick], acc[rest]
        oof, oofr, s_rest = np.array(r["oof"]), np.array(r["oof_raw"]), np.array(r["s_rest"])
        F = {}  # name -> (samples, rest)
        F["g"] = (oof, s_rest)  # per-fold standardised OOF / raw final score (as the library)
        F["graw"] = (oofr, s_rest)
        F["n"] = (zc(nw[pick], nw[pick]), zc(nw[rest], nw[pick]))
        F["l"] = (zc(lf[pick], lf[pick]), zc(lf[rest], lf[pick]))
        F["p"] = (zc(lp[pick], lp[pick]), zc(lp[rest], lp[pick]))
        F["zs"] = (zc(szs[pick], szs[pick]), zc(szs[rest], szs[pick]))

        def best(names, F=F, y=y, yr=yr):
            best_w, best_s = None, -9
            for w in simplex(len(names)):
                s = srcc(sum(wi * F[k][0] for wi, k in zip(w, names)), y)
                if s > best_s + 1e-12:
                    best_w, best_s = w, s
            return srcc(sum(wi * F[k][1] for wi, k in zip(best_w, names)), yr), best_w

        out = {}
        out["gnn ft"] = (srcc(s_rest, yr), None)
        out["R0 g+n (current)"] = best(["g", "n"])
        out["R0' graw+n"] = best(["graw", "n"])
        out["R1 g+n+l"] = best(["g", "n", "l"])
        out["R1' graw+n+l"] = best(["graw", "n", "l"])
        out["R2 g+n+l+p"] = best(["g", "n", "l", "p"])
        out["R5 zs+n+l (no ft)"] = best(["zs", "n", "l"])
        out["R6 g+zs+n+l"] = best(["g", "zs", "n", "l"])
        out["R4 equal g,n,l"] = (srcc(F["g"][1] / 1 + F["n"][1] + F["l"][1], yr), None)
        out["n+l equal"] = (srcc(F["n"][1] + F["l"][1], yr), None)
        yg = norm.ppf((rankdata(y) - 0.5) / len(y))
        X = np.stack([F[k][0] for k in ("g", "n", "l")], 1)
        Xr = np.stack([F[k][1] for k in ("g", "n", "l")], 1)
        coef = np.linalg.lstsq(np.c_[X, np.ones(50)], yg, rcond=None)[0]
        out["R3 lstsq g,n,l"] = (srcc(Xr @ coef[:3], yr), coef[:3].round(2))
        for k, v in out.items():
            res.setdefault(k, []).append(v)
    for k, v in res.items():
        s = np.array([a for a, _ in v])
        ws = "" if v[0][1] is None else "  w " + " | ".join(str(np.round(b, 2).tolist()) for _, b in v)
        print(f"{k:24s} {s.mean():.3f} ± {s.std():.3f}{ws}")


for p in sys.argv[1:]:
    print("==", p)
    run(p)
