#!/bin/bash
# Run 8, one device call: benchmarks/nape.py for the three held-out families in parallel (one process each,
# the pre-registered configuration) and the shipped predictor (seqlab nape train --proxy-weight auto), then the
# merge. Usage (repo root, .nape_data and .cache/nape carried): OUT=dir SEQLAB_GIT_COMMIT=<hash> bash results/nape_run8/run_gpu.sh
# Run 10 reuses it with SCORES=results/nape_run10 (pink-noise NASWOT); the default is run 8's scores.
export SEQLAB_NAPE_DATA=${SEQLAB_NAPE_DATA:-.nape_data} PYTHONPATH=src PYTHONUNBUFFERED=1
C="--ensemble 5 --epochs 6 --pretrain-epochs 2 --max-graphs 1024 --batch-size 128 --rank-targets --betas 0.5"
SCORES=${SCORES:-results/nape_run8}
C="$C --proxy-scores $SCORES"
for f in nb201 macro nb101; do
  OMP_NUM_THREADS=3 timeout 540 python3 benchmarks/nape.py $C --families $f --out "$OUT/part_$f" > "$OUT/part_$f.log" 2>&1 &
done
OMP_NUM_THREADS=3 timeout 540 python3 -m seqlab.cli nape train --proxy-weight auto --proxy-scores $SCORES \
  --out "$OUT/gennape.pt" > "$OUT/ship.log" 2>&1 &
wait
python3 benchmarks/nape.py --merge "$OUT/part_nb201,$OUT/part_macro,$OUT/part_nb101" --out "$OUT/merged" > "$OUT/merge.log" 2>&1
tail -n 3 "$OUT"/part_*.log "$OUT/ship.log"; grep -h "NASWOT\|GENNAPE\|w = " "$OUT/merged/nape.md" | head -40
