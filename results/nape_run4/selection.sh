# Settings per held-out family, chosen by results/nape_run4/select_configs.py on config_search.jsonl +
# config_search2.jsonl (inner leave-one-family-out over each family's two training families; see nape_summary.md).
# Ensemble size 5 fixed a priori (more seeds: lower variance), not selected by any score.
ENS=5
SHORT="--epochs 6 --pretrain-epochs 2 --max-graphs 1024"
NB201="$SHORT --betas 0.5 --struct-features"   # short_st_b0.5
MACRO="$SHORT --betas 4.0 --struct-features"   # short_st_b4.0
NB101="$SHORT --betas 0.5"                     # short_sf_b0.5
# shipped model: short_sf_b4.0 was the three-family inner-LOFO argmax (CLI defaults at fd9aa74, trained in call 3);
# the committed one is beta 0.5 after the training-family-fit tie-break (nape_summary.md, Run 4)
