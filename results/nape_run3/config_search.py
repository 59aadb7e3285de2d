"""The configuration search behind nape_run3 (log: config_search.jsonl), CPU, one thread per process.

    NT=1 PYTHONPATH=src python results/nape_run3/config_search.py '{"beta": 0.5, ...}' TAG inner
    NT=1 PYTHONPATH=src python results/nape_run3/config_search.py '{...}' TAG outer

``inner``: for each outer held-out family (nb201, macro), leave-one-family-out over its two *training*
families only (NB-101 scored on its 190 consistent cells); the held-out family is never loaded into a
fit or a score. ``outer``: the plain zero-shot protocol (used once, as a CPU timing run).
Note: the first two ``inner`` rows of the log (tiny settings) scored NB-101 on all 500 cells (≈ 0,
meaningless); the script was then fixed to the consistent cells.
"""

import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, "src")
sys.path.insert(0, "benchmarks")
import nape as B  # noqa: E402
from seqlab.nape import data  # noqa: E402
from seqlab.nape.metrics import srcc  # noqa: E402
from seqlab.nape.predictor import GENNAPE  # noqa: E402

torch.set_num_threads(int(os.environ.get("NT", "2")))
fams, graphs = B.load_all(None, progress=False)
masks = {n: np.ones(len(fams[n]), bool) for n in fams}
masks["nb101"] = data.nb101_consistent(fams["nb101"], graphs["nb101"])
cfg = json.loads(sys.argv[1])
tag = sys.argv[2]
mode = sys.argv[3] if len(sys.argv) > 3 else "outer"
res = {}
t0 = time.time()
for held in ("nb201", "macro"):
    if mode == "outer":
        train = B.train_set([n for n in data.FAMILIES if n != held], fams, graphs, masks)
        m = GENNAPE(device="cpu", **cfg).fit(train, seed=0, progress=False)
        res[held] = srcc(m.predict(graphs[held]), fams[held].acc)
        print(tag, held, round(res[held], 4), f"{time.time() - t0:.0f}s", flush=True)
        continue
    tr = [n for n in data.FAMILIES if n != held]
    vals = {}
    for v in tr:
        train = B.train_set([n for n in tr if n != v], fams, graphs, masks)
        m = GENNAPE(device="cpu", **cfg).fit(train, seed=0, progress=False)
        mk = masks[v]
        vals[v] = srcc(m.predict(graphs[v].select(np.flatnonzero(mk))), fams[v].acc[mk])
    res[held] = vals
    print(tag, "inner for", held, vals, f"{time.time() - t0:.0f}s", flush=True)
with open("config_search.jsonl", "a") as f:
    f.write(json.dumps({"tag": tag, "mode": mode, "cfg": cfg, "res": res, "s": time.time() - t0}) + "\n")
