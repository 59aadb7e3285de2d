"""Training-family fit of the ship config (1 seed, CPU) per beta: a tie-break for the shipped model.

    OMP_NUM_THREADS=1 PYTHONPATH=src python results/nape_run4/ship_fit_diag.py 4.0,0.5,2.0,1.0
"""
import json
import sys
import time

sys.path.insert(0, "src")
import torch  # noqa: E402

torch.set_num_threads(1)
from seqlab.nape import data  # noqa: E402
from seqlab.nape.metrics import srcc  # noqa: E402
from seqlab.nape.predictor import GENNAPE  # noqa: E402

fams = data.training_families(progress=False)
for b in [float(v) for v in sys.argv[1].split(",")]:
    t = time.time()
    m = GENNAPE(device="cpu", beta=b, ensemble=1, epochs=6, pretrain_epochs=2, max_graphs_per_family=1024,
                batch_size=128, rank_targets=True).fit(fams, seed=123, progress=False)
    res = {n: round(srcc(m.score(gs), acc), 4) for n, (gs, acc) in fams.items()}
    print(json.dumps({"beta": b, "train_fit_srcc": res, "s": round(time.time() - t)}), flush=True)
