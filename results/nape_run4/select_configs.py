"""Choose settings from the run-4 search log by inner leave-one-family-out (never the outer family's scores).

    python results/nape_run4/select_configs.py results/nape_run4/config_search.jsonl
"""

import json
import sys
from collections import defaultdict

FAMS = ("nb201", "macro", "nb101")
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
fits = defaultdict(dict)  # tag -> {(train tuple, eval): srcc}
cfgs = {}
for r in rows:
    cfgs[r["tag"]] = r["cfg"]
    for v, s in r["srcc"].items():
        fits[r["tag"]][(tuple(r["train"]), v)] = s


def inner(tag, outer):
    """Mean SRCC over the single-family fits within ``outer``'s training families; None if incomplete."""
    tr = [f for f in FAMS if f != outer]
    keys = [((a,), b) for a in tr for b in tr if a != b]
    vals = [fits[tag].get(k) for k in keys]
    return None if None in vals else (sum(vals) / len(vals), dict(zip([f"{k[0][0]}->{k[1]}" for k in keys], vals)))


def ship(tag):
    keys = [(tuple(f for f in FAMS if f != c), c) for c in FAMS]
    vals = [fits[tag].get(k) for k in keys]
    return None if None in vals else (sum(vals) / len(vals), dict(zip([f"->{k[1]}" for k in keys], vals)))


out = {}
for outer in FAMS + ("ship",):
    table = {t: (ship(t) if outer == "ship" else inner(t, outer)) for t in fits}
    table = {t: v for t, v in table.items() if v is not None}
    if not table:
        continue
    best = max(table, key=lambda t: table[t][0])
    out[outer] = {"choice": best, "cfg": cfgs[best], "mean_srcc": {t: round(v[0], 4) for t, v in table.items()},
                  "detail": {t: {k: round(x, 4) for k, x in v[1].items()} for t, v in table.items()}}
    print(f"{outer:6s} -> {best}  " + "  ".join(f"{t} {v[0]:.4f}" for t, v in sorted(table.items())))
print(json.dumps(out, indent=1))
