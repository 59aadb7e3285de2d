"""Run 4 configuration search (GPU): every fit needed for inner leave-one-family-out selection.

    PYTHONPATH=src python results/nape_run4/config_search.py '{"beta": 1.0, ...}' TAG OUT.jsonl

One config per process (the device run starts several in the background). Fits, each scored with SRCC
(NB-101 always on its 190 consistent cells), one JSON line each, written as soon as it finishes:

* single-family fits ``{A} -> B``: for every ordered pair of families. Outer held-out ``F`` may use only
  the pairs with ``A, B != F`` (its two training families), e.g. NB-201: ``nb101->macro``, ``macro->nb101``.
* two-family fits ``{A, B} -> C``: the inner leave-one-family-out of the *shipped* model (trained on all
  three). These are also the outer zero-shot protocol at one seed, so they are used for the shipped
  model's choice only, never for an outer held-out family's choice.

``select_configs.py`` reads the log and makes the choices.
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
cfg = json.loads(sys.argv[1])
tag, out = sys.argv[2], sys.argv[3]
single_ens = cfg.pop("single_ensemble", 2)
pair_ens = cfg.pop("pair_ensemble", 1)
fams, graphs = B.load_all(None, progress=False)
masks = {n: np.ones(len(fams[n]), bool) for n in fams}
masks["nb101"] = data.nb101_consistent(fams["nb101"], graphs["nb101"])
for n in graphs:  # structural features once per family (select() keeps them)
    graphs[n].structure()


def score(m, v):
    idx = np.flatnonzero(masks[v])
    return srcc(m.score(graphs[v].select(idx)), fams[v].acc[idx])


def log(rec):
    with open(out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(tag, rec["train"], {k: round(v, 4) for k, v in rec["srcc"].items()}, f"{rec['s']:.0f}s", flush=True)


jobs = [([a], [b for b in data.FAMILIES if b != a], single_ens) for a in ("nb101", "macro", "nb201")]
jobs += [([a for a in data.FAMILIES if a != c], [c], pair_ens) for c in data.FAMILIES]
for train_names, evals, ens in jobs:
    t0 = time.time()
    m = GENNAPE(**dict(cfg, ensemble=ens)).fit(B.train_set(train_names, fams, graphs, masks), seed=0, progress=False)
    log({"tag": tag, "cfg": cfg, "ensemble": ens, "train": train_names,
         "srcc": {v: score(m, v) for v in evals}, "s": time.time() - t0})
