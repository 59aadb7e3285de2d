"""Run 5: turn on the NASWOT term of the shipped predictor with the three-family inner-LOFO weight.

    SEQLAB_NAPE_DATA=../shared/data/nape PYTHONPATH=src python results/nape_run5/ship_proxy.py W

The GNN part is the run-4 shipped model unchanged (``seqlab nape train --device cpu``: 5 seeds, beta 0.5,
seed 123); only ``proxy_weight = W`` and the standardisation constants (from the measured NASWOT scores of
the three training families, results/nape_run5/<family>_proxies.csv) are added. From scratch the same
model is ``seqlab nape train --device cpu --proxy-weight W`` (the GNN retrained with the same settings).
"""

from __future__ import annotations

import sys
from pathlib import Path

from seqlab.nape.cli import training_proxy_scores
from seqlab.nape.predictor import GENNAPE, PRETRAINED

OUT = Path(__file__).resolve().parent


def main():
    w = float(sys.argv[1])
    model = GENNAPE.load(PRETRAINED, device="cpu")
    if model.cfg.proxy_weight:
        raise SystemExit(f"{PRETRAINED} already has proxy_weight {model.cfg.proxy_weight}")
    scores = training_proxy_scores(OUT, ["nb201", "macro", "nb101"])
    model.set_proxy(scores, w)
    model.save(PRETRAINED)
    print(f"{PRETRAINED}: proxy_weight {w}, ref {model.proxy_ref:.3f}, scale {model.proxy_scale:.3f}, "
          f"from {', '.join(f'{n} {len(v)}' for n, v in scores.items())} scored networks; "
          f"{PRETRAINED.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
