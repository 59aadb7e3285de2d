#!/bin/bash
# Device call 2: shorter training budgets (call 1 showed the 5 + 20-epoch fits transferring worse than
# run 3's short CPU budget in the inner fits), one background process per config.
# Usage (repo root): OUT=dir bash results/nape_run4/run_search2.sh
common='"batch_size": 128, "rank_targets": true'
run() {  # tag budget-json struct beta
  NT=1 timeout 400 python3 results/nape_run4/config_search.py "{$common, $2, \"struct_features\": $3, \"beta\": $4}" \
    "$1" "$OUT/search_$1.jsonl" > "$OUT/$1.log" 2>&1 &
}
short='"epochs": 6, "pretrain_epochs": 2, "max_graphs_per_family": 1024'
mid='"epochs": 10, "pretrain_epochs": 3, "max_graphs_per_family": 2048'
for s in false true; do
  for b in 0.5 1.0 2.0 4.0; do run "short_s${s:0:1}_b$b" "$short" $s $b; done
  for b in 1.0 2.0 4.0; do run "mid_s${s:0:1}_b$b" "$mid" $s $b; done
done
wait
cat "$OUT"/search_*.jsonl > "$OUT/config_search2.jsonl"
tail -qn 1 "$OUT"/*.log
