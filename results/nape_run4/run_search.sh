#!/bin/bash
# Device call 1: the inner leave-one-family-out grid, one background process per config.
# Usage (repo root): OUT=dir bash results/nape_run4/run_search.sh
base='"epochs": 20, "pretrain_epochs": 5, "max_graphs_per_family": 2048, "batch_size": 128, "rank_targets": true'
for s in false true; do
  for b in 0.5 1.0 2.0; do
    tag="s${s:0:1}_b${b}"
    NT=2 timeout 560 python3 results/nape_run4/config_search.py "{$base, \"struct_features\": $s, \"beta\": $b}" \
      "$tag" "$OUT/search_$tag.jsonl" > "$OUT/$tag.log" 2>&1 &
  done
done
wait
cat "$OUT"/search_*.jsonl > "$OUT/config_search.jsonl"
