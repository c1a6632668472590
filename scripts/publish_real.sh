#!/usr/bin/env bash
# The published real answer (docs/running.md, "The published run"): the real tier's setting on both bundled
# official files with the packaged EfficientNet-Lite0 weights, the study's eight strategies with Auto-SNR,
# FT (eval BN) and kNN, five seeds, under the tuned protocol (every strategy sweeps x0.1, x1, x10 of its own
# default rate, chosen on validation AUC) and under the study's fixed rate (a group of its own); then the
# longer-budget group (tier real_long: BreastMNIST, 9 epochs with early stopping). Two cells at a time, one torch
# thread each. Then the leaderboard into results-published/leaderboard/ (publishing into leaderboard/ is the explicit step: python -m medft_bench.leaderboard results-published --publish).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${MEDFT_VENV:-.venv}
out=${MEDFT_PUBLISHED_RESULTS:-results-published}
strategies=ft,lp,gu_last_first,gu_first_last,lp_ft,l1_sp,l2_sp,auto_rgn,auto_snr,ft_eval,knn
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
start=$(date +%s)
run() { "$venv/bin/python" -m pytest benchmarks -q -p no:cacheprovider -n 2 --results-dir "$out" "$@"; }
run --tier=real --strategies "$strategies" --seeds 0,1,2,3,4 --protocol tuned
echo "tuned group: $(( $(date +%s) - start )) s"
run --tier=real --strategies "$strategies" --seeds 0,1,2,3,4
echo "tuned and study groups: $(( $(date +%s) - start )) s"
run --tier=real_long
echo "all three groups: $(( $(date +%s) - start )) s"
"$venv/bin/python" -m medft_bench.leaderboard "$out" --out "$out/leaderboard" --quiet
