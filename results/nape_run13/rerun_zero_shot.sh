#!/bin/bash
# Run 13b on the device: the zero-shot half of run 13 again (no draws), for the predicted-vs-true plot that run 13
# could not return, and as a repeat of its zero-shot figures. bash results/nape_run13/rerun_zero_shot.sh
set -u
export SEQLAB_NAPE_DATA=.nape_data PYTHONPATH=src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
W=/tmp/run13b; mkdir -p "$W" "$OUT"
for F in nb201 macro nb101; do
  timeout "${LIMIT:-560}" python3 benchmarks/nape.py --ensemble 5 --epochs 6 --pretrain-epochs 2 --max-graphs 1024 \
    --batch-size 128 --rank-targets --betas 0.5 --proxy-scores results/nape_run10 --draws 0 \
    --families $F --out "$W/part_$F" > "$W/$F.log" 2>&1 &
done
wait
python3 benchmarks/nape.py --merge "$W/part_nb201,$W/part_macro,$W/part_nb101" --out "$OUT" > "$W/merge.log" 2>&1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$OUT/device.txt"
tail -n 4 "$W"/*.log
