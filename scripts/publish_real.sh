#!/usr/bin/env bash
# The published real answer (docs/running.md, "The published run"), three groups on the bundled official
# PneumoniaMNIST and BreastMNIST files with the packaged EfficientNet-Lite0 weights, two cells at a time (one
# torch thread each):
#   1. the study group: the quick start's 54 cells (the study's eight and kNN at the study's fixed rate, seeds 0-2);
#   2. the answer's group: the study's eight with Auto-SNR, FT (eval BN) and kNN under the tuned protocol (every
#      strategy sweeps x0.1, x1, x10 of its own default rate, chosen on validation AUC), seeds 0-4;
#   3. the longer-budget group (tier real_long: BreastMNIST, 9 epochs with early stopping, seeds 0-2).
# Then the leaderboard into results-published/leaderboard/; publishing into leaderboard/ is the explicit step
# `python -m medft_bench.leaderboard results-published --publish`.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${MEDFT_VENV:-.venv}
out=${MEDFT_PUBLISHED_RESULTS:-results-published}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
start=$(date +%s)
run() { "$venv/bin/python" -m pytest benchmarks -q -p no:cacheprovider -n 2 --results-dir "$out" "$@"; }
run --tier=real
echo "study group: $(( $(date +%s) - start )) s"
run --tier=real --strategies ft,lp,gu_last_first,gu_first_last,lp_ft,l1_sp,l2_sp,auto_rgn,auto_snr,ft_eval,knn \
    --seeds 0,1,2,3,4 --protocol tuned
echo "study and tuned groups: $(( $(date +%s) - start )) s"
run --tier=real_long
echo "all three groups: $(( $(date +%s) - start )) s"
"$venv/bin/python" -m medft_bench.leaderboard "$out" --out "$out/leaderboard" --quiet
