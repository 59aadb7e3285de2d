"""Run 9 (EXPLORATORY, designed after runs 5-8): the data-free NASWOT score as a learned graph-level input
instead of a score mixed in with a weight chosen by leave-one-family-out.

    SEQLAB_NAPE_DATA=../shared/data/nape PYTHONPATH=src python results/nape_run9/proxy_feature.py [--ensemble 5]
        -> results/nape_run9/proxy_feature.{json,md}

For each held-out family H, a GENNAPE with run 8's configuration (CLI defaults: 5 seeds, 6 + 2 epochs,
1,024 graphs per family, batch 128, rank targets, beta 0.5, seed 0) gets one extra graph-level input,
z = (naswot - ref) / scale, with ref / scale from the two training families' scores only (mean of the
family means / of the family standard deviations, as `set_proxy`), is trained on the two other families and
scored on all of H. Nothing is chosen on H; there is no weight to choose. Compared against run 8's GNN alone
and GNN + NASWOT at the strict weight (same configuration, H100). The question it answers: does the encoder
learn *where* NASWOT carries signal (strong on Macro and NB-201, weak on NB-101)?
The extra input goes through the `struct_features` path with `STRUCT_FEATURES` replaced by the single z
column (this script only; the library is unchanged).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from seqlab.nape import data
from seqlab.nape import predictor as P
from seqlab.nape.metrics import all_metrics

HERE = Path(__file__).resolve().parent
SCORES = HERE.parent / "nape_run8"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ensemble", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--pretrain-epochs", type=int, default=2)
    ap.add_argument("--max-graphs", type=int, default=1024)
    ap.add_argument("--families", default=",".join(data.FAMILIES))
    ap.add_argument("--out", default=str(HERE))
    a = ap.parse_args()
    torch.set_num_threads(2)
    P.STRUCT_FEATURES = ["naswot_z"]  # the model's extra graph-level input width (this process only)
    fams, graphs, prox = {}, {}, {}
    for n in data.FAMILIES:
        f = data.load_family(n)
        gs = data.family_graphs(f, progress=False)
        idx, sc = data.read_proxy_scores(SCORES, n)
        p = np.full(len(f), np.nan)
        p[idx] = sc
        if not np.isfinite(p).all():
            raise SystemExit(f"{n}: {int((~np.isfinite(p)).sum())} networks without a score")
        fams[n], graphs[n], prox[n] = f, gs, p
    cfg = dict(ensemble=a.ensemble, epochs=a.epochs, pretrain_epochs=a.pretrain_epochs,
               max_graphs_per_family=a.max_graphs, batch_size=128, rank_targets=True, beta=0.5, struct_features=True)
    res = {"config": cfg, "scores": str(SCORES), "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "torch": torch.__version__, "threads": torch.get_num_threads(), "held_out": {}}
    for held in a.families.split(","):
        t0 = time.time()
        train_names = [n for n in data.FAMILIES if n != held]
        ref = float(np.mean([prox[n].mean() for n in train_names]))
        scale = float(np.mean([prox[n].std() for n in train_names]))
        for n in data.FAMILIES:  # z with the training families' constants, for every family alike
            graphs[n]._struct = ((prox[n] - ref) / scale).astype(np.float32)[:, None]
        train = {n: (graphs[n], fams[n].acc) for n in train_names}
        model = P.GENNAPE(device="cpu", **cfg).fit(train, seed=0, progress=False)
        pred = model.predict(graphs[held])
        m = all_metrics(pred, fams[held].acc)
        res["held_out"][held] = {"metrics": m, "ref": ref, "scale": scale, "seconds": round(time.time() - t0, 1)}
        print(f"[{held}] SRCC {m['srcc']:.3f}  tau {m['kendall']:.3f}  NDCG@10 {m['ndcg10']:.3f}  "
              f"MAE {m['mae']:.2f}  ({time.time() - t0:.0f} s)", flush=True)
        out = Path(a.out)
        (out / "proxy_feature.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
