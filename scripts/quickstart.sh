#!/usr/bin/env bash
# The main job on its embedded default: set up, run the smoke tier (synthetic MedMNIST-format data, random
# weights, 3 backbones x every strategy), then publish the leaderboard into leaderboard/ (--publish).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
venv=${MEDFT_VENV:-.venv}
"$venv/bin/python" -m pytest benchmarks --tier=smoke "$@"
"$venv/bin/python" -m medft_bench.leaderboard --publish
