"""Run 11: the outer zero-shot GENNAPE for one held-out family, run 8/10 configuration (CPU, 1 thread, ~3-9 min).

    OMP_NUM_THREADS=1 PYTHONPATH=src python results/nape_run11/fit_zero.py FAMILY OUT.pt
"""
import sys
import time

sys.path.insert(0, "benchmarks")
from nape import load_all, train_set, training_masks
from seqlab.nape import data
from seqlab.nape.predictor import GENNAPE

held, out = sys.argv[1], sys.argv[2]
t = time.time()
fams, graphs = load_all(".nape_data", progress=False, proxy_scores="results/nape_run10")
masks = training_masks(fams, graphs)
train = train_set([n for n in data.FAMILIES if n != held], fams, graphs, masks)
cfg = dict(ensemble=5, epochs=6, pretrain_epochs=2, max_graphs_per_family=1024, batch_size=128, rank_targets=True,
           beta=0.5)
m = GENNAPE(device="cpu", **cfg).fit(train, seed=0, progress=False)
m.save(out)
print(held, "fit", round(time.time()-t), "s", flush=True)
