#!/bin/bash
# Run 13 on the device: three held-out families in parallel, 5 draws each in 5 processes; then merge into $OUT.
# bash results/nape_run13/run.sh   (from the repository root; needs .nape_data and .cache/nape carried)
set -u
export SEQLAB_NAPE_DATA=.nape_data PYTHONPATH=src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
W=/tmp/run13; mkdir -p "$W" "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$OUT/device.txt"
for F in nb201 macro nb101; do
  timeout "${LIMIT:-560}" python3 benchmarks/nape.py --ensemble 5 --epochs 6 --pretrain-epochs 2 --max-graphs 1024 \
    --batch-size 128 --rank-targets --betas 0.5 --proxy-scores results/nape_run10 --draws 5 --jobs 5 \
    --families $F --out "$W/part_$F" > "$W/$F.log" 2>&1 &
done
wait
for F in nb201 macro nb101; do cp "$W/part_$F/nape.json" "$OUT/part_$F.json" 2>/dev/null; tail -3 "$W/$F.log"; done
python3 benchmarks/nape.py --merge "$W/part_nb201,$W/part_macro,$W/part_nb101" --out "$OUT/merged" > "$OUT/merge.log" 2>&1
tail -c 3000 "$W/nb201.log" > "$OUT/nb201_tail.log"
