#!/bin/bash
# Device call 3: the outer protocol, each held-out family with the settings chosen for it by select_configs.py
# (inner leave-one-family-out), in parallel, plus the shipped predictor (seqlab nape train, its CLI defaults).
# Usage (repo root): OUT=dir bash results/nape_run4/run_outer.sh
# Arguments per family come from results/nape_run4/selection.sh (written by hand from select_configs.py's output).
source results/nape_run4/selection.sh
C="--ensemble $ENS --batch-size 128 --rank-targets"
outer() {  # family flags
  NT=2 OMP_NUM_THREADS=2 timeout 345 python3 benchmarks/nape.py $C $2 --families $1 --out "$OUT/part_$1" \
    > "$OUT/part_$1.log" 2>&1 &
}
outer nb201 "$NB201"
outer macro "$MACRO"
outer nb101 "$NB101"
OMP_NUM_THREADS=2 timeout 345 python3 -m seqlab.cli nape train --out "$OUT/gennape.pt" > "$OUT/ship.log" 2>&1 &
wait
python3 benchmarks/nape.py --merge "$OUT/part_nb201,$OUT/part_macro,$OUT/part_nb101" --out "$OUT/merged" > /dev/null 2>&1
tail -qn 2 "$OUT"/*.log; grep -h "GENNAPE\|plain" "$OUT"/merged/nape.md | head -20
