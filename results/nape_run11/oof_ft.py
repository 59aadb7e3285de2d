"""50-shot variants on a saved zero-shot model. Per draw: the 5-fold out-of-fold (OOF) fine-tuned GNN scores on the
50 samples and the full fine-tune's scores on the rest, plus label-free features (mix_rules.py compares rules on them).

    PYTHONPATH=src python results/nape_run11/oof_ft.py FAMILY MODEL.pt OUT.npz [DRAWS]   # old schedule: 60, 1e-3
"""

import copy
import json
import sys
import time

import numpy as np
import torch

sys.path.insert(0, "benchmarks")
from seqlab.nape import data
from seqlab.nape.data import read_proxy_scores
from seqlab.nape.metrics import srcc
from seqlab.nape.predictor import GENNAPE

held, mpath, out = sys.argv[1], sys.argv[2], sys.argv[3]
draws = int(sys.argv[4]) if len(sys.argv) > 4 else 5
fams = {held: data.load_family(held, ".nape_data")}
gs = data.family_graphs(fams[held], progress=False)
idx, sc = read_proxy_scores("results/nape_run10", held, ".nape_data")
gs.proxy = np.full(len(gs), np.nan)
gs.proxy[idx] = sc
f = fams[held]
base = GENNAPE.load(mpath, device="cuda" if torch.cuda.is_available() else "cpu")
s_zs_all = base.score(gs)
rec = []
for d in range(draws):
    t = time.time()
    rng = np.random.default_rng(1000 + d)
    pick = rng.choice(len(f), size=50, replace=False)
    rest = np.setdiff1d(np.arange(len(f)), pick)
    y = f.acc[pick]
    oof = np.zeros(50)
    oof_raw = np.zeros(50)
    folds = np.array_split(np.random.default_rng(d).permutation(50), 5)
    for te in folds:
        tr = np.setdiff1d(np.arange(50), te)
        mk = copy.deepcopy(base)._fine_tune(gs.select(pick[tr]), y[tr], 60, 1e-3, d)
        mk.cfg.proxy_weight = 0.0
        s = mk.score(gs.select(pick[te]))
        oof_raw[te] = s
        oof[te] = (s - s.mean()) / (s.std() + 1e-6)
    mf = copy.deepcopy(base)._fine_tune(gs.select(pick), y, 60, 1e-3, d)
    mf.cfg.proxy_weight = 0.0
    s_rest = mf.score(gs.select(rest))
    s_in = mf.score(gs.select(pick))
    rec.append(
        dict(
            pick=pick.tolist(),
            oof=oof.tolist(),
            oof_raw=oof_raw.tolist(),
            s_rest=s_rest.tolist(),
            s_in=s_in.tolist(),
            t=time.time() - t,
        )
    )
    print(
        held,
        d,
        "oof srcc",
        round(srcc(oof, y), 3),
        "ft rest",
        round(srcc(s_rest, f.acc[rest]), 3),
        round(time.time() - t),
        "s",
        flush=True,
    )
np.savez_compressed(
    out, s_zs=s_zs_all, acc=f.acc, naswot=gs.proxy, flops=gs.flops, params=gs.params, rec=json.dumps(rec)
)
