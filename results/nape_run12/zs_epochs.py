"""Run 12: the zero-shot fit's epochs (CPU). Rule in README.md, fixed before any number of this run.

    OMP_NUM_THREADS=1 PYTHONPATH=src python results/nape_run12/zs_epochs.py fit HELD TRAIN1[,TRAIN2] EPOCHS OUT.pt
    PYTHONPATH=src python results/nape_run12/zs_epochs.py strict EPOCHS DIR     # NB-201, from DIR's three fits

``fit`` trains GENNAPE (run 8/10 configuration, seed 0) on the listed families and prints the GNN-alone SRCC on
HELD. ``strict`` repeats benchmarks/nape.py's NB-201 zero-shot protocol from saved fits: w by leave-one-family-out
inside {Macro, NB-101} (DIR/inner_macro.pt trained on NB-101 alone, DIR/inner_nb101.pt on Macro alone; first
maximum of the mean SRCC over the grid), then the outer model (DIR/main.pt, Macro + NB-101) with that w and the
training families' NASWOT constants.
"""
import json
import sys

import numpy as np

sys.path.insert(0, "benchmarks")
from nape import load_all, train_set, training_masks  # noqa: E402
from seqlab.nape.metrics import srcc  # noqa: E402
from seqlab.nape.predictor import GENNAPE, PROXY_GRID  # noqa: E402

CFG = dict(ensemble=5, pretrain_epochs=2, max_graphs_per_family=1024, batch_size=128, rank_targets=True, beta=0.5)
fams, graphs = load_all(".nape_data", progress=False, proxy_scores="results/nape_run10")
masks = training_masks(fams, graphs)

if sys.argv[1] == "fit":
    held, names, epochs, out = sys.argv[2], sys.argv[3].split(","), int(sys.argv[4]), sys.argv[5]
    m = GENNAPE(device="cpu", epochs=epochs, **CFG).fit(train_set(names, fams, graphs, masks), seed=0, progress=False)
    m.save(out)
    print(json.dumps({"held": held, "train": names, "epochs": epochs,
                      "gnn_srcc": srcc(m.score(graphs[held]), fams[held].acc)}), flush=True)
else:
    epochs, d = int(sys.argv[2]), sys.argv[3]
    train = train_set(["macro", "nb101"], fams, graphs, masks)
    per = {}
    for val, other in (("macro", "nb101"), ("nb101", "macro")):
        m = GENNAPE.load(f"{d}/inner_{val}.pt", device="cpu").set_proxy({other: train[other][0].proxy}, 0.0)
        gs, acc = train[val]
        s0 = m.score(gs)
        per[val] = [srcc(m._mix_proxy(s0, gs, w), acc) for w in PROXY_GRID]
    mean = np.mean(list(per.values()), axis=0)
    w = PROXY_GRID[int(np.argmax(mean))]
    main = GENNAPE.load(f"{d}/main.pt", device="cpu").set_proxy({n: t[0].proxy for n, t in train.items()}, w)
    s0 = main.score(graphs["nb201"])
    acc = fams["nb201"].acc
    print(json.dumps({"epochs": epochs, "w": w, "inner_mean": [round(v, 4) for v in mean],
                      "per_family": {k: [round(v, 4) for v in vs] for k, vs in per.items()},
                      "gnn_srcc": srcc(main._mix_proxy(s0, graphs["nb201"], 0.0), acc),
                      "strict_srcc": srcc(main._mix_proxy(s0, graphs["nb201"], w), acc),
                      "outer_curve_reported_only": [round(srcc(main._mix_proxy(s0, graphs["nb201"], v), acc), 4)
                                                    for v in PROXY_GRID]}), flush=True)
